"""Registry credentials and TLS settings from a Secret.

Credentials come from ``username``/``password`` or from a docker config
(``.dockerconfigjson``, or the legacy ``.dockercfg``); a ``certSecretRef`` Secret makes the
TLS context.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from controllers.oci.errors import AuthenticationError
from controllers.oci.reference import DOCKER_HUB, DOCKER_HUB_ALIASES
from controllers.tls import TLSConfigError, context_from_secret

__all__ = [
    "Credentials",
    "credentials_from_secret",
    "docker_config_credentials",
    "tls_context",
]


@dataclass(frozen=True)
class Credentials:
    """A registry user name and password (or token); the password never shows in a repr."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The value of a basic ``Authorization`` header."""
        pair = f"{self.username}:{self.password}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"


def credentials_from_secret(
    data: Mapping[str, str], host: str, secret_name: str
) -> Credentials | None:
    """The credentials a Secret's (decoded) ``data`` holds for registry ``host``.

    A ``kubernetes.io/dockerconfigjson`` Secret (``.dockerconfigjson``, or the legacy
    ``.dockercfg``) gives the entry for ``host``, None when it has none; otherwise the Secret
    must have ``username`` and ``password``.
    """
    if ".dockerconfigjson" in data:
        return docker_config_credentials(data[".dockerconfigjson"], host, secret_name)
    if ".dockercfg" in data:
        # The legacy format is the "auths" map alone.
        return docker_config_credentials(data[".dockercfg"], host, secret_name, legacy=True)
    if data.get("username") and "password" in data:
        return Credentials(data["username"], data["password"])
    raise AuthenticationError(
        f"secret '{secret_name}' has neither '.dockerconfigjson' nor 'username' and 'password'"
    )


def docker_config_credentials(
    config: str, host: str, secret_name: str, *, legacy: bool = False
) -> Credentials | None:
    """The credentials for ``host`` in a docker config (``{"auths": {<registry>: {...}}}``):
    ``auth`` (base64 of ``user:password``) or ``username`` and ``password``. Registry keys
    may carry a scheme and path (``https://index.docker.io/v1/``); None when no key is
    ``host``."""
    try:
        parsed = json.loads(config)
    except ValueError:
        raise AuthenticationError(
            f"secret '{secret_name}' holds an invalid docker config: not JSON"
        ) from None
    auths = parsed if legacy else (parsed.get("auths") if isinstance(parsed, dict) else None)
    if not isinstance(auths, dict):
        raise AuthenticationError(
            f"secret '{secret_name}' holds an invalid docker config: no 'auths' object"
        )
    wanted = _registry_key(host)
    entry = next((v for k, v in auths.items() if _registry_key(k) == wanted), None)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise AuthenticationError(
            f"secret '{secret_name}' holds an invalid docker config entry for '{host}'"
        )
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            pair = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            pair = ""
        username, sep, password = pair.partition(":")
        if not sep or not username:
            raise AuthenticationError(
                f"secret '{secret_name}': the docker config 'auth' for '{host}' is not "
                "base64 of '<username>:<password>'"
            )
        return Credentials(username, password)
    if isinstance(entry.get("username"), str) and entry["username"]:
        return Credentials(entry["username"], str(entry.get("password") or ""))
    raise AuthenticationError(
        f"secret '{secret_name}': the docker config entry for '{host}' has neither 'auth' nor "
        "'username' and 'password'"
    )


def _registry_key(key: str) -> str:
    """A docker config registry key as a bare lowercase ``host[:port]``."""
    key = key.strip().lower()
    key = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if key in DOCKER_HUB_ALIASES else key


def tls_context(data: Mapping[str, str], secret_name: str) -> ssl.SSLContext:
    """The TLS context a ``certSecretRef`` Secret's (decoded) data makes
    (:func:`controllers.tls.context_from_secret`), its errors as :class:`AuthenticationError`."""
    try:
        return context_from_secret(data, secret_name, required=True)
    except TLSConfigError as err:
        raise AuthenticationError(str(err)) from None
