"""PGP signature verification of commits and tags with GnuPG, as ``spec.verify`` asks.

Each verification imports the Secret's public keys into a throwaway GnuPG home
(controllers.gnupg), so keys of one object never vouch for another's commits.
"""

from __future__ import annotations

from controllers.gnupg import GnuPGError, gnupg_home

__all__ = ["VerificationError", "verify_signature"]


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
    try:
        async with gnupg_home() as gnupg:
            for name, key in keys.items():
                if not await gnupg.import_key(key):
                    raise VerificationError(f"cannot import public key '{name}' from the secret")
            sig, data = gnupg.root / "sig.asc", gnupg.root / "data"
            sig.write_text(signature)
            data.write_text(signed_data)
            _, status = await gnupg.gpg("--status-fd", "1", "--verify", str(sig), str(data))
    except GnuPGError as err:
        raise VerificationError(str(err)) from err
    for line in status.splitlines():
        if line.startswith("[GNUPG:] VALIDSIG "):
            return line.split()[2]
    if "[GNUPG:] NO_PUBKEY" in status or "[GNUPG:] ERRSIG" in status:
        raise VerificationError("signature was not made by any key in the verification secret")
    raise VerificationError("signature does not verify")
