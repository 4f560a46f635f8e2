"""Real OCI registries for the OCIRepository tests: Debian's ``docker-registry`` (distribution 2.8).

``OCIRegistries`` starts four instances, each with filesystem storage of its own:

- ``plain``: plain HTTP, anonymous (``insecure: true`` in an OCIRepository);
- ``basic``: HTTPS with a CA of its own, htpasswd (bcrypt) basic auth;
- ``token``: plain HTTP, the token flow: the registry answers 401 with a ``Bearer`` challenge
  naming ``TokenServer`` (in this process), which hands out ES256 JWTs to a known user;
- ``mtls``: HTTPS that requires a client certificate signed by the test CA, anonymous.

``RegistryServer.push`` uploads an artifact with the registry's HTTP API (monolithic blob
uploads, then a manifest PUT), as ``flux push artifact`` would; ``tar_gz`` and the hostile
layer builders make layer content.

Processes die with the thread that started them (``PR_SET_PDEATHSIG``), so a killed test run
leaves no registry behind.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from controllers.envtest import die_with_parent, free_port
from tests.testpki import TLSFiles, self_signed_pem

__all__ = [
    "FLUX_CONFIG",
    "FLUX_CONTENT",
    "OCI_MANIFEST",
    "Blob",
    "OCIRegistries",
    "RegistryError",
    "RegistryServer",
    "TLSFiles",
    "TokenRequest",
    "TokenServer",
    "bomb_tar_gz",
    "symlink_tar_gz",
    "tar_gz",
    "traversal_tar_gz",
]

START_TIMEOUT_SECONDS = 15.0
REGISTRY = "docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"
TOKEN_SERVICE = "weir-test-registry"
TOKEN_ISSUER = "weir-test-token-issuer"


class RegistryError(RuntimeError):
    """A registry could not start, or a push failed; the message says why."""


# Layer content


def tar_gz(files: Mapping[str, str | bytes]) -> bytes:
    """A deterministic tar.gz of regular files (path to content), as ``flux push`` makes."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def symlink_tar_gz(name: str, target: str, then: Mapping[str, str] | None = None) -> bytes:
    """A tar.gz with a symlink ``name`` → ``target``, then files (``then``) that would be
    written through it if the link were followed."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        link = tarfile.TarInfo(name)
        link.type = tarfile.SYMTYPE
        link.linkname = target
        tar.addfile(link)
        for path, content in (then or {}).items():
            info = tarfile.TarInfo(path)
            info.size = len(content.encode())
            tar.addfile(info, io.BytesIO(content.encode()))
    return buffer.getvalue()


def traversal_tar_gz(path: str, content: str = "escaped\n") -> bytes:
    """A tar.gz whose one entry is named ``path`` as is, e.g. ``../../etc/evil``."""
    return tar_gz({"ok.yaml": "a: 1\n", path: content})


def bomb_tar_gz(size: int) -> bytes:
    """A tar.gz of one file of ``size`` zero bytes: a few hundred KiB that inflate to ``size``."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        info = tarfile.TarInfo("zeros.yaml")
        info.size = size
        tar.addfile(info, _Zeros(size))
    return buffer.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


@dataclass(frozen=True)
class Blob:
    """Content to push with its media type, as a manifest descriptor describes it."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] | None = None

    @property
    def digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.data).hexdigest()}"

    def descriptor(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if self.annotations:
            entry["annotations"] = dict(self.annotations)
        return entry


# TLS


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """The key ID distribution looks a JWT's ``kid`` up by: base32 of the first 240 bits of
    the sha256 of the DER public key, in colon-separated groups of four (docker/libtrust)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TokenRequest:
    """A request the token server saw; ``user`` is None when it was refused."""

    user: str | None
    scopes: tuple[str, ...]


class TokenServer:
    """A registry token server (the distribution token spec) on ``127.0.0.1``: GET /token with
    basic auth as ``username``/``password`` gets a JWT granting what ``scope`` asks; anything
    else gets 401. ``requests`` lists what it was asked, in order."""

    def __init__(self, directory: Path) -> None:
        self.username = "token-user"
        self.password = secrets.token_urlsafe(12)
        self.requests: list[TokenRequest] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._kid = _libtrust_key_id(self._key.public_key())
        # distribution trusts the keys of the certificates in this bundle.
        self.certificate = directory / "token-signer.crt"
        self.certificate.write_bytes(self_signed_pem("weir-test-token", self._key))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="weir-token-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def token(self, user: str, scopes: Sequence[str]) -> str:
        """A signed JWT for ``user`` granting every action ``scopes`` ask for."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self._kid}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        user = self._authenticate(handler.headers.get("Authorization", ""))
        self.requests.append(TokenRequest(user, scopes))
        if user is None or query.get("service") != [TOKEN_SERVICE]:
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="weir-test-token"')
        else:
            token = self.token(user, scopes)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _authenticate(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        valid = secrets.compare_digest(user, self.username) & secrets.compare_digest(
            password, self.password
        )
        return user if valid else None


# Registries


@dataclass
class RegistryServer:
    """One ``docker-registry serve`` process on 127.0.0.1.

    ``tls`` serves HTTPS (and, with ``client_certs``, requires a client certificate);
    ``htpasswd`` is a (username, password) pair for basic auth; ``token`` makes it send
    clients to that token server.
    """

    name: str
    workdir: Path
    tls: TLSFiles | None = None
    client_certs: bool = False
    htpasswd: tuple[str, str] | None = None
    token: TokenServer | None = None
    port: int = 0
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def insecure(self) -> bool:
        """Whether an OCIRepository needs ``insecure: true`` (plain HTTP)."""
        return self.tls is None

    def url(self, repository: str) -> str:
        """The ``oci://`` URL of ``repository`` for an OCIRepository."""
        return f"oci://{self.host}/{repository}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "registry.log"
        preset = self.port
        for attempt in range(3):
            # A port given beforehand is kept (its users have it written down): tried once.
            if preset and attempt:
                break
            self.port = preset or free_port()
            config = self.workdir / "config.yml"
            config.write_text(yaml.safe_dump(self._config()))
            with log_path.open("ab") as log:
                self._popen = subprocess.Popen(
                    [REGISTRY, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            if self._wait_listening():
                return
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RegistryError(f"{REGISTRY} ({self.name}) did not start:\n{tail}")

    def stop(self) -> None:
        if self._popen is None or self._popen.poll() is not None:
            return
        self._popen.send_signal(signal.SIGTERM)
        try:
            self._popen.wait(5)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()

    def _wait_listening(self) -> bool:
        assert self._popen is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        delay = 0.005
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                return False  # e.g. the port was taken meanwhile: try another
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.stop()
        raise RegistryError(
            f"{REGISTRY} ({self.name}) not listening after {START_TIMEOUT_SECONDS}s"
        )

    def _config(self) -> dict[str, Any]:
        http: dict[str, Any] = {"addr": self.host, "secret": secrets.token_hex(16)}
        if self.tls is not None:
            http["tls"] = {
                "certificate": str(self.tls.server_cert),
                "key": str(self.tls.server_key),
            }
            if self.client_certs:
                http["tls"]["clientcas"] = [str(self.tls.ca)]
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "storage")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if self.htpasswd is not None:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(_bcrypt_htpasswd(*self.htpasswd))
            config["auth"] = {"htpasswd": {"realm": "weir-test", "path": str(htpasswd)}}
        elif self.token is not None:
            config["auth"] = {
                "token": {
                    "realm": self.token.realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(self.token.certificate),
                }
            }
        return config

    # -- pushing ------------------------------------------------------------------------------

    async def push(
        self,
        repository: str,
        tags: Sequence[str],
        layers: Sequence[Blob],
        *,
        config: Blob | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """Push an OCI image manifest with ``config`` (Flux's empty config by default) and
        ``layers``, tagged with every tag in ``tags``; the manifest digest."""
        config = config or Blob(FLUX_CONFIG, b"{}")
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        async with self._client(repository) as client:
            for blob in (config, *layers):
                await self._upload(client, repository, blob)
            raw = json.dumps(manifest).encode()
            for reference in tags or [f"sha256:{hashlib.sha256(raw).hexdigest()}"]:
                await self._put_manifest(client, repository, reference, raw, OCI_MANIFEST)
        return f"sha256:{hashlib.sha256(raw).hexdigest()}"

    async def _put_manifest(
        self,
        client: httpx.AsyncClient,
        repository: str,
        reference: str,
        raw: bytes,
        media_type: str,
    ) -> None:
        response = await client.put(
            f"/v2/{repository}/manifests/{reference}",
            content=raw,
            headers={"Content-Type": media_type},
        )
        _expect(response, 201, f"manifest PUT {repository}:{reference}")

    async def _upload(self, client: httpx.AsyncClient, repository: str, blob: Blob) -> None:
        started = await client.post(f"/v2/{repository}/blobs/uploads/")
        _expect(started, 202, f"blob upload to {repository}")
        location = httpx.URL(str(client.base_url)).join(started.headers["Location"])
        finished = await client.put(
            location.copy_merge_params({"digest": blob.digest}),
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _expect(finished, 201, f"blob PUT {blob.digest} to {repository}")

    @contextlib.asynccontextmanager
    async def _client(self, repository: str) -> AsyncIterator[httpx.AsyncClient]:
        scheme = "http" if self.tls is None else "https"
        verify: ssl.SSLContext | bool = True
        if self.tls is not None:
            verify = ssl.create_default_context(cafile=self.tls.ca)
            if self.client_certs:
                verify.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        headers = {}
        if self.htpasswd is not None:
            pair = f"{self.htpasswd[0]}:{self.htpasswd[1]}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        elif self.token is not None:
            token = self.token.token(self.token.username, [f"repository:{repository}:pull,push"])
            headers["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient(
            base_url=f"{scheme}://{self.host}", verify=verify, headers=headers, timeout=30
        ) as client:
            yield client


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise RegistryError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


def _bcrypt_htpasswd(username: str, password: str) -> str:
    # distribution only reads bcrypt entries; cost 5 keeps every request's check cheap.
    out = subprocess.run(
        ["htpasswd", "-nbB", "-C", "5", username, password],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip() + "\n"


class OCIRegistries:
    """The four registries the tests use; see the module docstring."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="weir-oci-registries-"))
        self.tls = TLSFiles.create(self.workdir)
        self.token_server = TokenServer(self.workdir)
        self.username = "registry-user"
        self.password = secrets.token_urlsafe(12)
        self.plain = RegistryServer("plain", self.workdir / "plain")
        self.basic = RegistryServer(
            "basic", self.workdir / "basic", tls=self.tls, htpasswd=(self.username, self.password)
        )
        self.token = RegistryServer("token", self.workdir / "token", token=self.token_server)
        self.mtls = RegistryServer("mtls", self.workdir / "mtls", tls=self.tls, client_certs=True)

    @property
    def servers(self) -> tuple[RegistryServer, ...]:
        return (self.plain, self.basic, self.token, self.mtls)

    def start(self) -> None:
        try:
            self.token_server.start()
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.token_server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
