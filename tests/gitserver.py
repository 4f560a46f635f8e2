"""Real Git servers for the source controller's tests, all serving one root of bare repositories.

- ``GitDaemon``: ``git daemon`` (git://), anonymous and read-only.
- ``GitHTTPServer``: ``git http-backend`` as CGI behind aiohttp, over HTTPS (a CA of its own) and
  plain HTTP, with basic auth or a bearer token.
- ``GitSSHServer``: Debian's ``sshd`` with its own host key, config and authorized keys.

``GitRepos`` builds the repositories with the git CLI: repository ``name`` is the bare
repository ``<root>/<name>.git``, and every server's ``url(name)`` points at it.

Servers are started and stopped from the thread that owns them (the test session's main thread):
their processes die with that thread (``PR_SET_PDEATHSIG``), so a killed test run leaves none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from aiohttp import BasicAuth, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from controllers.envtest import die_with_parent, free_port
from tests.testpki import TLSFiles

__all__ = [
    "GitDaemon",
    "GitHTTPServer",
    "GitRepos",
    "GitSSHServer",
    "GitServerError",
    "HTTPRequest",
    "SSHKeyPair",
    "SSHKeyType",
]

START_TIMEOUT_SECONDS = 15.0
# Fixed identity and date, so the same commits give the same SHAs on every run.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Weir Test",
    "GIT_AUTHOR_EMAIL": "test@weir.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "Weir Test",
    "GIT_COMMITTER_EMAIL": "test@weir.invalid",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}


class GitServerError(RuntimeError):
    """A Git server could not start, or a git command failed; the message says why."""


def _git_env(**extra: str) -> dict[str, str]:
    # The caller's ~/.gitconfig and /etc/gitconfig must not change what the suite builds.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **extra}


def _git_exec_path() -> Path:
    # git-daemon and git-http-backend are run directly rather than through the `git` wrapper,
    # which would run them as its child: a wrapper killed on the parent's death would orphan it.
    out = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


# Repositories


@dataclass
class GitRepos:
    """Bare repositories under ``root``, built with the git CLI and a fixed author and date."""

    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """The bare repository of ``name``: ``<root>/<name>.git``."""
        return self.root / f"{name}.git"

    def create(self, name: str, *, default_branch: str = "main") -> Path:
        """An empty bare repository whose HEAD is ``default_branch``."""
        path = self.path(name)
        if path.exists():
            raise GitServerError(f"repository {name!r} already exists")
        self._git(
            self.root, "init", "--quiet", "--bare", f"--initial-branch={default_branch}", path
        )
        return path

    def commit(
        self,
        name: str,
        files: Mapping[str, str | bytes | Symlink | Gitlink | None],
        message: str,
        branch: str = "main",
        *,
        base: str | None = None,
        sign_with: GpgKey | None = None,
    ) -> str:
        """Commit ``files`` (path to content; ``None`` deletes) on ``branch``; return the SHA.

        Other files are kept. A branch that does not exist yet starts at ``base`` (default: HEAD,
        or no parent in an empty repository). ``sign_with`` makes a PGP-signed commit.
        """
        repo = self.path(name)
        current = self.resolve(name, f"refs/heads/{branch}")
        parent = current or self.resolve(name, base or "HEAD")
        if current is None and base is not None and parent is None:
            raise GitServerError(f"base {base!r} names no commit in {name!r}")
        with tempfile.TemporaryDirectory(prefix="weir-commit-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            if parent:
                self._git(repo, "read-tree", parent, env=env)
            entries: list[str] = []
            written = [
                (path, content)
                for path, content in files.items()
                if content is not None and not isinstance(content, Gitlink)
            ]
            if written:
                blobs = Path(scratch) / "blobs"
                blobs.mkdir()
                sources = []
                for number, (_, content) in enumerate(written):
                    source = blobs / str(number)
                    if isinstance(content, Symlink):
                        source.write_text(content.target)  # a link's blob is its target
                    else:
                        source.write_bytes(
                            content.encode() if isinstance(content, str) else content
                        )
                    sources.append(str(source))
                shas = self._git(
                    repo, "hash-object", "-w", "--stdin-paths", stdin="\n".join(sources)
                ).split()
                entries += [
                    f"{'120000' if isinstance(content, Symlink) else '100644'} {sha}\t{path}"
                    for (path, content), sha in zip(written, shas, strict=True)
                ]
            entries += [
                f"0 {'0' * 40}\t{path}" for path, content in files.items() if content is None
            ]
            entries += [
                f"160000 {content.commit}\t{path}"
                for path, content in files.items()
                if isinstance(content, Gitlink)
            ]
            self._git(repo, "update-index", "--index-info", stdin="\n".join(entries), env=env)
            tree = self._git(repo, "write-tree", env=env)
            parents = ["-p", parent] if parent else []
            signing = [f"-S{sign_with.fingerprint}"] if sign_with else []
            gpg_env = {"GNUPGHOME": str(sign_with.home)} if sign_with else {}
            sha = self._git(
                repo, "commit-tree", tree, *parents, *signing, "-m", message, env=gpg_env
            )
            if sign_with:
                sign_with.stop_agent()
        self._git(repo, "update-ref", f"refs/heads/{branch}", sha, current or "0" * 40)
        return sha

    def blob(self, name: str, content: str) -> str:
        """Store ``content`` as a blob; its SHA."""
        return self._git(self.path(name), "hash-object", "-w", "--stdin", stdin=content)

    def mktree(self, name: str, lines: list[str]) -> str:
        """A tree built verbatim from ``git mktree`` lines, names unchecked, as a hostile server
        could serve it; its SHA."""
        return self._git(self.path(name), "mktree", stdin="\n".join(lines) + "\n")

    def commit_tree(self, name: str, tree: str, message: str, branch: str = "main") -> str:
        """Commit ``tree`` on top of ``branch``; the commit SHA."""
        repo = self.path(name)
        parent = self.resolve(name, f"refs/heads/{branch}")
        parents = ["-p", parent] if parent else []
        sha = self._git(repo, "commit-tree", tree, *parents, "-m", message)
        self._git(repo, "update-ref", f"refs/heads/{branch}", sha)
        return sha

    def tag(
        self, name: str, tag: str, ref: str = "HEAD", *, annotated: bool = True, message: str = ""
    ) -> str:
        """Tag ``ref``; return what the tag ref points at (the tag object when annotated)."""
        options = ["-a", "-m", message or tag] if annotated else []
        self._git(self.path(name), "tag", *options, tag, ref)
        return self._git(self.path(name), "rev-parse", f"refs/tags/{tag}")

    def set_head(self, name: str, branch: str) -> None:
        """Make ``branch`` the repository's default branch (what a clone checks out)."""
        self._git(self.path(name), "symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def resolve(self, name: str, rev: str) -> str | None:
        """The commit SHA ``rev`` names in repository ``name``, or None if it names none."""
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=self.path(name),
            env=_git_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() or None

    def _git(
        self,
        cwd: Path,
        *args: str | Path,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        out = subprocess.run(
            ["git", *map(str, args)],
            cwd=cwd,
            env=_git_env(**_IDENTITY, **(env or {})),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise GitServerError(f"git {args[0]} failed in {cwd}: {out.stderr.strip()}")
        return out.stdout.strip()


# Processes


class _ServerProcess:
    """One long-running server process, its output in ``log_path``."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start_listening(
        self, argv_for_port: Callable[[int], list[str]], env: Mapping[str, str] | None = None
    ) -> int:
        """Start on a free port and wait until it accepts connections; return the port.

        Retries on a new port when the chosen one was taken between choosing and binding.
        """
        for _ in range(3):
            port = free_port()
            with self.log_path.open("ab") as log:
                self.popen = subprocess.Popen(
                    argv_for_port(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=die_with_parent,
                )
            if self._wait_listening(port):
                return port
        raise GitServerError(f"{self.name} did not start:\n{self._log_tail()}")

    def _wait_listening(self, port: int) -> bool:
        assert self.popen is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        delay = 0.005
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.stop()
        raise GitServerError(f"{self.name} not listening after {START_TIMEOUT_SECONDS}s")

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""


class GitDaemon:
    """``git daemon`` serving every repository under ``root`` at ``git://127.0.0.1:<port>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._workdir: Path | None = None
        self._process: _ServerProcess | None = None

    def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="weir-git-daemon-"))
        self._process = _ServerProcess("git daemon", self._workdir / "daemon.log")
        daemon = str(_git_exec_path() / "git-daemon")
        try:
            self.port = self._process.start_listening(
                lambda port: [
                    daemon,
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
                    f"--base-path={self.root}",
                    "--listen=127.0.0.1",
                    f"--port={port}",
                ],
                env=_git_env(HOME=str(self._workdir)),
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"


# HTTP(S)


def _write_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, a server pair for 127.0.0.1 and localhost, and a client pair (client.crt,
    client.key, for mutual TLS) in ``directory``: returns (ca.crt, server.crt, server.key)."""
    files = TLSFiles.create(directory)
    return files.ca, files.server_cert, files.server_key


@dataclass(frozen=True)
class HTTPRequest:
    """A request the HTTP server saw; ``user`` is None when it was refused (401)."""

    method: str
    path: str
    user: str | None
    content_encoding: str | None


class GitHTTPServer:
    """Smart HTTP: ``git http-backend`` as CGI behind aiohttp, on HTTPS and plain HTTP ports.

    Every request needs basic auth (``username``/``password``, random unless given) or
    ``Authorization: Bearer <token>``; anything else gets 401 with ``WWW-Authenticate: Basic``.
    The server runs its own event loop in a thread, so sync and async tests alike can use it.
    ``requests`` lists what it was asked, in order; the user of a bearer token is ``"bearer"``.
    """

    def __init__(
        self,
        root: Path,
        *,
        username: str = "git-user",
        password: str | None = None,
        token: str | None = None,
        require_client_cert: bool = False,
    ) -> None:
        """``require_client_cert``: HTTPS clients must show a certificate the CA issued."""
        self.root = root
        self.require_client_cert = require_client_cert
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.token = token or secrets.token_urlsafe(24)
        self.port = 0
        self.http_port = 0
        self.ca_file = Path()
        self.requests: list[HTTPRequest] = []
        self._workdir: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._backend = Path()
        self._backend_log: IO[bytes] | None = None

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}.git"

    def http_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/{name}.git"

    @property
    def ca_pem(self) -> str:
        """The CA certificate, as for a Flux Secret's ``ca.crt``."""
        return self.ca_file.read_text()

    @property
    def client_pair(self) -> tuple[str, str]:
        """A client certificate and key the CA issued, as a Secret's ``tls.crt``/``tls.key``."""
        directory = self.ca_file.parent
        return (directory / "client.crt").read_text(), (directory / "client.key").read_text()

    def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="weir-git-http-"))
        try:
            self._backend = _git_exec_path() / "git-http-backend"
            self.ca_file, cert_file, key_file = _write_tls_files(self._workdir)
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cert_file, key_file)
            if self.require_client_cert:
                tls.verify_mode = ssl.CERT_REQUIRED
                tls.load_verify_locations(self.ca_file)
            self._backend_log = (self._workdir / "http-backend.log").open("ab")
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(
                target=loop.run_forever, name="weir-git-http", daemon=True
            )
            self._thread.start()
            opened = asyncio.run_coroutine_threadsafe(self._open(tls), loop)
            self.port, self.http_port = opened.result(START_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        if loop is not None:
            loop.close()
        self._loop = self._thread = self._runner = None
        if self._backend_log is not None:
            self._backend_log.close()
            self._backend_log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    async def _open(self, tls: ssl.SSLContext) -> tuple[int, int]:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        # Bodies reach http-backend still compressed, with their Content-Encoding: it gunzips.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        ports = []
        for context in (tls, None):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
            await web.SockSite(self._runner, sock, ssl_context=context).start()
        return ports[0], ports[1]

    def _authenticate(self, header: str) -> str | None:
        """The user a request's ``Authorization`` header proves, or None."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return "bearer" if _same(value.strip(), self.token) else None
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return None
        valid = _same(auth.login, self.username) & _same(auth.password, self.password)
        return auth.login if valid else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user = self._authenticate(request.headers.get("Authorization", ""))
        encoding = request.headers.get("Content-Encoding")
        self.requests.append(HTTPRequest(request.method, request.path, user, encoding))
        if user is None:
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={"WWW-Authenticate": 'Basic realm="weir-test-git"'},
            )
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self._workdir),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "REMOTE_USER": user,
            "REMOTE_ADDR": request.remote or "",
        }
        if request.content_length is not None:
            env["CONTENT_LENGTH"] = str(request.content_length)
        for header, value in request.headers.items():
            # CGI passes request headers as HTTP_*: Content-Encoding and Git-Protocol matter.
            if header.lower() not in ("authorization", "content-type", "content-length"):
                env["HTTP_" + header.upper().replace("-", "_")] = value
        process = await asyncio.create_subprocess_exec(
            self._backend,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._backend_log,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        feeding = asyncio.create_task(_feed(request, process.stdin))
        try:
            status, headers = await _read_cgi_headers(process.stdout)
            response = web.StreamResponse(status=status, headers=headers)
            await response.prepare(request)
            while chunk := await process.stdout.read(65536):
                await response.write(chunk)
            await feeding
            await response.write_eof()
            return response
        finally:
            feeding.cancel()
            if process.returncode is None and not process.stdout.at_eof():
                process.kill()
            await asyncio.gather(feeding, process.wait(), return_exceptions=True)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def _feed(request: web.Request, stdin: asyncio.StreamWriter) -> None:
    # http-backend may stop reading early (bad request): a broken pipe is its answer, not ours.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        async for chunk in request.content.iter_chunked(65536):
            stdin.write(chunk)
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status = 200
    headers: dict[str, str] = {}
    while line := (await stdout.readline()).decode("latin-1").rstrip("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers[name.strip()] = value.strip()
    return status, headers


# SSH


SSHKeyType = Literal["ed25519", "rsa"]


@dataclass(frozen=True)
class SSHKeyPair:
    """A client key: ``private_pem`` as in a Flux Secret's ``identity``, ``public`` its line."""

    private_pem: str
    public: str
    private_path: Path
    public_path: Path


def _ssh_key_pair(
    directory: Path, name: str, key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
) -> SSHKeyPair:
    # ed25519 keys only exist in OpenSSH format; RSA is written as classic PEM ("BEGIN RSA").
    private_format = (
        serialization.PrivateFormat.OpenSSH
        if isinstance(key, ed25519.Ed25519PrivateKey)
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    pair = SSHKeyPair(
        private_pem=private_pem,
        public=f"{public.decode()} weir-test-{name}",
        private_path=directory / name,
        public_path=directory / f"{name}.pub",
    )
    pair.private_path.write_text(pair.private_pem)
    pair.private_path.chmod(0o600)
    pair.public_path.write_text(pair.public + "\n")
    return pair


class GitSSHServer:
    """Debian's ``sshd`` on 127.0.0.1, admitting the current user with ``ed25519`` or ``rsa``.

    ``known_hosts`` is the server's line, ``known_hosts_file`` a file holding it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = 0
        self.known_hosts = ""
        self.known_hosts_file = Path()
        self.ed25519: SSHKeyPair | None = None
        self.rsa: SSHKeyPair | None = None
        self._workdir: Path | None = None
        self._process: _ServerProcess | None = None

    def url(self, name: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.root.resolve()}/{name}.git"

    def key(self, kind: SSHKeyType = "ed25519") -> SSHKeyPair:
        pair = {"ed25519": self.ed25519, "rsa": self.rsa}[kind]
        if pair is None:
            raise GitServerError("the ssh server is not started")
        return pair

    def secret_data(self, kind: SSHKeyType = "ed25519") -> dict[str, str]:
        """Flux-style Secret ``stringData``: ``identity``, ``identity.pub``, ``known_hosts``."""
        pair = self.key(kind)
        return {
            "identity": pair.private_pem,
            "identity.pub": pair.public + "\n",
            "known_hosts": self.known_hosts + "\n",
        }

    def authorize(self, public_key: str) -> None:
        """Admit one more key (a deploy key): sshd reads the file at every login."""
        assert self._workdir is not None, "the ssh server is not started"
        with (self._workdir / "authorized_keys").open("a") as keys:
            keys.write(public_key.strip() + "\n")

    def start(self) -> None:
        workdir = self._workdir = Path(tempfile.mkdtemp(prefix="weir-sshd-"))
        try:
            host = _ssh_key_pair(workdir, "host_ed25519", ed25519.Ed25519PrivateKey.generate())
            self.ed25519 = _ssh_key_pair(
                workdir, "id_ed25519", ed25519.Ed25519PrivateKey.generate()
            )
            self.rsa = _ssh_key_pair(
                workdir, "id_rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )
            authorized = workdir / "authorized_keys"
            authorized.write_text(f"{self.ed25519.public}\n{self.rsa.public}\n")
            if os.geteuid() == 0:
                # sshd started as root insists on its privilege separation directory.
                Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            self._process = _ServerProcess("sshd", workdir / "sshd.log")
            self.port = self._process.start_listening(
                lambda port: self._argv(port, host.private_path, authorized)
            )
            host_key = " ".join(host.public.split()[:2])
            self.known_hosts = f"[127.0.0.1]:{self.port} {host_key}"
            self.known_hosts_file = workdir / "known_hosts"
            self.known_hosts_file.write_text(self.known_hosts + "\n")
        except BaseException:
            self.stop()
            raise

    def _argv(self, port: int, host_key: Path, authorized: Path) -> list[str]:
        assert self._workdir is not None
        config = self._workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress 127.0.0.1:{port}",
                    f"HostKey {host_key}",
                    f"PidFile {self._workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    f"AllowUsers {self.user}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PrintMotd no",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    # Tests may clone many times at once; the default drops the 11th startup.
                    "MaxStartups 100",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        return ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


@dataclass(frozen=True)
class GpgKey:
    """A PGP signing key in a GnuPG home of its own (no passphrase)."""

    home: Path
    fingerprint: str
    public: str  # ASCII-armored, as a Flux verification Secret holds it

    @classmethod
    def generate(cls, home: Path, uid: str) -> GpgKey:
        home.mkdir(mode=0o700, parents=True)

        def gpg(*args: str) -> str:
            return subprocess.run(
                ["gpg", "--batch", "--homedir", str(home), *args],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = gpg("--list-keys", "--with-colons", uid)
        fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
        )
        key = cls(home, fingerprint, gpg("--armor", "--export", fingerprint))
        key.stop_agent()
        return key

    def stop_agent(self) -> None:
        """Stop this home's gpg-agent; gpg starts it again when it next needs it."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )


@dataclass(frozen=True)
class Symlink:
    """A symbolic link to commit with ``GitRepos.commit``."""

    target: str


@dataclass(frozen=True)
class Gitlink:
    """A submodule entry for ``GitRepos.commit``; pair it with a ``.gitmodules`` file."""

    commit: str
