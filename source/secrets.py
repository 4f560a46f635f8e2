"""Reading the Secrets that sources refer to: credentials, certificates, proxies."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote

from controllers.api import ResourceInfo
from controllers.kube import KubeClient

__all__ = ["SECRET", "SecretError", "proxy_url", "secret_data"]

SECRET = ResourceInfo(group="", version="v1", kind="Secret", plural="secrets")


class SecretError(Exception):
    """A referenced Secret is missing or malformed; the message names it, never its values."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


async def secret_data(client: KubeClient, namespace: str | None, name: str) -> dict[str, str]:
    """The Secret's ``data``, decoded to text."""
    secret = await client.get_or_none(SECRET, namespace, name)
    if secret is None:
        raise SecretError(f"secret '{namespace}/{name}' not found", missing=True)
    data: dict[str, Any] = secret.get("data") or {}
    try:
        return {key: base64.b64decode(value).decode() for key, value in data.items()}
    except (binascii.Error, UnicodeDecodeError):
        raise SecretError(f"secret '{namespace}/{name}' has a value that is not text") from None


def proxy_url(data: dict[str, str], name: str) -> str:
    """The proxy URL from Flux's proxy Secret: ``address``, optional ``username``/``password``."""
    address = data.get("address")
    if not address:
        raise SecretError(f"proxy secret '{name}' has no 'address'")
    if not data.get("username"):
        return address
    scheme, _, rest = address.partition("://")
    # Quoted: a password with '@' or '/' must not change where the URL points.
    user = quote(data["username"], safe="")
    password = quote(data.get("password", ""), safe="")
    return f"{scheme}://{user}:{password}@{rest}"
