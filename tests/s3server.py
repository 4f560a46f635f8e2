"""A real S3 compatible server for the Bucket tests: MinIO, built from ``tests/s3/go.mod``.

- ``S3Server``: ``minio server`` on a free loopback port with its own data directory and root
  credentials, over plain HTTP or HTTPS (a CA of its own). ``create_bucket``, ``put_object``
  and ``delete_object`` go through the real S3 API, signed with botocore's SigV4 as the
  controller's requests are.
- ``ListingRewriter``: a reverse proxy in front of an ``S3Server`` that renames keys in
  ListObjectsV2 answers, standing in for a hostile or broken server. MinIO itself refuses
  keys such as ``../../etc/x``, so this is the only way to make a server list one.

The MinIO process dies with the thread that started it (``PR_SET_PDEATHSIG``), so a killed test
run leaves none behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from aiohttp import ClientSession, ClientTimeout, web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from controllers.envtest import die_with_parent, ensure_binaries, find_binary, free_port
from tests.testpki import TLSFiles

__all__ = ["ListingRewriter", "S3Server", "S3ServerError"]

START_TIMEOUT_SECONDS = 30.0
REGION = "us-east-1"


class S3ServerError(RuntimeError):
    """The S3 server could not start, or a request to it failed; the message says why."""


class S3Server:
    """MinIO serving ``root`` on ``127.0.0.1:<port>``, with TLS when ``tls`` is true.

    ``endpoint`` is the ``host:port`` a Bucket's ``spec.endpoint`` takes; ``access_key`` and
    ``secret_key`` are the root credentials; ``ca_pem`` is the CA of the serving certificate.
    """

    def __init__(self, root: Path, *, tls: bool = False) -> None:
        self.root = root
        self.tls = tls
        self.access_key = "weir-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        self.port = 0
        self.ca_pem = ""
        self._popen: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def log_path(self) -> Path:
        return self.root / "minio.log"

    def start(self) -> None:
        """Start MinIO and wait until it is ready to serve requests."""
        binary = find_binary("minio") or ensure_binaries()["minio"]
        data, certs = self.root / "data", self.root / "certs"
        data.mkdir(parents=True, exist_ok=True)
        certs.mkdir(exist_ok=True)
        verify: ssl.SSLContext | bool = False
        if self.tls:
            self.ca_pem = _write_certificates(certs)
            verify = ssl.create_default_context(cadata=self.ca_pem)
        self._http = httpx.Client(verify=verify, timeout=10.0)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        try:
            for _ in range(3):  # a port taken between choosing and binding: try another
                self.port = free_port()
                argv = [
                    str(binary),
                    "server",
                    str(data),
                    "--address",
                    self.endpoint,
                    "--console-address",
                    f"127.0.0.1:{free_port()}",
                    "--certs-dir",
                    str(certs),
                    "--quiet",
                ]
                with self.log_path.open("ab") as log:
                    self._popen = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        preexec_fn=die_with_parent,
                    )
                if self._wait_ready():
                    return
            raise S3ServerError(f"minio did not start:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop MinIO; safe to call twice."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- the S3 API ---------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> None:
        self._call("PUT", f"/{bucket}")

    def put_object(self, bucket: str, key: str, data: bytes | str) -> str:
        """Store ``data`` at ``key``; its ETag, without quotes."""
        body = data.encode() if isinstance(data, str) else data
        response = self._call("PUT", f"/{bucket}/{quote(key, safe='/~')}", body)
        return response.headers["etag"].strip('"')

    def delete_object(self, bucket: str, key: str) -> None:
        self._call("DELETE", f"/{bucket}/{quote(key, safe='/~')}")

    def _call(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        assert self._http is not None, "the server is not started"
        url = self.url + path
        request = AWSRequest(method=method, url=url, data=body)
        credentials = Credentials(self.access_key, self.secret_key)
        S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
        response = self._http.request(
            method, url, headers=dict(request.headers.items()), content=body
        )
        if response.status_code >= 300:
            raise S3ServerError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    # -- process ------------------------------------------------------------------------------

    def _wait_ready(self) -> bool:
        """Whether MinIO answered its readiness probe; False when it exited (port taken)."""
        assert self._popen is not None
        assert self._http is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        delay = 0.01
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if self._http.get(self.url + "/minio/health/ready").status_code == 200:
                    return True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        raise S3ServerError(f"minio was not ready in {START_TIMEOUT_SECONDS}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""


def _write_certificates(directory: Path) -> str:
    """A CA and a serving pair for 127.0.0.1 in MinIO's ``public.crt``/``private.key``; the CA
    certificate as PEM."""
    pki = directory.parent / f"{directory.name}-pki"
    pki.mkdir(exist_ok=True)
    files = TLSFiles.create(pki)
    shutil.copy(files.server_cert, directory / "public.crt")
    shutil.copy(files.server_key, directory / "private.key")
    return files.ca.read_text()


class ListingRewriter:
    """A reverse proxy on ``127.0.0.1:<port>`` in front of ``server`` (plain HTTP) that
    replaces ``<Key>old</Key>`` with ``<Key>new</Key>`` in ListObjectsV2 answers, for every
    ``old: new`` in ``renames``. Everything else passes through unchanged, Host header
    included, so SigV4 signatures made for the proxy's address still verify."""

    def __init__(self, server: S3Server, renames: dict[str, str]) -> None:
        if server.tls:
            raise ValueError("ListingRewriter fronts a plain HTTP server")
        self.server = server
        self.renames = renames
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=30), auto_decompress=True)
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("content-length", "transfer-encoding", "accept-encoding")
        }
        async with self._session.request(
            request.method,
            URL(self.server.url + request.raw_path, encoded=True),
            headers=headers,
            data=await request.read() or None,
        ) as upstream:
            body = await upstream.read()
            if request.query.get("list-type") == "2" and upstream.status == 200:
                for old, new in self.renames.items():
                    body = body.replace(f"<Key>{old}</Key>".encode(), f"<Key>{new}</Key>".encode())
            kept = {
                name: value
                for name, value in upstream.headers.items()
                if name.lower() not in ("content-length", "content-encoding", "transfer-encoding")
            }
            return web.Response(status=upstream.status, body=body, headers=kept)
