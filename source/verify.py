"""PGP signature verification of commits and tags with GnuPG, as ``spec.verify`` asks.

Each verification imports the Secret's public keys into a throwaway GnuPG home, so keys of
one object never vouch for another's commits.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

__all__ = ["VerificationError", "verify_signature"]

TIMEOUT_SECONDS = 30.0


class VerificationError(Exception):
    """The signature is missing, malformed, or not made by any of the trusted keys."""


async def verify_signature(
    signature: str | None, signed_data: str | None, keys: dict[str, str]
) -> str:
    """Check ``signature`` over ``signed_data`` against ``keys`` (armored public keys, as in a
    Flux verification Secret); return the fingerprint of the key that made it."""
    if not signature or signed_data is None:
        raise VerificationError("no PGP signature")
    if not keys:
        raise VerificationError("the verification secret holds no public keys")
    with tempfile.TemporaryDirectory(prefix="weir-gpg-") as scratch:
        home = Path(scratch) / "gnupg"
        home.mkdir(mode=0o700)
        for name, key in keys.items():
            code, _ = await _gpg(home, "--import", stdin=key)
            if code != 0:
                raise VerificationError(f"cannot import public key '{name}' from the secret")
        sig, data = Path(scratch) / "sig.asc", Path(scratch) / "data"
        sig.write_text(signature)
        data.write_text(signed_data)
        _, status = await _gpg(home, "--status-fd", "1", "--verify", str(sig), str(data))
    for line in status.splitlines():
        if line.startswith("[GNUPG:] VALIDSIG "):
            return line.split()[2]
    if "[GNUPG:] NO_PUBKEY" in status or "[GNUPG:] ERRSIG" in status:
        raise VerificationError("signature was not made by any key in the verification secret")
    raise VerificationError("signature does not verify")


async def _gpg(home: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "gpg",
        "--batch",
        "--no-tty",
        "--homedir",
        str(home),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            out, _ = await process.communicate(stdin.encode() if stdin else None)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise VerificationError("gpg timed out") from None
    return process.returncode or 0, out.decode(errors="replace")
