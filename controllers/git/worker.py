"""One Git operation with pygit2, run in a child process: ``python -m controllers.git.worker``.

libgit2's TLS trust store, home directory (where it finds ``.ssh/known_hosts``) and timeouts
are process-wide, and a libgit2 call cannot be interrupted; one process per operation gives
each operation its own settings and lets the parent end it by killing it, at ``spec.timeout``
or when the reconcile is cancelled (``controllers.child``).

The request arrives as JSON on stdin (so credentials never appear in argv), the answer goes
to stdout as JSON: ``{"heads": {...}}`` or ``{"commit": ..., "message": ...}``, or
``{"error": ..., "reason": ...}`` (with ``"rejected": true`` for a push the remote refused
because a branch moved).

Operations: ``list_heads`` and ``checkout`` read (GitRepository); ``clone``, ``stage`` and
``push`` write (ImageUpdateAutomation): clone a branch to a work tree the parent edits, stage
every change and give the parent the commit to sign, then store the commit and push it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import CheckoutStrategy

AUTH_FAILED = "AuthenticationFailed"
GIT_FAILED = "GitOperationFailed"
MAX_LIBGIT2_TIMEOUT_MS = 2**31 - 1


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials, headers and host verification for one operation."""

    def __init__(self, auth: dict[str, Any]) -> None:
        super().__init__()
        self._auth = auth
        self._tries = 0

    def credentials(self, url: str, username_from_url: str | None, allowed_types: int) -> Any:
        self._tries += 1
        if self._tries > 3:  # libgit2 asks again after a rejection; stop the loop
            raise pygit2.GitError("authentication failed: credentials were rejected")
        auth = self._auth
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY and auth.get("identity"):
            user = username_from_url or "git"
            return pygit2.KeypairFromMemory(
                user, auth.get("identity.pub") or "", auth["identity"], auth.get("password") or ""
            )
        if allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT and auth.get("username"):
            return pygit2.UserPass(auth["username"], auth.get("password") or "")
        raise pygit2.GitError("authentication required but no usable credentials were given")

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # Never override libgit2's verdict: TLS against the trust store, SSH against known_hosts.
        return valid

    def custom_headers(self) -> list[str] | None:
        token = self._auth.get("bearerToken")
        return [f"Authorization: Bearer {token}"] if token else None


def _configure(request: dict[str, Any], home: Path) -> None:
    auth = request.get("auth") or {}
    pygit2.settings.homedir = str(home)
    if auth.get("known_hosts"):
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "known_hosts").write_text(auth["known_hosts"])
    if auth.get("ca.crt"):
        ca = home / "ca.crt"
        ca.write_text(auth["ca.crt"])
        pygit2.settings.set_ssl_cert_locations(str(ca), None)
    # libgit2 takes a C int of milliseconds (about 24.8 days): a longer spec.timeout is
    # left to the parent, which kills this process when it runs out.
    timeout_ms = min(int(float(request.get("timeout", 60)) * 1000), MAX_LIBGIT2_TIMEOUT_MS)
    pygit2.settings.server_connect_timeout = timeout_ms
    pygit2.settings.server_timeout = timeout_ms


def list_heads(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Every ref the remote advertises, with its object id (peeled tags as ``name^{}``)."""
    repo = pygit2.init_repository(str(scratch / "ls"), bare=True)
    remote = repo.remotes.create_anonymous(request["url"])
    heads = remote.list_heads(
        callbacks=Callbacks(request.get("auth") or {}), proxy=request.get("proxy")
    )
    return {"heads": {head.name: str(head.oid) for head in heads}}


def checkout(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Fetch ``refspec`` (or, with ``commit`` and no ref, every branch) and check out ``commit``."""
    dest = Path(request["dest"])
    repo = pygit2.init_repository(str(dest))
    remote = repo.remotes.create_anonymous(request["url"])
    refspecs = [request["refspec"]] if request.get("refspec") else ["+refs/heads/*:refs/heads/*"]
    depth = int(request.get("depth") or 0)
    _fetch(remote, refspecs, request, depth)
    fetched = None
    if request.get("local_ref"):
        fetched = pygit2.Oid(hex=str(repo.references[request["local_ref"]].target))
    target = request.get("commit") or str(fetched)
    try:
        obj = repo.revparse_single(target)
    except (KeyError, ValueError) as err:
        raise pygit2.GitError(f"commit '{target}' not found in the fetched history") from err
    commit = obj.peel(pygit2.Commit)
    repo.checkout_tree(commit.tree, strategy=CheckoutStrategy.FORCE)  # type: ignore[no-untyped-call]
    repo.set_head(commit.id)
    if request.get("recurse_submodules"):
        repo.submodules.update(init=True, callbacks=Callbacks(request.get("auth") or {}))
    tag_signature, tag_signed_data = _tag_signature(repo, fetched)
    return {
        "tag_signature": tag_signature,
        "tag_signed_data": tag_signed_data,
        "commit": str(commit.id),
        "message": commit.message.strip().splitlines()[0] if commit.message.strip() else "",
        "signature": commit.gpg_signature[0].decode() if commit.gpg_signature[0] else None,
        "signed_data": commit.gpg_signature[1].decode() if commit.gpg_signature[0] else None,
    }


PGP_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"


def _tag_signature(
    repo: pygit2.Repository, oid: pygit2.Oid | None
) -> tuple[str | None, str | None]:
    """An annotated tag's PGP signature and the data it signs, from the raw tag object."""
    if oid is None or not isinstance(repo[oid], pygit2.Tag):
        return None, None
    raw = repo.odb.read(oid)[1]
    at = raw.find(PGP_SIGNATURE)
    if at < 0:
        return None, raw.decode(errors="replace")
    return raw[at:].decode(errors="replace"), raw[:at].decode(errors="replace")


def clone(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Fetch the checkout target (and the push branch when the remote has it, ``push_ref``),
    put local branch ``branch`` at the push branch's head, else at the target, and check it
    out into ``dest``."""
    dest = Path(request["dest"])
    repo = pygit2.init_repository(str(dest))
    remote = repo.remotes.create_anonymous(request["url"])
    # Remote-tracking names: the local branch made below must not be a fetch target.
    refspecs = [f"+{request['refname']}:refs/weir/target"] if request.get("refname") else []
    if not refspecs:
        refspecs = ["+refs/heads/*:refs/remotes/origin/*"]
    if request.get("push_ref"):
        refspecs.append(f"+{request['push_ref']}:refs/weir/push")
    _fetch(remote, refspecs, request, int(request.get("depth") or 0))
    if request.get("commit"):
        target = request["commit"]
    else:
        target = str(repo.references["refs/weir/target"].target)
    try:
        commit = repo.revparse_single(target).peel(pygit2.Commit)
    except (KeyError, ValueError) as err:
        raise pygit2.GitError(f"commit '{target}' not found in the fetched history") from err
    start = commit
    if request.get("push_ref"):
        start = repo.revparse_single("refs/weir/push").peel(pygit2.Commit)
    branch = repo.branches.local.create(request["branch"], start, force=True)
    repo.checkout_tree(start.tree, strategy=CheckoutStrategy.FORCE)  # type: ignore[no-untyped-call]
    repo.set_head(branch.name)
    return {"commit": str(commit.id), "head": str(start.id)}


def stage(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Stage every change under the work tree (new, changed, deleted; ignored files stay out)
    and give back the commit to make, unsigned: ``{"changed": false}`` when the tree is the
    head's."""
    repo = pygit2.Repository(request["dest"])
    index = repo.index
    index.add_all()
    # add_all leaves files deleted from the work tree in the index.
    for path, flags in repo.status().items():
        if flags & pygit2.enums.FileStatus.WT_DELETED:
            index.remove(path)
    index.write()
    tree = index.write_tree()
    head = repo.head.peel(pygit2.Commit)
    if tree == head.tree_id:
        return {"changed": False}
    author, committer = _signature(request["author"]), _signature(request["committer"])
    buffer = repo.create_commit_string(author, committer, request["message"], tree, [head.id])
    return {"changed": True, "buffer": buffer}


def _signature(person: dict[str, Any]) -> pygit2.Signature:
    # libgit2 refuses an empty name, which Flux's author allows: the email stands in for it.
    name = person["name"] or person["email"]
    return pygit2.Signature(name, person["email"], int(person["time"]), 0)


class PushCallbacks(Callbacks):
    """Also keeps what the remote said about each ref it refused."""

    def __init__(self, auth: dict[str, Any]) -> None:
        super().__init__(auth)
        self.refused: list[tuple[str, str]] = []

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            self.refused.append((refname, message))


class Rejected(Exception):
    """The remote refused a ref because it moved (not a fast-forward, or a lost race)."""


# libgit2's own checks before anything is sent (GIT_ENONFASTFORWARD), and what git's
# receive-pack answers when the ref moved under the push.
_MOVED = ("non-fastforward", "non-fast-forward", "not present locally", "fetch first", "stale")
_LOST_RACE = ("failed to lock", "cannot lock", "failed to update ref")


def push(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Store the commit (``buffer`` and its ``signature``, if any) as the head of ``branch``
    and push ``specs`` in one push: libgit2 checks every ref is a fast-forward before it sends
    anything, so a moved branch fails the whole push."""
    repo = pygit2.Repository(request["dest"])
    if request.get("signature"):
        oid = repo.create_commit_with_signature(request["buffer"], request["signature"])
    else:
        oid = repo.odb.write(pygit2.enums.ObjectType.COMMIT, request["buffer"])
    repo.references.create(f"refs/heads/{request['branch']}", oid, force=True)
    remote = repo.remotes.create_anonymous(request["url"])
    callbacks = PushCallbacks(request.get("auth") or {})
    options = [f"{key}={value}" if value else key for key, value in request["options"].items()]
    try:
        remote.push(
            request["specs"],
            callbacks=callbacks,
            proxy=request.get("proxy"),
            push_options=options or None,
        )
    except pygit2.GitError as err:
        if any(word in str(err).lower() for word in _MOVED):
            raise Rejected(f"push rejected: {err}") from err
        raise
    if callbacks.refused:
        refname, message = callbacks.refused[0]
        text = f"push to '{refname}' rejected: {message}"
        if any(word in message.lower() for word in _MOVED + _LOST_RACE):
            raise Rejected(text)
        raise pygit2.GitError(text)
    return {"commit": str(oid)}


def _fetch(remote: pygit2.Remote, refspecs: list[str], request: dict[str, Any], depth: int) -> None:
    auth, proxy = request.get("auth") or {}, request.get("proxy")
    try:
        remote.fetch(refspecs, callbacks=Callbacks(auth), proxy=proxy, depth=depth)
    except pygit2.GitError as err:
        # Some transports (local, dumb HTTP) cannot fetch shallow: fetch everything instead.
        if not depth or "shallow" not in str(err):
            raise
        remote.fetch(refspecs, callbacks=Callbacks(auth), proxy=proxy)


def _classify(message: str) -> str:
    lowered = message.lower()
    words = ("authentication", "credentials", "401", "403", "permission denied", "unauthorized")
    return AUTH_FAILED if any(word in lowered for word in words) else GIT_FAILED


def main() -> int:
    request = json.load(sys.stdin)
    operations = {
        "list_heads": list_heads,
        "checkout": checkout,
        "clone": clone,
        "stage": stage,
        "push": push,
    }
    with tempfile.TemporaryDirectory(prefix="weir-git-") as scratch:
        home = Path(scratch) / "home"
        home.mkdir(mode=0o700)
        try:
            _configure(request, home)
            answer = operations[request["op"]](request, Path(scratch))
        except Rejected as err:
            answer = {"error": str(err), "reason": GIT_FAILED, "rejected": True}
        except (pygit2.GitError, KeyError, ValueError, OSError) as err:
            message = str(err) or type(err).__name__
            answer = {"error": message, "reason": _classify(message)}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
