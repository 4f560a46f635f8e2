"""What an ImageRepository scan is made of, apart from the network: the image name parsed as
Docker and Flux parse it, the exclusion list, the scan revision and the latest tags.

- ``parse_image``: ``spec.image`` without a scheme, tag or digest (Flux refuses them); the
  registry is the first path component when it has a ``.`` or ``:`` or is ``localhost``
  (Docker's rule), else Docker Hub, where a one-component name gets ``library/``. The
  canonical name is Flux's (go-containerregistry's): Docker Hub spelt ``index.docker.io``.
- ``exclude_tags``: tags that no pattern of the exclusion list matches (searched, RE2, as
  Go's ``regexp.MatchString``).
- ``scan_revision``: ``sha256:<hex>`` of the tags sorted in descending byte order, each
  followed by a newline, as Flux's tag storage computes it.
- ``latest_tags``: the first ten of that order, Flux's ``status.lastScanResult.latestTags``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controllers import goregexp
from controllers.oci.errors import InvalidReference
from controllers.oci.reference import DOCKER_HUB, Repository, parse_repository

__all__ = [
    "LATEST_TAGS_COUNT",
    "ImageName",
    "InvalidExclusion",
    "exclude_tags",
    "latest_tags",
    "parse_image",
    "scan_revision",
    "sorted_tags",
]

LATEST_TAGS_COUNT = 10
# go-containerregistry's name for Docker Hub, which Flux's canonicalImageName carries.
_CANONICAL_DOCKER_HUB = "index.docker.io"


class InvalidExclusion(ValueError):
    """An exclusion list pattern is not a valid (RE2) regular expression."""


@dataclass(frozen=True)
class ImageName:
    """A parsed ``spec.image``: the repository to ask, and Flux's canonical name for it."""

    repository: Repository
    canonical: str


def parse_image(image: str, *, insecure: bool = False) -> ImageName:
    """``spec.image`` as a repository; InvalidReference (with Flux's wording where Flux has
    one) for a scheme, a tag, a digest or a malformed name."""
    scheme, sep, _ = image.partition("://")
    if sep:
        raise InvalidReference(
            f"image '{image}' should not include URL scheme; remove '{scheme}://'"
        )
    if not image:
        raise InvalidReference("image must not be empty")
    name, at, digest = image.partition("@")
    if at:
        raise InvalidReference(f"image '{image}' should not include a digest; remove '@{digest}'")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name
    if ":" in path:
        raise InvalidReference(
            f"image '{image}' should not include a tag; remove ':{path.rsplit(':', 1)[1]}'"
        )
    try:
        repository = parse_repository(f"oci://{host}/{path}", insecure=insecure)
    except InvalidReference as err:
        raise InvalidReference(
            f"image '{image}' is not a valid repository: {err.message}"
        ) from None
    shown_host = _CANONICAL_DOCKER_HUB if repository.host == DOCKER_HUB else repository.host
    return ImageName(repository, f"{shown_host}/{repository.name}")


def exclude_tags(tags: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The tags no pattern matches, in their order; InvalidExclusion names a pattern that
    does not compile."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(goregexp.compile_pattern(pattern))
        except ValueError as err:
            raise InvalidExclusion(f"failed to compile regex {pattern}: {err}") from None
    return [tag for tag in tags if not any(regexp.search(tag) for regexp in compiled)]


def sorted_tags(tags: Iterable[str]) -> list[str]:
    """Descending byte order (Go's ``strings.Compare`` reversed), the order Flux stores."""
    return sorted(tags, key=lambda tag: tag.encode(), reverse=True)


def scan_revision(tags: Iterable[str]) -> str:
    """Flux's revision of a scan: the SHA-256 of the sorted tags, one per line."""
    digest = hashlib.sha256()
    for tag in sorted_tags(tags):
        digest.update(tag.encode() + b"\n")
    return f"sha256:{digest.hexdigest()}"


def latest_tags(tags: Iterable[str]) -> list[str]:
    """The first ten tags in descending order: ``status.lastScanResult.latestTags``."""
    return sorted_tags(tags)[:LATEST_TAGS_COUNT]
