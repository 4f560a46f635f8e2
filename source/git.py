"""Git for GitRepository: which commit a ref names, and checking it out, via source.gitworker.

Ref precedence and revision strings follow Flux: commit > name > semver > tag > branch, the
default being branch ``master``; revisions look like ``main@sha1:<hash>``,
``v1.2.0@sha1:<hash>``, ``refs/pull/1/head@sha1:<hash>`` or ``sha1:<hash>``.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controllers import child, semver
from source.api_v1 import GitRepositoryRef
from source.httpsbridge import https_bridge, needs_bridge

__all__ = ["Checkout", "GitError", "ResolvedRef", "checkout", "list_heads", "resolve", "sanitize"]

DEFAULT_BRANCH = "master"
_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-z+]+://)[^/@\s]+@")
# The worker's JSON answer: every ref of a large remote (100,000 refs are about 10 MiB).
_MAX_ANSWER_BYTES = 64 * 1024 * 1024
# Only the last line of its stderr is shown (why it crashed).
_STDERR_TAIL_BYTES = 8192


class GitError(Exception):
    """A Git operation failed; ``reason`` is a Flux condition reason."""

    def __init__(self, message: str, *, reason: str = "GitOperationFailed") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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


@dataclass(frozen=True)
class Checkout:
    commit: str
    revision: str
    message: str
    signature: str | None
    signed_data: str | None
    tag_signature: str | None = None
    tag_signed_data: str | None = None


def sanitize(text: str) -> str:
    """``text`` with any credentials embedded in URLs removed."""
    return _CREDENTIALS_IN_URL.sub(r"\g<scheme>", text)


def resolve(ref: GitRepositoryRef | None, heads: dict[str, str] | None) -> ResolvedRef:
    """What ``ref`` resolves to; ``heads`` (from list_heads) is needed except for a bare
    commit."""
    ref = ref or GitRepositoryRef()
    if ref.commit:
        if ref.branch:
            return ResolvedRef(f"refs/heads/{ref.branch}", ref.commit, ref.branch, pinned=True)
        return ResolvedRef(None, ref.commit, None, pinned=True)
    assert heads is not None
    if ref.name:
        return _advertised(heads, ref.name, ref.name)
    if ref.semver:
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
    if ref.tag:
        return _advertised(heads, f"refs/tags/{ref.tag}", ref.tag)
    branch = ref.branch or DEFAULT_BRANCH
    return _advertised(heads, f"refs/heads/{branch}", branch)


def _advertised(heads: dict[str, str], refname: str, revision_name: str) -> ResolvedRef:
    if refname not in heads:
        raise GitError(f"couldn't find remote ref '{refname}'")
    # An annotated tag is advertised twice; the peeled entry is the commit.
    return ResolvedRef(refname, heads.get(f"{refname}^{{}}", heads[refname]), revision_name)


async def list_heads(
    url: str, auth: dict[str, str], *, proxy: str | None, timeout: float
) -> dict[str, str]:
    """Every ref the remote advertises (``git ls-remote``), without fetching anything."""
    async with _transport(url, auth, proxy, timeout) as (url, auth, proxy):
        request = {"op": "list_heads", "url": url, "auth": auth, "proxy": proxy}
        answer = await _run(request, timeout)
    heads: dict[str, str] = answer["heads"]
    return heads


@contextlib.asynccontextmanager
async def _transport(
    url: str, auth: dict[str, str], proxy: str | None, timeout: float
) -> AsyncIterator[tuple[str, dict[str, str], str | None]]:
    """The URL, credentials and proxy the worker uses: the remote's own, or a bridge's."""
    if proxy and not url.startswith(("http://", "https://")):
        raise GitError("proxySecretRef works with http and https URLs only")
    if not needs_bridge(url, auth, proxy):
        yield url, auth, proxy
        return
    try:
        async with https_bridge(url, auth, proxy=proxy, timeout=timeout) as bridge:
            try:
                yield bridge.url, {}, None
            except GitError as err:
                if bridge.errors:
                    raise GitError(sanitize(bridge.errors[-1])) from err
                raise
    except ValueError as err:
        raise GitError(str(err), reason="AuthenticationFailed") from err


async def checkout(
    url: str,
    target: ResolvedRef,
    dest: Path,
    auth: dict[str, str],
    *,
    proxy: str | None,
    timeout: float,
    recurse_submodules: bool = False,
) -> Checkout:
    """Fetch as little as the target allows and check it out into ``dest``."""
    async with _transport(url, auth, proxy, timeout) as (url, auth, proxy):
        return await _checkout(url, target, dest, auth, proxy, timeout, recurse_submodules)


async def _checkout(
    url: str,
    target: ResolvedRef,
    dest: Path,
    auth: dict[str, str],
    proxy: str | None,
    timeout: float,
    recurse_submodules: bool,
) -> Checkout:
    request: dict[str, Any] = {
        "op": "checkout",
        "url": url,
        "auth": auth,
        "proxy": proxy,
        "dest": str(dest),
        "recurse_submodules": recurse_submodules,
    }
    if target.refname:
        request["refspec"] = f"+{target.refname}:refs/weir/target"
        request["local_ref"] = "refs/weir/target"
    if target.pinned:
        # A pinned commit may be anywhere in the history: fetch all of it, check out that one.
        request["depth"] = 0
        request["commit"] = target.commit
    else:
        request["depth"] = 1
    answer = await _run(request, timeout)
    commit = answer["commit"]
    return Checkout(
        commit=commit,
        revision=target.revision(commit),
        message=answer.get("message") or "",
        signature=answer.get("signature"),
        signed_data=answer.get("signed_data"),
        tag_signature=answer.get("tag_signature"),
        tag_signed_data=answer.get("tag_signed_data"),
    )


async def _run(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    request["timeout"] = timeout
    argv = [sys.executable, "-m", "source.gitworker"]
    try:
        done = await child.run(
            argv,
            stdin=json.dumps(request).encode(),
            timeout=timeout,
            max_output=_MAX_ANSWER_BYTES,
            stderr_tail=_STDERR_TAIL_BYTES,
        )
    except child.ChildTimedOut:
        raise GitError(f"git operation timed out after {timeout:g}s") from None
    except child.ChildError as err:
        raise GitError(f"git worker failed: {err}") from None
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(
            f"git worker failed (exit {done.returncode}): {sanitize(said[-1] if said else '')}"
        )
    answer: dict[str, Any] = json.loads(done.stdout)
    if "error" in answer:
        raise GitError(sanitize(answer["error"]), reason=answer.get("reason", "GitOperationFailed"))
    return answer
