"""TLS for the HTTPS clients controllers make: the system's trust, and what a Secret adds to it.

:func:`system_context` is the context of every connection that adds nothing: verifying, with
the system's CA certificates, built once per process (loading the CA bundle costs about 30 ms
of CPU, which a context per client paid every time).

:func:`context_from_secret` builds one from a Secret's decoded data, read as Flux's
``TLSConfigFromSecret`` reads it:

- ``ca.crt``: CA certificates trusted on top of the system's;
- ``tls.crt`` with ``tls.key``: a client certificate and its key, both or neither;
- ``caFile``, ``certFile``, ``keyFile``: the legacy names, read where the standard key is absent.

The ssl module loads a key pair from files only. They are written 0600 with ``O_EXCL`` in a
private directory and removed as soon as the context holds them; an encrypted key is refused,
never prompted for.

Errors are :class:`TLSConfigError` (a ``ValueError``), naming the Secret and the key at fault,
never their content.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["TLSConfigError", "context_from_secret", "load_key_pair", "system_context"]

# The standard key first, then Flux's legacy one.
_CA_KEYS = ("ca.crt", "caFile")
_CERT_KEYS = ("tls.crt", "certFile")
_KEY_KEYS = ("tls.key", "keyFile")


class TLSConfigError(ValueError):
    """TLS settings that cannot be used. ``secret`` (``namespace/name``, when known) and
    ``key`` say where; the message says what, never the content."""

    def __init__(self, problem: str, *, secret: str | None = None, key: str | None = None) -> None:
        super().__init__(f"secret '{secret}': {problem}" if secret else problem)
        self.secret = secret
        self.key = key


@functools.cache
def system_context() -> ssl.SSLContext:
    """The verifying context with the system's CA certificates, one per process; shared, so
    never to be changed."""
    return ssl.create_default_context()


def context_from_secret(
    data: Mapping[str, str], secret: str | None = None, *, required: bool = False
) -> ssl.SSLContext:
    """A verifying client context from a Secret's decoded ``data`` (see the module docstring);
    ``secret`` is named in errors. ``data`` without any TLS key gives :func:`system_context`,
    or with ``required`` (a ``certSecretRef``, which is there for TLS) an error."""
    ca_key, ca = _lookup(data, _CA_KEYS)
    cert_key, cert = _lookup(data, _CERT_KEYS)
    key_key, key = _lookup(data, _KEY_KEYS)
    if bool(cert) != bool(key):
        missing = _KEY_KEYS[0] if cert else _CERT_KEYS[0]
        raise TLSConfigError(
            f"'{cert_key}' and '{key_key}' must be given together", secret=secret, key=missing
        )
    if not ca and not cert:
        if required:
            raise TLSConfigError(
                "no TLS configuration: neither 'ca.crt' nor 'tls.crt' and 'tls.key'", secret=secret
            )
        return system_context()
    context = ssl.create_default_context()
    if ca:
        try:
            context.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError):
            raise TLSConfigError(
                f"'{ca_key}' is not a PEM certificate", secret=secret, key=ca_key
            ) from None
    if cert and key:
        try:
            load_key_pair(context, cert, key)
        except ssl.SSLError:
            raise TLSConfigError(
                f"'{cert_key}' and '{key_key}' are not a matching PEM certificate and key",
                secret=secret,
                key=key_key,
            ) from None
    return context


def _lookup(data: Mapping[str, str], keys: tuple[str, str]) -> tuple[str, str]:
    """The first of ``keys`` that ``data`` has (the standard name by default) and its value."""
    for name in keys:
        if name in data:
            return name, data[name]
    return keys[0], ""


def load_key_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    """Load a PEM client certificate and its key into ``context``; ``ssl.SSLError`` when they
    are not a matching, unencrypted pair. The files the ssl module needs are written 0600 with
    ``O_EXCL`` in a private directory and removed before this returns."""
    # mkdtemp makes the directory 0700; each file is new (O_EXCL) and never a link followed.
    with tempfile.TemporaryDirectory(prefix="weir-tls-") as scratch:
        cert_file, key_file = Path(scratch, "tls.crt"), Path(scratch, "tls.key")
        for path, text in ((cert_file, cert), (key_file, key)):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(path, flags, 0o600), "w") as out:
                out.write(text)
        # An empty password: an encrypted key fails here instead of OpenSSL asking on a TTY.
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
