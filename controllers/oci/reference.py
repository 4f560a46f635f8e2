"""Registries and repositories: ``oci://<host>[:<port>]/<path>`` names one repository, Docker
Hub's names normalized as Docker does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controllers.oci.errors import InvalidReference

__all__ = [
    "DIGEST",
    "DOCKER_HUB",
    "DOCKER_HUB_ALIASES",
    "TAG",
    "Repository",
    "parse_repository",
]

DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Repository:
    """One repository of a registry: ``host`` as written in the URL, ``name`` its path."""

    host: str
    name: str
    insecure: bool = False

    @property
    def api_host(self) -> str:
        """Where the registry API answers (Docker Hub's API is not at docker.io)."""
        return _DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def base_url(self) -> str:
        scheme = "http" if self.insecure else "https"
        return f"{scheme}://{self.api_host}/v2/{self.name}"

    def __str__(self) -> str:
        return f"{self.host}/{self.name}"


def parse_repository(url: str, *, insecure: bool = False) -> Repository:
    """The repository of ``oci://<host>[:<port>]/<path>``; a tag or digest is refused, as in
    Flux (they belong in ``spec.ref``)."""
    if not url.startswith("oci://"):
        raise InvalidReference("URL must be in format 'oci://<domain>/<org>/<repo>'")
    host, _, path = url.removeprefix("oci://").partition("/")
    if not path:
        raise InvalidReference("URL must name a repository: 'oci://<domain>/<org>/<repo>'")
    if "@" in path:
        raise InvalidReference("URL must not contain a digest; set spec.ref.digest instead")
    if ":" in path:
        raise InvalidReference(f"URL must not contain a tag; remove ':{path.rsplit(':', 1)[1]}'")
    if not _HOST.fullmatch(host):
        raise InvalidReference(f"invalid registry host {host[:256]!r}")
    path = path.rstrip("/")
    if host.lower() in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if len(path) > 255 or not all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/")):
        raise InvalidReference(
            f"invalid repository name {path[:256]!r}: path components must be lowercase "
            "letters and digits, separated by '.', '_', '__' or '-'"
        )
    return Repository(host, path, insecure)
