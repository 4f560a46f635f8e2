"""The Git write path of ImageUpdateAutomation: clone the GitRepository's branch into a work
tree the reconciler edits, then commit every change and push it, as Flux's
image-automation-controller does (``internal/source``), over the runtime's Git transport
(:mod:`controllers.git`: the worker process, the HTTPS bridge, the source controller's auth
rules).

    push = push_branch(checkout_ref, spec_push_branch)
    cloned = await clone(url, auth, proxy=proxy, ref=checkout_ref, branch=push,
                         dest=workdir, timeout=timeout)
    ...edit files under cloned.path...
    try:
        pushed = await commit_and_push(cloned, author=author, message=message,
                                       signing=key, refspec=refspec, timeout=timeout)
    except PushRejected:
        ...clone again into a fresh directory, edit again, push again...

Differences from Flux: the push is never forced unless the clone asked for a fresh branch
(``reset_branch``), so a concurrent push is reported (:class:`PushRejected`) instead of
overwritten; the branch and the refspec go in one push, which fails whole when either is not
a fast-forward.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controllers.git import remote as git_remote
from controllers.git.errors import GitError, PushRejected
from controllers.git.refs import GitRef, resolve
from controllers.git.signing import SigningKey, sign, signing_key_from_secret

__all__ = [
    "Author",
    "Cloned",
    "GitError",
    "PushRejected",
    "SigningKey",
    "clone",
    "commit_and_push",
    "push_branch",
    "signing_key_from_secret",
]


@dataclass(frozen=True)
class Author:
    """A commit's author or committer (``spec.git.commit.author``); an empty name is written as
    the email (libgit2 refuses an empty one, go-git writes it)."""

    email: str
    name: str = ""


@dataclass(frozen=True)
class Cloned:
    """A clone ready for edits: ``path`` is the work tree, on local branch ``branch`` (the push
    branch) at ``head``; ``commit`` and ``revision`` are what the checkout ref named (Flux's
    ``observedSourceRevision``, e.g. ``main@sha1:<hash>``)."""

    path: Path
    branch: str
    head: str
    commit: str
    revision: str
    url: str
    auth: Mapping[str, str] = field(repr=False)
    proxy: str | None = field(repr=False)
    reset_branch: bool = False

    @property
    def switched(self) -> bool:
        """Whether the push branch is another branch than the one checked out."""
        return self.revision.split("@", 1)[0] != self.branch


def push_branch(checkout_ref: GitRef | None, push: str | None) -> str:
    """The branch to push to: ``spec.git.push.branch``, else the checkout ref's branch (the
    automation's ``checkout.ref``, else the GitRepository's ``ref``), as Flux decides it."""
    if push:
        return push
    if checkout_ref is None or not checkout_ref.branch:
        raise GitError(
            "push spec not provided, and cannot be inferred from .spec.git.checkout.ref or"
            " GitRepository .spec.ref",
            reason="InvalidSourceConfiguration",
        )
    return checkout_ref.branch


async def clone(
    url: str,
    auth: Mapping[str, str],
    *,
    proxy: str | None,
    ref: GitRef | None,
    branch: str,
    dest: Path,
    timeout: float,
    reset_branch: bool = False,
) -> Cloned:
    """Clone ``ref`` (branch, tag, semver, name or commit; None: ``master``) of ``url`` into
    ``dest`` (which must not hold a repository yet) and check out local branch ``branch``.

    When ``branch`` is another branch that the remote has, it starts from the remote's head of
    it (so updates pile up on it, as Flux with ``GitAllBranchReferences``); with
    ``reset_branch`` it starts from the checked-out commit instead and the push replaces the
    remote branch. ``auth`` is the GitRepository's Secret data, ``proxy`` its proxy URL."""
    git_remote.check_auth(url, auth)
    async with git_remote.connect(url, auth, proxy=proxy, timeout=timeout) as remote:
        heads = await git_remote.list_heads(remote, timeout=timeout)
        target = resolve(ref, heads)
        push_ref = f"refs/heads/{branch}"
        fetch_push = not reset_branch and push_ref in heads and push_ref != target.refname
        request = remote.request(
            "clone",
            dest=str(dest),
            refname=target.refname,
            commit=target.commit if target.pinned else None,
            # A pinned commit may be anywhere in the history: fetch all of it.
            depth=0 if target.pinned else 1,
            push_ref=push_ref if fetch_push else None,
            branch=branch,
        )
        answer = await git_remote.run_worker(request, timeout)
    return Cloned(
        path=dest,
        branch=branch,
        head=answer["head"],
        commit=answer["commit"],
        revision=target.revision(answer["commit"]),
        url=url,
        auth=auth,
        proxy=proxy,
        reset_branch=reset_branch,
    )


async def commit_and_push(
    cloned: Cloned,
    *,
    author: Author,
    message: str,
    timeout: float,
    signing: SigningKey | None = None,
    refspec: str | None = None,
    push_options: Mapping[str, str] | None = None,
    committer: Author | None = None,
) -> str | None:
    """Commit every change under the work tree on the clone's branch (author and committer
    ``author`` unless a ``committer`` is given, signed with ``signing``) and push it to that
    branch, and to ``refspec`` too when given (``spec.git.push.refspec``), with the server
    push ``options``. Returns the pushed commit's hash, or None when nothing changed (nothing
    is committed or pushed).

    Raises :class:`PushRejected` when a branch moved on the remote since the clone (nothing is
    written there), any other :class:`GitError` when the commit or push fails."""
    now = int(time.time())
    people = {
        "author": {"name": author.name, "email": author.email, "time": now},
        "committer": {
            "name": (committer or author).name,
            "email": (committer or author).email,
            "time": now,
        },
    }
    staged = await git_remote.run_worker(
        {"op": "stage", "dest": str(cloned.path), "message": message, **people}, timeout
    )
    if not staged["changed"]:
        return None
    signature = await sign(signing, staged["buffer"]) if signing is not None else None
    force = "+" if cloned.reset_branch else ""
    specs = [f"{force}refs/heads/{cloned.branch}:refs/heads/{cloned.branch}"]
    if refspec:
        specs.append(refspec)
    async with git_remote.connect(
        cloned.url, cloned.auth, proxy=cloned.proxy, timeout=timeout
    ) as remote:
        request = remote.request(
            "push",
            dest=str(cloned.path),
            buffer=staged["buffer"],
            signature=signature,
            branch=cloned.branch,
            specs=specs,
            options=dict(push_options or {}),
        )
        answer = await git_remote.run_worker(request, timeout)
    pushed: str = answer["commit"]
    return pushed
