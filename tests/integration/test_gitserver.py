"""The suite's Git servers serve one repository over git://, HTTP(S) and ssh://, to git and pygit2.

What the pygit2 tests pin down (pygit2 1.21, libgit2 1.9.7 with libssh2), for the source
controller:

- HTTPS trusts the CA given to ``pygit2.settings.set_ssl_cert_locations``: process-wide and
  for good (libgit2 adds it to OpenSSL's store; resetting the locations does not remove it).
  The repository's ``http.sslCAInfo`` is not read.
- SSH host keys are checked against ``<pygit2.settings.homedir>/.ssh/known_hosts``
  (process-wide), and only if the ``certificate_check`` callback returns ``valid``: without a
  callback, pygit2 accepts any host key.
- ``KeypairFromMemory`` works with ed25519 and RSA keys, the public key optional.
- A bearer token goes in ``RemoteCallbacks.custom_headers``.
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pygit2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.gitserver import GitDaemon, GitHTTPServer, GitRepos, GitSSHServer, SSHKeyType

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Served:
    name: str
    head: str
    tag: str


@pytest.fixture(scope="module")
def served(git_repos: GitRepos) -> Served:
    name = "gitserver-served"
    git_repos.create(name)
    git_repos.commit(name, {"README.md": "hello\n", "deploy/app.yaml": "kind: App\n"}, "first")
    head = git_repos.commit(name, {"README.md": "hello again\n"}, "second")
    git_repos.tag(name, "v1.0.0", head)
    return Served(name, head, "v1.0.0")


def run_git(
    *args: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    isolated = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    isolated |= {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    isolated |= {"GIT_CONFIG_GLOBAL": os.devnull, **(env or {})}
    return subprocess.run(
        ["git", *map(str, args)],
        env=isolated,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_cloned(dest: Path, served: Served) -> None:
    head = run_git("-C", dest, "rev-parse", "HEAD")
    assert head.stdout.strip() == served.head, head.stderr
    assert (dest / "README.md").read_text() == "hello again\n"
    assert (dest / "deploy" / "app.yaml").read_text() == "kind: App\n"


def ssh_command(key: Path, known_hosts: Path) -> str:
    return (
        f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes"
        f" -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    )


def other_ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def openssh_public(key: ed25519.Ed25519PrivateKey) -> str:
    blob = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return blob.decode()


# The repository helpers


def test_commits_keep_other_files_delete_with_none_and_branch_from_head(
    git_repos: GitRepos,
) -> None:
    git_repos.create("helpers")
    first = git_repos.commit("helpers", {"a.txt": "a", "dir/b.bin": b"\x00b"}, "first")
    second = git_repos.commit("helpers", {"dir/b.bin": None, "c.txt": "c"}, "second")
    feature = git_repos.commit("helpers", {"d.txt": "d"}, "feature", branch="feature")
    repo = git_repos.path("helpers")

    def files(rev: str) -> list[str]:
        return run_git("-C", repo, "ls-tree", "-r", "--name-only", rev).stdout.split()

    assert files(first) == ["a.txt", "dir/b.bin"]
    assert files(second) == ["a.txt", "c.txt"]
    assert files(feature) == ["a.txt", "c.txt", "d.txt"]
    assert git_repos.resolve("helpers", "feature~1") == second
    assert git_repos.resolve("helpers", "missing") is None


def test_tags_are_annotated_or_lightweight(git_repos: GitRepos) -> None:
    git_repos.create("tags")
    sha = git_repos.commit("tags", {"a.txt": "a"}, "first")
    annotated = git_repos.tag("tags", "v1", sha)
    lightweight = git_repos.tag("tags", "v2", sha, annotated=False)
    repo = git_repos.path("tags")
    assert run_git("-C", repo, "cat-file", "-t", annotated).stdout.strip() == "tag"
    assert lightweight == sha
    assert git_repos.resolve("tags", "v1") == sha


def test_same_content_gives_same_shas(git_repos: GitRepos) -> None:
    # Fixed author, committer and dates: expected revisions can be written down in tests.
    shas = []
    for name in ("same-1", "same-2"):
        git_repos.create(name)
        shas.append(git_repos.commit(name, {"a.txt": "a"}, "first"))
    assert shas[0] == shas[1]


def test_set_head_changes_the_branch_a_clone_checks_out(
    git_repos: GitRepos, git_daemon: GitDaemon, tmp_path: Path
) -> None:
    git_repos.create("heads")
    git_repos.commit("heads", {"a.txt": "main"}, "main")
    feature = git_repos.commit("heads", {"a.txt": "feature"}, "feature", branch="feature")
    git_repos.set_head("heads", "feature")
    result = run_git("clone", "-q", git_daemon.url("heads"), tmp_path / "clone")
    assert result.returncode == 0, result.stderr
    assert run_git("-C", tmp_path / "clone", "rev-parse", "HEAD").stdout.strip() == feature


# git://


def test_git_daemon_serves_the_repository(
    git_daemon: GitDaemon, served: Served, tmp_path: Path
) -> None:
    result = run_git("clone", "-q", git_daemon.url(served.name), tmp_path / "clone")
    assert result.returncode == 0, result.stderr
    assert_cloned(tmp_path / "clone", served)


# HTTPS and HTTP


def test_https_serves_the_repository_with_basic_auth(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    url = git_https.url(served.name).replace(
        "https://", f"https://{git_https.username}:{git_https.password}@"
    )
    result = run_git(
        "clone", "-q", url, tmp_path / "clone", env={"GIT_SSL_CAINFO": str(git_https.ca_file)}
    )
    assert result.returncode == 0, result.stderr
    assert_cloned(tmp_path / "clone", served)


def test_https_serves_the_repository_with_a_bearer_token(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    seen = len(git_https.requests)
    result = run_git(
        "-c",
        f"http.extraHeader=Authorization: Bearer {git_https.token}",
        "clone",
        "-q",
        git_https.url(served.name),
        tmp_path / "clone",
        env={"GIT_SSL_CAINFO": str(git_https.ca_file)},
    )
    assert result.returncode == 0, result.stderr
    assert_cloned(tmp_path / "clone", served)
    assert {request.user for request in git_https.requests[seen:]} == {"bearer"}


def test_plain_http_serves_the_repository(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    url = git_https.http_url(served.name).replace(
        "http://", f"http://{git_https.username}:{git_https.password}@"
    )
    result = run_git("clone", "-q", url, tmp_path / "clone")
    assert result.returncode == 0, result.stderr
    assert_cloned(tmp_path / "clone", served)


def test_https_clone_with_a_wrong_password_fails(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    url = git_https.url(served.name).replace("https://", f"https://{git_https.username}:wrong@")
    result = run_git(
        "clone", "-q", url, tmp_path / "clone", env={"GIT_SSL_CAINFO": str(git_https.ca_file)}
    )
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr


def test_https_clone_without_the_ca_fails(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    url = git_https.url(served.name).replace(
        "https://", f"https://{git_https.username}:{git_https.password}@"
    )
    result = run_git("clone", "-q", url, tmp_path / "clone")
    assert result.returncode != 0
    assert "certificate" in result.stderr.lower()


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param(("git-user", "wrong"), id="wrong-password"),
        pytest.param(("someone-else", None), id="wrong-user"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param("Basic !!!", id="malformed"),
    ],
)
def test_https_refuses_missing_or_wrong_credentials_with_401(
    git_https: GitHTTPServer, served: Served, authorization: str | tuple[str, str | None] | None
) -> None:
    headers = {}
    if isinstance(authorization, str):
        headers["Authorization"] = authorization
    elif authorization is not None:
        user, password = authorization
        pair = f"{user}:{password or git_https.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    url = f"{git_https.url(served.name)}/info/refs?service=git-upload-pack"
    with httpx.Client(
        verify=ssl.create_default_context(cafile=git_https.ca_file), timeout=10
    ) as client:
        response = client.get(url, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_https_advertises_refs_to_valid_credentials(
    git_https: GitHTTPServer, served: Served
) -> None:
    url = f"{git_https.url(served.name)}/info/refs?service=git-upload-pack"
    auth = httpx.BasicAuth(git_https.username, git_https.password)
    with httpx.Client(
        verify=ssl.create_default_context(cafile=git_https.ca_file), timeout=10, auth=auth
    ) as client:
        response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert served.head in response.text


def test_https_fetch_with_a_gzip_request_body(
    git_repos: GitRepos, git_https: GitHTTPServer, tmp_path: Path
) -> None:
    git_repos.create("gzip")
    git_repos.commit("gzip", {"a.txt": "a"}, "first")
    url = git_https.url("gzip").replace(
        "https://", f"https://{git_https.username}:{git_https.password}@"
    )
    env = {"GIT_SSL_CAINFO": str(git_https.ca_file)}
    clone = tmp_path / "clone"
    assert run_git("clone", "-q", url, clone, env=env).returncode == 0
    # Many local commits the server lacks, newer than its own: git negotiates with more
    # "have" lines than fit in 1 KiB, and gzips such request bodies.
    stream = "".join(
        f"commit refs/heads/local\ncommitter T <t@t> {1_900_000_000 + i} +0000\ndata 3\n{i:02}\n\n"
        for i in range(100)
    )
    imported = subprocess.run(
        ["git", "-C", str(clone), "fast-import", "--quiet"],
        input=stream,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    new = git_repos.commit("gzip", {"b.txt": "b"}, "second")
    seen = len(git_https.requests)

    fetched = run_git("-C", clone, "fetch", "-q", "origin", env=env)

    assert fetched.returncode == 0, fetched.stderr
    assert run_git("-C", clone, "rev-parse", "origin/main").stdout.strip() == new
    assert "gzip" in {request.content_encoding for request in git_https.requests[seen:]}


# SSH


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_ssh_serves_the_repository(
    git_ssh: GitSSHServer, served: Served, kind: SSHKeyType, tmp_path: Path
) -> None:
    key = git_ssh.key(kind)
    env = {"GIT_SSH_COMMAND": ssh_command(key.private_path, git_ssh.known_hosts_file)}
    result = run_git("clone", "-q", git_ssh.url(served.name), tmp_path / "clone", env=env)
    assert result.returncode == 0, result.stderr
    assert_cloned(tmp_path / "clone", served)


@pytest.mark.parametrize(
    ("known_host", "message"),
    [
        pytest.param(False, "No ED25519 host key is known", id="unknown"),
        pytest.param(True, "REMOTE HOST IDENTIFICATION HAS CHANGED", id="changed"),
    ],
)
def test_ssh_refuses_a_host_key_not_in_known_hosts(
    git_ssh: GitSSHServer, served: Served, known_host: bool, message: str, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = f"[127.0.0.1]:{git_ssh.port} {openssh_public(other_ed25519_key())}\n"
    known_hosts.write_text(other if known_host else "")
    env = {"GIT_SSH_COMMAND": ssh_command(git_ssh.key().private_path, known_hosts)}
    result = run_git("clone", "-q", git_ssh.url(served.name), tmp_path / "clone", env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Host key verification failed." in result.stderr


def test_ssh_refuses_a_client_key_not_authorized(
    git_ssh: GitSSHServer, served: Served, tmp_path: Path
) -> None:
    key = tmp_path / "id_other"
    key.write_bytes(
        other_ed25519_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    env = {"GIT_SSH_COMMAND": ssh_command(key, git_ssh.known_hosts_file)}
    result = run_git("clone", "-q", git_ssh.url(served.name), tmp_path / "clone", env=env)
    assert result.returncode != 0
    assert "Permission denied (publickey)" in result.stderr


def test_ssh_secret_data_is_flux_shaped(git_ssh: GitSSHServer) -> None:
    data = git_ssh.secret_data("rsa")
    assert set(data) == {"identity", "identity.pub", "known_hosts"}
    assert data["identity"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert git_ssh.secret_data()["identity"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert data["known_hosts"].startswith(f"[127.0.0.1]:{git_ssh.port} ssh-ed25519 AAAA")


# pygit2


@contextmanager
def libgit2_trust(ca_file: Path | None, known_hosts: str, home: Path) -> Iterator[None]:
    """Point libgit2's process-wide CA locations and home (for .ssh/known_hosts) at ours."""
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(known_hosts)
    settings = pygit2.settings
    saved_home = settings.homedir
    if ca_file is not None:
        settings.set_ssl_cert_locations(str(ca_file), None)
    settings.homedir = str(home)
    try:
        yield
    finally:
        # Resets the locations libgit2 reads from; CAs it already loaded stay trusted.
        del settings.ssl_cert_file
        del settings.ssl_cert_dir
        if saved_home is not None:
            settings.homedir = saved_home


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials, extra headers, and certificates accepted only when libgit2 verified them."""

    def __init__(
        self,
        credentials: pygit2.Username | pygit2.UserPass | pygit2.Keypair | None = None,
        headers: list[str] | None = None,
        *,
        verify: bool = True,
    ) -> None:
        check = (lambda _certificate, valid, _host: valid) if verify else None
        super().__init__(credentials=credentials, certificate_check=check)
        self._headers = headers

    def custom_headers(self) -> list[str] | None:
        return self._headers


def pygit2_remote(
    transport: str, daemon: GitDaemon, https: GitHTTPServer, ssh: GitSSHServer, name: str
) -> tuple[str, Callbacks]:
    userpass = pygit2.UserPass(https.username, https.password)
    ed25519_key = ssh.key("ed25519")
    remotes = {
        "git": (daemon.url(name), Callbacks()),
        "https-basic": (https.url(name), Callbacks(userpass)),
        "https-bearer": (
            https.url(name),
            Callbacks(headers=[f"Authorization: Bearer {https.token}"]),
        ),
        "http-basic": (https.http_url(name), Callbacks(userpass)),
        "ssh-ed25519-memory": (
            ssh.url(name),
            Callbacks(pygit2.KeypairFromMemory(ssh.user, None, ed25519_key.private_pem, "")),
        ),
        "ssh-rsa-memory": (
            ssh.url(name),
            Callbacks(pygit2.KeypairFromMemory(ssh.user, None, ssh.key("rsa").private_pem, "")),
        ),
        "ssh-ed25519-files": (
            ssh.url(name),
            Callbacks(
                pygit2.Keypair(ssh.user, ed25519_key.public_path, ed25519_key.private_path, "")
            ),
        ),
    }
    return remotes[transport]


@pytest.mark.parametrize(
    "transport",
    [
        "git",
        "https-basic",
        "https-bearer",
        "http-basic",
        "ssh-ed25519-memory",
        "ssh-rsa-memory",
        "ssh-ed25519-files",
    ],
)
def test_pygit2_clones_over_every_transport(
    git_daemon: GitDaemon,
    git_https: GitHTTPServer,
    git_ssh: GitSSHServer,
    served: Served,
    transport: str,
    tmp_path: Path,
) -> None:
    url, callbacks = pygit2_remote(transport, git_daemon, git_https, git_ssh, served.name)
    with libgit2_trust(git_https.ca_file, git_ssh.known_hosts + "\n", tmp_path / "home"):
        repo = pygit2.clone_repository(url, tmp_path / "clone", callbacks=callbacks)
    assert str(repo.head.target) == served.head
    assert (tmp_path / "clone" / "README.md").read_text() == "hello again\n"


def test_pygit2_https_with_a_wrong_password_fails(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    callbacks = Callbacks(pygit2.UserPass(git_https.username, "wrong"))
    with (
        libgit2_trust(git_https.ca_file, "", tmp_path / "home"),
        pytest.raises(pygit2.GitError, match="too many redirects or authentication replays"),
    ):
        pygit2.clone_repository(git_https.url(served.name), tmp_path / "clone", callbacks=callbacks)


# libgit2 only ever adds CAs to its process-wide store, so trust that once existed cannot be taken
# back: the cases without our CA run in a fresh interpreter, in order.
_CA_STEPS = """
import sys, tempfile
import pygit2

url, user, password, ca_file, scratch = sys.argv[1:]


def fetch(config):
    repo = pygit2.init_repository(tempfile.mkdtemp(dir=scratch), bare=True)
    for key, value in config.items():
        repo.config[key] = value
    remote = repo.remotes.create("origin", url)
    try:
        remote.fetch(callbacks=pygit2.RemoteCallbacks(pygit2.UserPass(user, password)))
        print("fetched")
    except pygit2.GitError as err:
        print(f"{type(err).__name__}: {err}")


fetch({})
fetch({"http.sslCAInfo": ca_file})
pygit2.settings.set_ssl_cert_locations(ca_file, None)
fetch({})
del pygit2.settings.ssl_cert_file
del pygit2.settings.ssl_cert_dir
fetch({})
"""


def test_pygit2_trusts_a_ca_only_from_ssl_cert_locations_and_for_good(
    git_https: GitHTTPServer, served: Served, tmp_path: Path
) -> None:
    args = [git_https.url(served.name), git_https.username, git_https.password]
    result = subprocess.run(
        [sys.executable, "-c", _CA_STEPS, *args, str(git_https.ca_file), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rejected = "CertificateError: user rejected certificate for 127.0.0.1"
    assert result.stdout.splitlines() == [
        rejected,  # the system CAs only
        rejected,  # http.sslCAInfo in the repository's config is ignored
        "fetched",  # set_ssl_cert_locations(ca_file, None)
        "fetched",  # back to the default locations, yet the CA is still trusted
    ]


@pytest.mark.parametrize("known_host", [False, True], ids=["unknown", "changed"])
def test_pygit2_ssh_refuses_a_host_key_not_in_known_hosts(
    git_ssh: GitSSHServer, served: Served, known_host: bool, tmp_path: Path
) -> None:
    other = f"[127.0.0.1]:{git_ssh.port} {openssh_public(other_ed25519_key())}\n"
    callbacks = Callbacks(
        pygit2.KeypairFromMemory(git_ssh.user, None, git_ssh.key().private_pem, "")
    )
    with (
        libgit2_trust(None, other if known_host else "", tmp_path / "home"),
        pytest.raises(pygit2.CertificateError, match="invalid or unknown remote ssh hostkey"),
    ):
        pygit2.clone_repository(git_ssh.url(served.name), tmp_path / "clone", callbacks=callbacks)


def test_pygit2_without_certificate_check_trusts_any_ssh_host_key(
    git_ssh: GitSSHServer, served: Served, tmp_path: Path
) -> None:
    # The trap the controller must avoid: pygit2's default certificate_check passes SSH host
    # keys through as accepted, whatever known_hosts says.
    other = f"[127.0.0.1]:{git_ssh.port} {openssh_public(other_ed25519_key())}\n"
    credentials = pygit2.KeypairFromMemory(git_ssh.user, None, git_ssh.key().private_pem, "")
    with libgit2_trust(None, other, tmp_path / "home"):
        repo = pygit2.clone_repository(
            git_ssh.url(served.name),
            tmp_path / "clone",
            callbacks=Callbacks(credentials, verify=False),
        )
    assert str(repo.head.target) == served.head
