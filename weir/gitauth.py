"""Git credentials as Flux's GitRepository reads them from a Secret.

SSH: ``identity`` (an OpenSSH private key), ``identity.pub`` and ``known_hosts``; HTTPS:
``username`` and ``password`` (a token goes in ``password``), or ``bearerToken``. Used by
``weir create secret git`` and ``weir bootstrap git``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["GitAuthError", "SSHKeyPair", "generate_key_pair", "load_key_pair", "scan_known_hosts"]

KeyAlgorithm = Literal["ed25519", "ecdsa", "rsa"]
KEYSCAN_TIMEOUT_SECONDS = 15


class GitAuthError(Exception):
    """A key that cannot be read, or a host whose keys cannot be had."""


@dataclass(frozen=True)
class SSHKeyPair:
    private: str
    """OpenSSH private key, PEM."""
    public: str
    """One ``authorized_keys`` line."""


def generate_key_pair(algorithm: KeyAlgorithm = "ed25519") -> SSHKeyPair:
    """A new key pair; RSA is 4096 bits, ECDSA on P-384 (Flux's defaults)."""
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ecdsa":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SSHKeyPair(private, public.decode())


def load_key_pair(private: bytes, password: str | None = None) -> SSHKeyPair:
    """A key pair from a private key file (OpenSSH or PEM); the public key is derived."""
    secret = password.encode() if password else None
    try:
        try:
            key = serialization.load_ssh_private_key(private, secret)
        except ValueError:
            key = serialization.load_pem_private_key(private, secret)  # type: ignore[assignment]
    except (ValueError, TypeError) as err:
        raise GitAuthError(f"not a private key this can read: {err}") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SSHKeyPair(private.decode(), public.decode())


def scan_known_hosts(url: str) -> str:
    """The host keys of an ``ssh://`` URL's server, as ``known_hosts`` lines.

    They are trusted on first use, as ``flux`` does; pass ``--ssh-known-hosts`` to pin them
    instead."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise GitAuthError(f"not an ssh:// URL: {url}")
    keyscan = shutil.which("ssh-keyscan")
    if keyscan is None:
        raise GitAuthError(
            "ssh-keyscan is not installed (openssh-client); give the host's keys with "
            "--ssh-known-hosts FILE instead"
        )
    argv = [keyscan, "-T", "10", "-p", str(parts.port or 22), parts.hostname]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=KEYSCAN_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise GitAuthError(f"no answer from {parts.hostname} for its SSH host keys") from None
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise GitAuthError(f"no SSH host keys from {parts.hostname}:{parts.port or 22}")
    return "\n".join(lines) + "\n"
