"""The two registry response headers the client reads: ``WWW-Authenticate`` challenges, and
``Link`` for the next page of a tag list."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from controllers.oci.errors import RegistryError

__all__ = ["Challenge", "next_link", "parse_challenge"]


@dataclass(frozen=True)
class Challenge:
    """A ``WWW-Authenticate`` challenge: ``scheme`` lowercased, parameter names lowercased."""

    scheme: str
    params: dict[str, str]


# RFC 9110 "token" characters: auth schemes and unquoted parameter values.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TCHARS})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TCHARS}))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None if it has none.

    ``Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"``
    gives scheme ``bearer`` and those three parameters; quoted values may hold commas and
    backslash escapes.
    """
    match = re.match(rf"\s*({_TCHARS})(?:\s+|$)", header)
    if not match:
        return None
    scheme, rest = match[1].lower(), header[match.end() :]
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        param = _PARAM.match(rest, position)
        if param is None:
            break  # the next challenge, or something unparseable: the first one is enough
        value = param[2] if param[2] is not None else param[3]
        params.setdefault(param[1].lower(), re.sub(r"\\(.)", r"\1", value))
        position = param.end()
    return Challenge(scheme, params)


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def next_link(header: str | None, current: str) -> str | None:
    """The absolute URL of the ``rel="next"`` entry of a ``Link`` header, resolved against
    ``current``; None without one. A link to another scheme or host is refused: credentials
    must not follow it."""
    for match in _LINK.finditer(header or ""):
        attributes = [a.strip().lower().replace(" ", "") for a in match[2].split(";")]
        if 'rel="next"' in attributes or "rel=next" in attributes:
            base = httpx.URL(current)
            url = base.join(match[1])
            if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
                raise RegistryError("the registry's tag list links to another host")
            return str(url)
    return None
