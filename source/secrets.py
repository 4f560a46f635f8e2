"""The proxy Secret sources refer to (``spec.proxySecretRef``); reading Secrets themselves is
:mod:`controllers.secrets`."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from controllers.secrets import SecretError

__all__ = ["proxy_url"]


def proxy_url(data: Mapping[str, str], name: str) -> str:
    """The proxy URL from Flux's proxy Secret: ``address``, optional ``username``/``password``."""
    address = data.get("address")
    if not address:
        raise SecretError(
            name, "has no 'address'", message=f"proxy secret '{name}' has no 'address'"
        )
    if not data.get("username"):
        return address
    scheme, _, rest = address.partition("://")
    # Quoted: a password with '@' or '/' must not change where the URL points.
    user = quote(data["username"], safe="")
    password = quote(data.get("password", ""), safe="")
    return f"{scheme}://{user}:{password}@{rest}"
