"""The image automation's Git write path (image_automation.git) against the suite's real Git
servers: clone, edit, commit, sign, push, and what the server then holds."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from controllers.git.signing import sign
from image_automation.git import (
    Author,
    Cloned,
    GitError,
    PushRejected,
    clone,
    commit_and_push,
    push_branch,
    signing_key_from_secret,
)
from tests.gitserver import GitHTTPServer, GitRepos, GitSSHServer

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
BOT = Author(email="bot@weir.invalid", name="Weir Bot")


@dataclass(frozen=True)
class Branch:
    """A GitRepository's ``ref``: a branch only."""

    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    name: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class Remote:
    url: str
    auth: dict[str, str]


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return run(["git", *args], cwd=repo, env=env).stdout.strip()


async def clone_main(remote: Remote, dest: Path) -> Cloned:
    """``main`` of ``remote`` cloned into ``dest``, to be pushed back to ``main``."""
    return await clone(
        remote.url,
        remote.auth,
        proxy=None,
        ref=Branch("main"),
        branch="main",
        dest=dest,
        timeout=TIMEOUT,
    )


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=check)


@pytest.fixture
def repo(git_repos: GitRepos) -> str:
    name = f"auto-{uuid.uuid4().hex[:8]}"
    git_repos.create(name)
    git_repos.commit(
        name, {"deploy.yaml": "image: app:1.0.0 # marker\n", "old.txt": "x\n"}, "initial"
    )
    return name


@pytest.fixture
def https(git_https: GitHTTPServer) -> Callable[[str], Remote]:
    def remote(name: str) -> Remote:
        auth = {
            "username": git_https.username,
            "password": git_https.password,
            "ca.crt": git_https.ca_pem,
        }
        return Remote(git_https.url(name), auth)

    return remote


REMOTES = ["https", "ssh", "mtls"]


@pytest.fixture(params=REMOTES)
def remote_of(
    request: pytest.FixtureRequest, https: Callable[[str], Remote]
) -> Callable[[str], Remote]:
    if request.param == "https":
        return https
    if request.param == "ssh":
        ssh: GitSSHServer = request.getfixturevalue("git_ssh")
        return lambda name: Remote(ssh.url(name), ssh.secret_data())
    # Through the loopback bridge: libgit2 cannot present a client certificate.
    mtls: GitHTTPServer = request.getfixturevalue("git_mtls")
    cert, key = mtls.client_pair

    def remote(name: str) -> Remote:
        auth = {
            "username": mtls.username,
            "password": mtls.password,
            "ca.crt": mtls.ca_pem,
            "tls.crt": cert,
            "tls.key": key,
        }
        return Remote(mtls.url(name), auth)

    return remote


async def test_clone_edit_commit_push(
    git_repos: GitRepos, repo: str, remote_of: Callable[[str], Remote], tmp_path: Path
) -> None:
    remote = remote_of(repo)
    before = git_repos.resolve(repo, "main")
    cloned = await clone_main(remote, tmp_path / "work")
    assert (cloned.commit, cloned.head, cloned.revision) == (before, before, f"main@sha1:{before}")
    (cloned.path / "deploy.yaml").write_text("image: app:1.1.0 # marker\n")
    (cloned.path / "old.txt").unlink()
    (cloned.path / "new" / "dir").mkdir(parents=True)
    (cloned.path / "new" / "dir" / "file.yaml").write_text("a: 1\n")

    pushed = await commit_and_push(
        cloned, author=BOT, message="Update app to 1.1.0\n\nbody", timeout=TIMEOUT
    )

    bare = git_repos.path(repo)
    assert pushed is not None
    assert git_repos.resolve(repo, "main") == pushed
    assert git(bare, "rev-parse", f"{pushed}^") == before
    shown = git(bare, "show", "-s", "--format=%an|%ae|%cn|%ce|%B", pushed)
    assert (
        shown == "Weir Bot|bot@weir.invalid|Weir Bot|bot@weir.invalid|Update app to 1.1.0\n\nbody"
    )
    assert git(bare, "show", f"{pushed}:deploy.yaml") == "image: app:1.1.0 # marker"
    assert git(bare, "ls-tree", "-r", "--name-only", pushed).split() == [
        "deploy.yaml",
        "new/dir/file.yaml",
    ]


async def test_nothing_changed_commits_and_pushes_nothing(
    git_repos: GitRepos, repo: str, https: Callable[[str], Remote], tmp_path: Path
) -> None:
    remote = https(repo)
    before = git_repos.resolve(repo, "main")
    cloned = await clone_main(remote, tmp_path / "work")
    # Rewritten with the same bytes: no change.
    (cloned.path / "deploy.yaml").write_text("image: app:1.0.0 # marker\n")

    assert await commit_and_push(cloned, author=BOT, message="m", timeout=TIMEOUT) is None
    assert git_repos.resolve(repo, "main") == before
    assert git(cloned.path, "rev-parse", "HEAD") == before


async def test_a_concurrent_push_is_rejected_and_a_second_attempt_lands_once(
    git_repos: GitRepos, repo: str, https: Callable[[str], Remote], tmp_path: Path
) -> None:
    remote = https(repo)

    async def attempt(dest: Path) -> str | None:
        cloned = await clone(
            remote.url,
            remote.auth,
            proxy=None,
            ref=Branch("main"),
            branch="main",
            dest=dest,
            timeout=TIMEOUT,
        )
        (cloned.path / "deploy.yaml").write_text("image: app:2.0.0 # marker\n")
        if dest.name == "first":
            git_repos.commit(repo, {"other.txt": "someone else\n"}, "a concurrent push")
        return await commit_and_push(cloned, author=BOT, message="bump", timeout=TIMEOUT)

    with pytest.raises(PushRejected):
        await attempt(tmp_path / "first")
    concurrent = git_repos.resolve(repo, "main")
    assert git(git_repos.path(repo), "log", "-1", "--format=%s", "main") == "a concurrent push"

    pushed = await attempt(tmp_path / "second")

    bare = git_repos.path(repo)
    assert pushed == git_repos.resolve(repo, "main")
    assert git(bare, "rev-list", "--count", f"{concurrent}..main") == "1"
    assert git(bare, "rev-parse", f"{pushed}^") == concurrent
    assert git(bare, "show", f"{pushed}:other.txt") == "someone else"


async def test_push_branch_and_refspec_start_from_the_remote_push_branch(
    git_repos: GitRepos, repo: str, https: Callable[[str], Remote], tmp_path: Path
) -> None:
    remote = https(repo)
    main = git_repos.resolve(repo, "main")
    pushed: list[str | None] = []
    for run, tag in enumerate(["1.1.0", "1.2.0"]):
        cloned = await clone(
            remote.url,
            remote.auth,
            proxy=None,
            ref=Branch("main"),
            branch=push_branch(Branch("main"), "auto"),
            dest=tmp_path / str(run),
            timeout=TIMEOUT,
        )
        assert cloned.switched
        assert cloned.commit == main
        (cloned.path / "deploy.yaml").write_text(f"image: app:{tag} # marker\n")
        pushed.append(
            await commit_and_push(
                cloned,
                author=BOT,
                message=tag,
                refspec="refs/heads/auto:refs/heads/mirror",
                timeout=TIMEOUT,
            )
        )

    bare = git_repos.path(repo)
    assert git_repos.resolve(repo, "main") == main
    assert git_repos.resolve(repo, "auto") == git_repos.resolve(repo, "mirror") == pushed[1]
    # The second update sits on the first, the first on main.
    assert git(bare, "rev-list", "--format=%s", "--no-commit-header", f"{main}..auto").split() == [
        "1.2.0",
        "1.1.0",
    ]


async def test_a_rejected_push_writes_no_ref(
    git_repos: GitRepos, repo: str, https: Callable[[str], Remote], tmp_path: Path
) -> None:
    remote = https(repo)
    cloned = await clone_main(remote, tmp_path / "work")
    (cloned.path / "deploy.yaml").write_text("image: app:3.0.0 # marker\n")
    git_repos.commit(repo, {"other.txt": "moved\n"}, "moved")
    moved = git_repos.resolve(repo, "main")

    with pytest.raises(PushRejected):
        await commit_and_push(
            cloned,
            author=BOT,
            message="m",
            refspec="refs/heads/main:refs/heads/copy",
            timeout=TIMEOUT,
        )

    assert git_repos.resolve(repo, "main") == moved
    assert git_repos.resolve(repo, "copy") is None


async def test_reset_branch_replaces_the_remote_push_branch(
    git_repos: GitRepos, repo: str, https: Callable[[str], Remote], tmp_path: Path
) -> None:
    git_repos.commit(repo, {"stale.txt": "old\n"}, "stale bot work", branch="bot", base="main")
    remote = https(repo)
    main = git_repos.resolve(repo, "main")
    cloned = await clone(
        remote.url,
        remote.auth,
        proxy=None,
        ref=Branch("main"),
        branch="bot",
        dest=tmp_path / "work",
        timeout=TIMEOUT,
        reset_branch=True,
    )
    assert cloned.head == main
    (cloned.path / "deploy.yaml").write_text("image: app:4.0.0 # marker\n")

    pushed = await commit_and_push(cloned, author=BOT, message="m", timeout=TIMEOUT)

    assert git_repos.resolve(repo, "bot") == pushed
    assert git(git_repos.path(repo), "rev-parse", f"{pushed}^") == main


def _gpg_key(home: Path, passphrase: str | None) -> tuple[str, str]:
    """A new signing key in ``home``: its fingerprint and its armored secret key."""
    home.mkdir(mode=0o700)
    loopback = ["--pinentry-mode", "loopback", "--passphrase", passphrase or ""]

    def gpg(*args: str) -> str:
        argv = ["gpg", "--batch", "--homedir", str(home), *loopback, *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    gpg("--quick-gen-key", "Weir Bot <bot@weir.invalid>", "ed25519", "sign", "never")
    listing = gpg("--list-keys", "--with-colons")
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line[:3] == "fpr")
    exported = gpg("--armor", "--export-secret-keys", fingerprint)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    return fingerprint, exported


@pytest.mark.parametrize("passphrase", [None, "correct horse"], ids=["plain", "passphrase"])
async def test_gpg_signed_commit_verifies(
    git_repos: GitRepos,
    repo: str,
    https: Callable[[str], Remote],
    tmp_path: Path,
    passphrase: str | None,
) -> None:
    fingerprint, secret_key = _gpg_key(tmp_path / "gpg", passphrase)
    data = {"git.asc": secret_key}
    if passphrase:
        data["passphrase"] = passphrase
    signing = signing_key_from_secret(data, None, "apps/signing")
    remote = https(repo)
    cloned = await clone_main(remote, tmp_path / "work")
    (cloned.path / "deploy.yaml").write_text("image: app:5.0.0 # marker\n")

    pushed = await commit_and_push(
        cloned, author=BOT, message="signed", signing=signing, timeout=TIMEOUT
    )

    assert pushed is not None
    checked = run(
        ["git", "verify-commit", "--raw", pushed],
        cwd=git_repos.path(repo),
        env={"GNUPGHOME": str(tmp_path / "gpg"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    run(["gpgconf", "--homedir", str(tmp_path / "gpg"), "--kill", "all"], check=False)
    assert checked.returncode == 0, checked.stderr
    assert f"VALIDSIG {fingerprint}" in checked.stderr


async def test_ssh_signed_commit_verifies(
    git_repos: GitRepos,
    repo: str,
    https: Callable[[str], Remote],
    git_ssh: GitSSHServer,
    tmp_path: Path,
) -> None:
    pair = git_ssh.key("ed25519")
    signing = signing_key_from_secret(git_ssh.secret_data(), "ssh", "apps/deploy-key")
    remote = https(repo)
    cloned = await clone_main(remote, tmp_path / "work")
    (cloned.path / "deploy.yaml").write_text("image: app:6.0.0 # marker\n")

    pushed = await commit_and_push(
        cloned, author=BOT, message="signed", signing=signing, timeout=TIMEOUT
    )

    assert pushed is not None
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"bot@weir.invalid {pair.public}\n")
    bare = git_repos.path(repo)
    checked = run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", pushed],
        cwd=bare,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert 'Good "git" signature for bot@weir.invalid' in checked.stderr


async def test_a_protected_key_without_its_passphrase_is_refused(tmp_path: Path) -> None:
    _, secret_key = _gpg_key(tmp_path / "gpg", "correct horse")
    gpg_key = signing_key_from_secret({"git.asc": secret_key}, "gpg", "apps/signing")
    with pytest.raises(GitError, match="needs a 'passphrase' field"):
        await sign(gpg_key, "tree 0\n")
    wrong = signing_key_from_secret(
        {"git.asc": secret_key, "passphrase": "wrong"}, "gpg", "apps/signing"
    )
    with pytest.raises(GitError, match="could not sign with the key in secret 'apps/signing'"):
        await sign(wrong, "tree 0\n")

    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(tmp_path / "id")])
    identity = (tmp_path / "id").read_text()
    ssh_key = signing_key_from_secret({"identity": identity}, "ssh", "apps/signing")
    with pytest.raises(GitError, match="without 'password' field present in secret apps/signing"):
        await sign(ssh_key, "tree 0\n")
    unlocked = signing_key_from_secret(
        {"identity": identity, "password": "pw"}, "ssh", "apps/signing"
    )
    assert (await sign(unlocked, "tree 0\n")).startswith("-----BEGIN SSH SIGNATURE-----")
