"""Which tag or digest an OCIRepository names (its repository: ``controllers.oci.reference``).

What to pull follows the precedence of ``OCIRepositoryRef``: digest > semver >
tag, default tag ``latest``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from controllers import semver
from controllers.oci.errors import InvalidReference, RegistryError
from controllers.oci.reference import DIGEST, TAG, Repository
from source.api_v1 import OCIRepositoryRef

__all__ = ["DEFAULT_TAG", "PullRef", "needs_tags", "resolve_ref"]

DEFAULT_TAG = "latest"


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
    if not TAG.fullmatch(tag):
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
