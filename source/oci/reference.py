"""Which repository and which tag or digest an OCIRepository names.

A repository is ``oci://<host>[:<port>]/<path>``; Docker Hub's names are normalized as
Docker does. What to pull follows the precedence of ``OCIRepositoryRef``: digest > semver >
tag, default tag ``latest``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from source import semver
from source.api_v1 import OCIRepositoryRef
from source.oci.errors import InvalidReference, RegistryError

__all__ = [
    "DEFAULT_TAG",
    "DIGEST",
    "DOCKER_HUB",
    "DOCKER_HUB_ALIASES",
    "PullRef",
    "Repository",
    "needs_tags",
    "parse_repository",
    "resolve_ref",
]

DEFAULT_TAG = "latest"
DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
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


@dataclass(frozen=True)
class PullRef:
    """What to pull: a tag (its digest looked up) or a digest; ``revision`` names the result
    as Flux does, ``<tag>@<digest>`` or just ``<digest>``."""

    tag: str | None
    digest: str | None = None

    def revision(self, digest: str) -> str:
        return f"{self.tag}@{digest}" if self.tag else digest

    def reference(self, repository: Repository) -> str:
        """The full reference, ``<host>/<name>:<tag>`` or ``<host>/<name>@<digest>``."""
        return f"{repository}@{self.digest}" if self.digest else f"{repository}:{self.tag}"


def needs_tags(ref: OCIRepositoryRef | None) -> bool:
    """Whether resolving ``ref`` needs the repository's tag list (a SemVer range)."""
    return ref is not None and not ref.digest and bool(ref.semver)


def resolve_ref(ref: OCIRepositoryRef | None, tags: Sequence[str] | None = None) -> PullRef:
    """What ``ref`` names to pull: digest > semver > tag > the ``latest`` tag. ``tags`` (every
    tag of the repository) is needed for a SemVer range: the highest matching version wins,
    among the tags that match ``semverFilter`` (a regular expression, searched) when set."""
    if ref is not None and ref.digest:
        if not DIGEST.fullmatch(ref.digest):
            raise InvalidReference(
                f"invalid digest {ref.digest[:200]!r}: expected 'sha256:<64 hex digits>'"
            )
        return PullRef(None, ref.digest)
    if ref is not None and ref.semver:
        if tags is None:
            raise ValueError("resolving a SemVer range needs the repository's tags")
        return PullRef(_highest(tags, ref.semver, ref.semver_filter))
    tag = (ref.tag if ref is not None else None) or DEFAULT_TAG
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid tag {tag[:200]!r}")
    return PullRef(tag)


def _highest(tags: Sequence[str], range_: str, semver_filter: str | None) -> str:
    """The tag with the highest version in ``range_`` (Masterminds' rules, as Flux)."""
    if semver_filter:
        try:
            pattern = re.compile(semver_filter)
        except re.error as err:
            raise InvalidReference(f"invalid semverFilter '{semver_filter}': {err}") from None
        tags = [tag for tag in tags if pattern.search(tag)]
    try:
        constraints = semver.parse_constraints(range_)
    except semver.InvalidConstraint as err:
        raise InvalidReference(f"semver '{range_}' parse error: {err}") from None
    best = semver.highest(tags, constraints)
    if best is None:
        raise RegistryError(f"no match found for semver: {range_}")
    return best
