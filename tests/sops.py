"""SOPS test material made with the real tools: age identities from ``age-keygen``, a PGP key
from ``gpg``, and documents encrypted by the real ``sops`` for them, as a user commits them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SECRET_REGEX", "AgeIdentity", "PgpKey", "new_age_identity", "pgp_key", "sops_encrypt"]

SECRET_REGEX = "^(data|stringData)$"
"""What Flux's docs tell users to encrypt in a Secret: its values, not its metadata."""


@dataclass(frozen=True)
class AgeIdentity:
    identity: str  # the key file age-keygen writes
    recipient: str


@dataclass(frozen=True)
class PgpKey:
    home: Path  # holds the public key, for encrypting
    fingerprint: str
    private: str  # armored, as a decryption Secret holds it


def new_age_identity(binaries: dict[str, Path]) -> AgeIdentity:
    """A fresh identity from the real ``age-keygen`` (``binaries`` from ``ensure_binaries``)."""
    key_file = subprocess.run(
        [str(binaries["age-keygen"])], capture_output=True, text=True, check=True
    ).stdout
    recipient = next(
        line.split(": ")[1] for line in key_file.splitlines() if line.startswith("# public key:")
    )
    return AgeIdentity(key_file, recipient)


@contextmanager
def pgp_key() -> Iterator[PgpKey]:
    """A passphrase-less PGP key in a GnuPG home of its own, removed (agents stopped) on exit."""
    home = Path(tempfile.mkdtemp(prefix="weir-test-gpg-")) / "gnupg"
    home.mkdir(mode=0o700)

    def gpg(*args: str) -> str:
        command = ["gpg", "--batch", "--homedir", str(home), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    try:
        uid = "weir sops test <sops@weir.invalid>"
        # future-default: ed25519 for signing and a cv25519 subkey to encrypt to.
        gpg("--passphrase", "", "--quick-gen-key", uid, "future-default", "default", "never")
        listing = gpg("--list-secret-keys", "--with-colons", uid)
        fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
        )
        yield PgpKey(home, fingerprint, gpg("--armor", "--export-secret-keys", fingerprint))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
        shutil.rmtree(home.parent, ignore_errors=True)


def sops_encrypt(
    binaries: dict[str, Path],
    document: bytes,
    file_format: str,
    *,
    age: AgeIdentity | None = None,
    pgp: PgpKey | None = None,
    encrypted_regex: str | None = None,
) -> bytes:
    """``document`` encrypted by the real sops for the given recipients."""
    args = [str(binaries["sops"]), "encrypt", "--input-type", file_format]
    args += ["--output-type", file_format, "--filename-override", f"document.{file_format}"]
    if age:
        args += ["--age", age.recipient]
    if pgp:
        args += ["--pgp", pgp.fingerprint]
    if encrypted_regex:
        args += ["--encrypted-regex", encrypted_regex]
    with tempfile.TemporaryDirectory() as scratch:
        env = {"PATH": os.environ["PATH"], "HOME": scratch}
        if pgp:
            env["GNUPGHOME"] = str(pgp.home)
        done = subprocess.run(args, input=document, capture_output=True, env=env, cwd=scratch)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout
