"""Git hosts' REST APIs, found from a repository's address: for the notification controller's
commit statuses and the image automation's pull requests.

The repository comes from the address: ``https://host/owner/repo``, ``http://...``,
``ssh://git@host/owner/repo`` or ``git@host:owner/repo`` (ssh forms give ``https://host``),
``.git`` dropped. API roots: ``https://api.github.com`` for github.com, else GitHub Enterprise's
``<host>/api/v3``; GitLab's ``<host>/api/v4``; Gitea's ``<host>/api/v1``; Bitbucket Cloud's
``https://api.bitbucket.org/2.0`` whatever the host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = [
    "BITBUCKET_API",
    "GITHUB_ACCEPT",
    "GITHUB_API",
    "GITHUB_API_VERSION",
    "api_root",
    "parse_git_address",
]

GITHUB_API = "https://api.github.com"
BITBUCKET_API = "https://api.bitbucket.org/2.0"
# go-github's headers.
GITHUB_ACCEPT = "application/vnd.github.v3+json"
GITHUB_API_VERSION = "2022-11-28"

# scp-like SSH addresses: [user@]host:path (no scheme).
_SCP = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


def parse_git_address(address: str) -> tuple[str, str]:
    """``(scheme://host[:port], owner/repo)`` of a repository address; ``ValueError`` (its
    message without the address) when it is none."""
    address = address.strip()
    if "://" in address:
        parts = urlsplit(address)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ssh"):
            raise ValueError(f"scheme '{scheme}' is not http, https or ssh")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ValueError("the port is not a number") from None
        if not host:
            raise ValueError("it has no host")
        if ":" in host:
            host = f"[{host}]"
        if scheme == "ssh":
            # An SSH port says nothing about where the HTTPS API is.
            scheme, port = "https", None
        root = f"{scheme}://{host}" + (f":{port}" if port else "")
        path = parts.path
    elif match := _SCP.match(address):
        root, path = f"https://{match['host']}", match["path"]
    else:
        raise ValueError("it is not a URL (https://host/owner/repo) or git@host:owner/repo")
    repository = path.strip("/").removesuffix(".git")
    if not repository:
        raise ValueError("it names no repository")
    return root, repository


def api_root(type_: str, host: str) -> str:
    """The API base URL of ``type_`` (github, gitlab, gitea, bitbucket) for a repository on
    ``host`` (``scheme://host``)."""
    if type_ == "github":
        if urlsplit(host).hostname == "github.com":
            return GITHUB_API
        return f"{host}/api/v3"
    if type_ == "gitlab":
        return f"{host}/api/v4"
    if type_ == "gitea":
        return f"{host}/api/v1"
    return BITBUCKET_API
