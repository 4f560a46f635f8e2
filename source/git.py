"""Git for GitRepository: which commit a ref names, and checking it out.

The transport (the worker process, the HTTPS bridge, credential checks) is the runtime's
:mod:`controllers.git`; ref resolution is :mod:`controllers.git.refs`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controllers.git import remote as git_remote
from controllers.git.errors import GitError, sanitize
from controllers.git.refs import DEFAULT_BRANCH, ResolvedRef, resolve

__all__ = [
    "DEFAULT_BRANCH",
    "Checkout",
    "GitError",
    "ResolvedRef",
    "checkout",
    "list_heads",
    "resolve",
    "sanitize",
]


@dataclass(frozen=True)
class Checkout:
    commit: str
    revision: str
    message: str
    signature: str | None
    signed_data: str | None
    tag_signature: str | None = None
    tag_signed_data: str | None = None


async def list_heads(
    url: str, auth: Mapping[str, str], *, proxy: str | None, timeout: float
) -> dict[str, str]:
    """Every ref the remote advertises (``git ls-remote``), without fetching anything."""
    async with git_remote.connect(url, auth, proxy=proxy, timeout=timeout) as remote:
        return await git_remote.list_heads(remote, timeout=timeout)


async def checkout(
    url: str,
    target: ResolvedRef,
    dest: Path,
    auth: Mapping[str, str],
    *,
    proxy: str | None,
    timeout: float,
    recurse_submodules: bool = False,
) -> Checkout:
    """Fetch as little as the target allows and check it out into ``dest``."""
    async with git_remote.connect(url, auth, proxy=proxy, timeout=timeout) as remote:
        request: dict[str, Any] = remote.request(
            "checkout", dest=str(dest), recurse_submodules=recurse_submodules
        )
        if target.refname:
            request["refspec"] = f"+{target.refname}:refs/weir/target"
            request["local_ref"] = "refs/weir/target"
        if target.pinned:
            # A pinned commit may be anywhere in the history: fetch all of it, check out that one.
            request["depth"] = 0
            request["commit"] = target.commit
        else:
            request["depth"] = 1
        answer = await git_remote.run_worker(request, timeout)
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
