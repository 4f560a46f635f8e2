"""Signing a commit as Flux's image automation does (``spec.git.commit.signingKey``): with an
OpenPGP key (``type: gpg``, the default: ``git.asc`` and an optional ``passphrase``) or an
SSH key (``type: ssh``, Flux 2.9: ``identity`` and an optional ``password``).

The signature is over the raw commit object without its ``gpgsig`` header, as ``git commit
-S`` makes it: armored PGP by ``gpg --detach-sign``, or an SSH signature in namespace
``git`` by ``ssh-keygen -Y sign``, each in a throwaway directory, never with the key in argv.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from controllers import child
from controllers.git.errors import GitError
from controllers.gnupg import GnuPGError, gnupg_home

__all__ = ["SigningKey", "sign", "signing_key_from_secret"]

SigningType = Literal["gpg", "ssh"]
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SigningKey:
    """A private key to sign commits with; ``secret`` names where it came from, for messages."""

    type: SigningType
    key: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)
    secret: str = ""


def signing_key_from_secret(data: Mapping[str, str], type: str | None, secret: str) -> SigningKey:
    """The key in a signing Secret's data, checked as Flux checks it (an empty type is gpg)."""
    kind = type or "gpg"
    if kind == "gpg":
        if "git.asc" not in data:
            raise GitError(f"signing key secret '{secret}' does not contain a 'git.asc' key")
        return SigningKey("gpg", data["git.asc"], data.get("passphrase"), secret)
    if kind == "ssh":
        if "identity" not in data:
            raise GitError(f"signing key secret '{secret}' does not contain an 'identity' key")
        return SigningKey("ssh", data["identity"], data.get("password"), secret)
    raise GitError(f"unknown signing key type '{kind}'")


async def sign(key: SigningKey, payload: str) -> str:
    """The armored signature of ``payload`` (a commit object's text) by ``key``."""
    if key.type == "ssh":
        return await _sign_ssh(key, payload.encode())
    return await _sign_gpg(key, payload.encode())


async def _sign_gpg(key: SigningKey, payload: bytes) -> str:
    try:
        async with gnupg_home() as home:
            passphrase = _private_file(home.root / "passphrase", key.passphrase or "")
            loopback = ("--pinentry-mode", "loopback", "--passphrase-file", str(passphrase))
            code, _ = await home.gpg(*loopback, "--import", stdin=key.key.encode())
            if code != 0:
                raise GitError(f"could not read signing key from secret '{key.secret}'")
            _, listing = await home.gpg("--with-colons", "--list-secret-keys")
            fingerprints = _primary_fingerprints(listing)
            if len(fingerprints) != 1:
                raise GitError(
                    f"multiple entities read from secret '{key.secret}', could not determine"
                    " which signing key to use"
                    if fingerprints
                    else f"no private key in signing key secret '{key.secret}'"
                )
            code, signature = await home.gpg(
                *loopback,
                "--armor",
                "--detach-sign",
                "--local-user",
                fingerprints[0],
                stdin=payload,
            )
    except GnuPGError as err:
        raise GitError(f"could not sign the commit: {err}") from None
    if code != 0 or not signature.strip():
        if key.passphrase is None:
            raise GitError(
                "could not sign with the key in secret"
                f" '{key.secret}' (a passphrase protected key needs a 'passphrase' field)"
            )
        raise GitError(f"could not sign with the key in secret '{key.secret}'")
    return signature


def _primary_fingerprints(listing: str) -> list[str]:
    """The fingerprint of each secret primary key in ``gpg --with-colons`` output."""
    found: list[str] = []
    primary = False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] in ("sec", "ssb"):
            primary = fields[0] == "sec"
        elif fields[0] == "fpr" and primary:
            found.append(fields[9])
            primary = False
    return found


async def _sign_ssh(key: SigningKey, payload: bytes) -> str:
    root = Path(tempfile.mkdtemp(prefix="weir-sshsign-"))
    try:
        identity = _private_file(root / "identity", key.key.rstrip("\n") + "\n")
        # No terminal here: ssh-keygen asks SSH_ASKPASS for the passphrase, a script that
        # prints the private file holding it (never argv or the environment); without one it
        # is told never to ask, so an encrypted key fails at once.
        env = {"PATH": os.environ.get("PATH", os.defpath), "SSH_ASKPASS_REQUIRE": "never"}
        if key.passphrase:
            _private_file(root / "passphrase", key.passphrase)
            askpass = _private_file(root / "askpass", f"#!/bin/sh\ncat '{root}/passphrase'\n")
            askpass.chmod(0o700)
            env |= {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
        try:
            done = await child.run(
                ["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(identity)],
                stdin=payload,
                timeout=TIMEOUT_SECONDS,
                env=env,
                stderr_tail=4096,
            )
        except child.ChildError as err:
            raise GitError(f"could not sign the commit: {err}") from None
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.decode()
        if not key.passphrase and b"passphrase" in done.stderr:
            raise GitError(
                "can not use passphrase protected signing key without 'password' field"
                f" present in secret {key.secret}"
            )
        raise GitError(f"could not sign with the SSH key in secret '{key.secret}'")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _private_file(path: Path, text: str) -> Path:
    with contextlib.ExitStack() as stack:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        handle = stack.enter_context(os.fdopen(fd, "w"))
        handle.write(text)
    return path
