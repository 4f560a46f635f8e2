"""Which commit a Git reference names, as Flux resolves ``spec.ref`` (GitRepository) and
``spec.git.checkout.ref`` (ImageUpdateAutomation).

Precedence: commit > name > semver > tag > branch, the default being branch ``master``;
revisions look like ``main@sha1:<hash>``, ``v1.2.0@sha1:<hash>``,
``refs/pull/1/head@sha1:<hash>`` or ``sha1:<hash>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controllers import semver
from controllers.git.errors import GitError

__all__ = ["DEFAULT_BRANCH", "GitRef", "ResolvedRef", "resolve"]

DEFAULT_BRANCH = "master"


class GitRef(Protocol):
    """Flux's ``GitRepositoryRef`` fields (any model with them will do)."""

    @property
    def branch(self) -> str | None: ...
    @property
    def tag(self) -> str | None: ...
    @property
    def semver(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def commit(self) -> str | None: ...


@dataclass(frozen=True)
class ResolvedRef:
    """What to fetch: the remote ref (None: every branch), the commit it points to or that the
    user pinned, and the name the revision carries."""

    refname: str | None
    commit: str | None
    revision_name: str | None
    pinned: bool = False

    def revision(self, commit: str) -> str:
        return f"{self.revision_name}@sha1:{commit}" if self.revision_name else f"sha1:{commit}"


def resolve(ref: GitRef | None, heads: dict[str, str] | None) -> ResolvedRef:
    """What ``ref`` resolves to; ``heads`` (from ``list_heads``) is needed except for a bare
    commit."""
    if ref is not None and ref.commit:
        if ref.branch:
            return ResolvedRef(f"refs/heads/{ref.branch}", ref.commit, ref.branch, pinned=True)
        return ResolvedRef(None, ref.commit, None, pinned=True)
    assert heads is not None
    if ref is not None and ref.name:
        return _advertised(heads, ref.name, ref.name)
    if ref is not None and ref.semver:
        try:
            constraints = semver.parse_constraints(ref.semver)
        except semver.InvalidConstraint as err:
            raise GitError(f"invalid semver range '{ref.semver}': {err}") from err
        tags = [
            name.removeprefix("refs/tags/")
            for name in heads
            if name.startswith("refs/tags/") and not name.endswith("^{}")
        ]
        tag = semver.highest(tags, constraints)
        if tag is None:
            raise GitError(f"no tag matches semver range '{ref.semver}'")
        return _advertised(heads, f"refs/tags/{tag}", tag)
    if ref is not None and ref.tag:
        return _advertised(heads, f"refs/tags/{ref.tag}", ref.tag)
    branch = (ref.branch if ref is not None else None) or DEFAULT_BRANCH
    return _advertised(heads, f"refs/heads/{branch}", branch)


def _advertised(heads: dict[str, str], refname: str, revision_name: str) -> ResolvedRef:
    if refname not in heads:
        raise GitError(f"couldn't find remote ref '{refname}'")
    # An annotated tag is advertised twice; the peeled entry is the commit.
    return ResolvedRef(refname, heads.get(f"{refname}^{{}}", heads[refname]), revision_name)
