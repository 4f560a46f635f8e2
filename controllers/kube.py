"""A small asynchronous Kubernetes API client on httpx.

It loads kubeconfigs (files, or the parsed contents of a Secret) and the in-cluster service
account itself, and adds generic resource paths, client-side rate limiting
(``--kube-api-qps``/``--kube-api-burst``), a typed error hierarchy, a line-by-line watch stream
with an inactivity timeout, impersonating views of a client, and clients for self-contained
kubeconfigs held in memory (remote clusters).

Credentials, as client-go has them: a kubeconfig's client certificate (inline or in files),
``token``, ``tokenFile`` (read again every minute), ``username``/``password`` (basic auth), or
an ``exec`` plugin (the ``client.authentication.k8s.io`` v1 and v1beta1 ExecCredential
protocol), whose credential is kept until its ``expirationTimestamp`` and asked for again
then, or when the server answers 401; in a pod, the service account's token, read again every
minute as the kubelet rotates it. ``auth-provider`` plugins and ``as`` are refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import datetime
import json
import math
import os
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from controllers import child, safeyaml, tls
from controllers.api import ResourceInfo
from controllers.transport import AsyncioTransport

__all__ = [
    "ApiError",
    "Conflict",
    "Gone",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "NotFound",
    "TransportError",
    "WatchEvent",
    "current_cluster_and_user",
]

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

# Bounded so that a stuck API server cannot hold a worker forever.
REQUEST_TIMEOUT_SECONDS = 30.0
# A server with API Priority and Fairness names the flow schema of every request it answers.
FLOW_SCHEMA_HEADER = "X-Kubernetes-PF-FlowSchema-UID"
# client-go's: a 429 or 5xx with Retry-After is tried again this many times.
MAX_RETRY_AFTER = 10
MAX_RETRY_AFTER_SECONDS = 10.0
# Connections to the API server at once (what kubernetes-asyncio's aiohttp pool allowed): every
# informer's watch holds one, the workers share the rest.
MAX_CONNECTIONS = 100
# client-go's IdleConnTimeout.
KEEPALIVE_SECONDS = 90.0
# One watch event is one object (etcd keeps at most 1.5 MiB of it); more is not an event.
MAX_WATCH_LINE_BYTES = 16 * 1024 * 1024

# In a pod: the service account's token, the cluster's CA and the pod's namespace.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# client-go reads a token file again after this long (the kubelet rotates projected tokens).
TOKEN_FILE_REREAD_SECONDS = 60.0
# A pool replaced by an exec plugin's new client certificate is closed after this long: longer
# than a watch lasts (its timeoutSeconds, 300 by default), so that none is cut off.
RETIRED_POOL_SECONDS = 600.0
# The clock an exec credential's expirationTimestamp is compared with.
_wall_clock = time.time
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
# The cluster extension handed to an exec plugin that asks for the cluster's details.
EXEC_EXTENSION = "client.authentication.k8s.io/exec"
# What an exec plugin may print: an ExecCredential is a few KiB.
MAX_EXEC_OUTPUT = 1024 * 1024


class KubeError(Exception):
    """Root of what the Kubernetes client raises (besides ``TimeoutError`` for a watch that
    went silent, and cancellation)."""


class ApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    """404: the object or the resource type does not exist."""


class Conflict(ApiError):
    """409: a stale resourceVersion or an existing object."""


class Gone(ApiError):
    """410: the requested resourceVersion is older than the server keeps."""


class TransportError(KubeError):
    """The API server could not be reached, or the connection broke mid-answer (refused,
    reset, TLS, a request past its timeout). The HTTP library's own errors never leave this
    module: they become this."""


class KubeConfigError(KubeError, ValueError):
    """A kubeconfig that cannot be used: malformed, or not self-contained."""


# Kubeconfig keys naming files of this machine: a kubeconfig held in a Secret must not make
# the process read its own files (its service account token, say).
_CLUSTER_FILE_KEYS = frozenset({"certificate-authority"})
_USER_FILE_KEYS = frozenset({"client-certificate", "client-key", "tokenFile"})
_IMPERSONATION_KEYS = frozenset({"as", "as-uid", "as-groups", "as-user-extra"})


def _named_entry(config: Mapping[str, Any], section: str, name: str) -> Mapping[str, Any]:
    """The body of entry ``name`` of a kubeconfig list (``clusters`` -> ``cluster``)."""
    kind = section[:-1]
    for entry in config.get(section) or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(kind)
            if not isinstance(body, Mapping):
                raise KubeConfigError(f'kubeconfig {kind} "{name}" has no {kind} section')
            return body
    raise KubeConfigError(f'kubeconfig has no {kind} named "{name}"')


def _current_context(config: Any) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise KubeConfigError("kubeconfig is not a mapping")
    current = config.get("current-context")
    if not current:
        raise KubeConfigError("kubeconfig has no current-context")
    return _named_entry(config, "contexts", str(current))


def current_cluster_and_user(config: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The cluster and user sections of a kubeconfig's current context (user may be empty)."""
    context = _current_context(config)
    cluster = _named_entry(config, "clusters", str(context.get("cluster") or ""))
    user = _named_entry(config, "users", str(context["user"])) if context.get("user") else {}
    return cluster, user


def _decoded(section: Mapping[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(str(section[key]), validate=True)
    except binascii.Error:
        raise KubeConfigError(f"kubeconfig {key} is not valid base64") from None


def _pem_text(data: bytes, key: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KubeConfigError(f"kubeconfig {key} is not PEM") from None


def _merged_kubeconfig(paths: list[Path]) -> dict[str, Any]:
    """The kubeconfig files of a $KUBECONFIG list merged as kubectl merges them: the first
    file to set ``current-context`` or to name an entry wins. Each entry remembers the
    directory its file paths are relative to."""
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    seen: dict[str, set[str]] = {section: set() for section in merged}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise KubeConfigError(f"cannot read kubeconfig {path}: {err.strerror}") from None
        try:
            config = safeyaml.load(data, what=f"kubeconfig {path}") or {}
        except safeyaml.YAMLLoadError as err:
            raise KubeConfigError(str(err)) from None
        if not isinstance(config, Mapping):
            raise KubeConfigError(f"kubeconfig {path} is not a mapping")
        if not merged.get("current-context") and config.get("current-context"):
            merged["current-context"] = config["current-context"]
        for section, names in seen.items():
            for entry in config.get(section) or []:
                if not isinstance(entry, Mapping) or entry.get("name") in names:
                    continue
                names.add(str(entry.get("name")))
                body = entry.get(section[:-1])
                if isinstance(body, Mapping):
                    body = {**body, "_directory": path.parent}
                merged[section].append({**entry, section[:-1]: body})
    return merged


def _local_path(section: Mapping[str, Any], key: str) -> Path:
    """A kubeconfig file path, relative to the directory of the kubeconfig that holds it."""
    path = Path(os.path.expanduser(str(section[key])))
    directory = section.get("_directory")
    return path if path.is_absolute() or directory is None else Path(directory) / path


def _read_local(section: Mapping[str, Any], key: str) -> str:
    try:
        return _local_path(section, key).read_text()
    except (OSError, UnicodeDecodeError) as err:
        problem = err.strerror if isinstance(err, OSError) else "not text"
        raise KubeConfigError(f"kubeconfig {key}: cannot read {section[key]}: {problem}") from None


def _error_for(status: int, body: bytes | str) -> ApiError:
    reason, message = "", body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(message)
        reason = str(parsed.get("reason", ""))
        message = str(parsed.get("message", message))
    except (ValueError, AttributeError):
        pass
    kind = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return kind(status, reason, message[:2000])


def _retry_after(status: int, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before sending again, for a 429 or 5xx that says so; else None."""
    if status != 429 and status < 500:
        return None
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@contextlib.contextmanager
def _transport_errors(method: str, path: str) -> Iterator[None]:
    """httpx's errors as ``TransportError`` (its timeouts are httpx errors too)."""
    try:
        yield
    except httpx.RequestError as err:
        raise TransportError(f"{method} {path}: {type(err).__name__}: {err}") from err


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    type: str
    object: dict[str, Any]


class _TokenBucket:
    """Client-side rate limit with client-go's QPS/burst meaning."""

    def __init__(self, qps: float, burst: int) -> None:
        self._qps = qps
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def disable(self) -> None:
        self._qps = 0

    @property
    def limits(self) -> tuple[float, int]:
        return self._qps, int(self._burst)

    async def take(self) -> None:
        if self._qps <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._qps)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._qps)
                self._stamp = time.monotonic()
                self._tokens = 1
            self._tokens -= 1


def resource_path(info: ResourceInfo, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of a collection or of one object."""
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{info.plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    return base


# Credentials


@dataclass(frozen=True)
class _Credential:
    """What a request carries: an Authorization header, and the client certificate and key
    (PEM) the TLS connection presents, when there are."""

    authorization: str | None = None
    client_pair: tuple[str, str] | None = None


class _Auth:
    """Where a client's credential comes from; this one: nowhere but the TLS context."""

    async def credential(self) -> _Credential:
        return _Credential()

    def refused(self, credential: _Credential) -> bool:
        """The server answered 401 to ``credential``: forget it; True when asking for a new
        one and sending again may help."""
        return False


class _StaticAuth(_Auth):
    def __init__(self, authorization: str) -> None:
        self._credential = _Credential(authorization=authorization)

    async def credential(self) -> _Credential:
        return self._credential


class _TokenFileAuth(_Auth):
    """A bearer token read from a file, and read again after ``TOKEN_FILE_REREAD_SECONDS``
    (client-go's cached file token source): the kubelet rotates service account tokens."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._token = self._read()
        self._read_at = time.monotonic()

    def _read(self) -> str:
        try:
            token = self._path.read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            problem = err.strerror if isinstance(err, OSError) else "not text"
            raise KubeConfigError(f"cannot read token file {self._path}: {problem}") from None
        if not token:
            raise KubeConfigError(f"token file {self._path} is empty")
        return token

    async def credential(self) -> _Credential:
        if time.monotonic() - self._read_at >= TOKEN_FILE_REREAD_SECONDS:
            # A file that cannot be read now keeps the last token, as client-go does.
            with contextlib.suppress(KubeConfigError):
                self._token = self._read()
            self._read_at = time.monotonic()
        return _Credential(authorization=f"Bearer {self._token}")

    def refused(self, credential: _Credential) -> bool:
        self._read_at = -math.inf
        return False


@dataclass(frozen=True)
class _ExecResult:
    credential: _Credential
    expires: float  # seconds since the epoch; infinite when the plugin gave no expiry


async def _run_exec_plugin(
    spec: Any, cluster: Mapping[str, Any], directory: Path | None
) -> _ExecResult:
    """Run the kubeconfig's ``exec`` plugin once and read its ExecCredential."""
    if not isinstance(spec, Mapping):
        raise KubeConfigError("kubeconfig exec is not a mapping")
    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise KubeConfigError(
            f"exec plugin apiVersion {api_version!r} is not supported "
            f"({' or '.join(EXEC_API_VERSIONS)})"
        )
    command = str(spec.get("command") or "")
    if not command:
        raise KubeConfigError("exec plugin has no command")
    if spec.get("interactiveMode") == "Always":
        raise KubeConfigError("exec plugin needs a terminal (interactiveMode Always)")
    if directory is not None and os.sep in command and not os.path.isabs(command):
        command = str(directory / command)  # client-go: relative to the kubeconfig
    env = dict(os.environ)
    for variable in spec.get("env") or []:
        if isinstance(variable, Mapping) and variable.get("name"):
            env[str(variable["name"])] = str(variable.get("value") or "")
    info: dict[str, Any] = {"interactive": False}
    if spec.get("provideClusterInfo"):
        info["cluster"] = _exec_cluster(cluster)
    exec_info = {"apiVersion": api_version, "kind": "ExecCredential", "spec": info}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(exec_info)
    argv = [command, *(str(arg) for arg in spec.get("args") or [])]
    try:
        done = await child.run(
            argv,
            timeout=REQUEST_TIMEOUT_SECONDS,
            env=env,
            max_output=MAX_EXEC_OUTPUT,
            stderr_tail=500,
        )
    except child.ChildTimedOut:
        raise KubeConfigError("exec plugin did not answer in time") from None
    except child.ChildError as err:
        raise KubeConfigError(f"exec plugin failed: {err}") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise KubeConfigError(f"exec plugin failed: exit status {done.returncode}: {stderr}")
    return _exec_result(done.stdout, api_version)


def _exec_cluster(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """The ExecCredential's ``spec.cluster``: the kubeconfig cluster in the protocol's names,
    and its ``client.authentication.k8s.io/exec`` extension as ``config``."""
    names = {
        "server": "server",
        "tls-server-name": "tlsServerName",
        "insecure-skip-tls-verify": "insecureSkipTLSVerify",
        "certificate-authority-data": "certificateAuthorityData",
        "proxy-url": "proxyURL",
        "disable-compression": "disableCompression",
    }
    info = {name: cluster[key] for key, name in names.items() if cluster.get(key)}
    for extension in cluster.get("extensions") or []:
        if isinstance(extension, Mapping) and extension.get("name") == EXEC_EXTENSION:
            info["config"] = extension.get("extension")
    return info


def _exec_result(output: bytes, api_version: str) -> _ExecResult:
    try:
        answer = json.loads(output)
    except ValueError:
        raise KubeConfigError("exec plugin failed: its output is not JSON") from None
    if not isinstance(answer, dict) or answer.get("kind") != "ExecCredential":
        raise KubeConfigError("exec plugin failed: its output is not an ExecCredential")
    if answer.get("apiVersion") != api_version:
        raise KubeConfigError(
            f"exec plugin failed: asked for {api_version}, it answered "
            f"{str(answer.get('apiVersion'))[:100]!r}"
        )
    status = answer.get("status")
    if not isinstance(status, dict):
        raise KubeConfigError("exec plugin returned no status")
    token = str(status.get("token") or "")
    cert = str(status.get("clientCertificateData") or "")
    key = str(status.get("clientKeyData") or "")
    if bool(cert) != bool(key):
        raise KubeConfigError("exec plugin returned a client certificate without its key")
    if not token and not cert:
        raise KubeConfigError("exec plugin returned neither a token nor a client certificate")
    expires = math.inf
    if status.get("expirationTimestamp"):
        try:
            stamp = datetime.datetime.fromisoformat(str(status["expirationTimestamp"]))
        except ValueError:
            raise KubeConfigError(
                "exec plugin returned an expirationTimestamp that is not a time"
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.UTC)
        expires = stamp.timestamp()
    credential = _Credential(
        authorization=f"Bearer {token}" if token else None,
        client_pair=(cert, key) if cert else None,
    )
    return _ExecResult(credential, expires)


class _ExecAuth(_Auth):
    """An exec plugin's credential, kept until its expiry or until the server refuses it."""

    def __init__(self, spec: Any, cluster: Mapping[str, Any], directory: Path | None) -> None:
        self._spec = spec
        self._cluster = cluster
        self._directory = directory
        self._result: _ExecResult | None = None
        self._lock = asyncio.Lock()

    async def credential(self) -> _Credential:
        async with self._lock:
            if self._result is None or _wall_clock() >= self._result.expires:
                self._result = await _run_exec_plugin(self._spec, self._cluster, self._directory)
            return self._result.credential

    def refused(self, credential: _Credential) -> bool:
        # Only once for requests refused together: the first one's retry runs the plugin.
        if self._result is not None and self._result.credential == credential:
            self._result = None
        return True


# Where a client connects


@dataclass
class _Cluster:
    """A loaded configuration: the server, how to trust it, and the credential source."""

    server: str
    context: ssl.SSLContext
    auth: _Auth
    tls_server_name: str | None = None
    proxy: str | None = None
    namespace: str | None = None


def _tls_context(cluster: Mapping[str, Any], own: bool) -> ssl.SSLContext:
    """The context that verifies the cluster: its CA alone when it names one (as client-go),
    else the system's; ``own`` for a context that client certificates will be loaded into."""
    ca: str | None = None
    if "certificate-authority-data" in cluster:
        ca = _pem_text(
            _decoded(cluster, "certificate-authority-data"), "certificate-authority-data"
        )
    elif "certificate-authority" in cluster:
        ca = _read_local(cluster, "certificate-authority")
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    if ca is None and not own and not insecure:
        return tls.system_context()
    try:
        context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    except (ssl.SSLError, ValueError):
        raise KubeConfigError("kubeconfig certificate-authority is not a PEM certificate") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_client_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        tls.load_key_pair(context, cert, key)
    except ssl.SSLError:
        raise KubeConfigError(
            "kubeconfig client certificate and key are not a matching PEM pair"
        ) from None


async def _load_kubeconfig(config: Any, *, inline_only: bool) -> _Cluster:
    """The current context of a parsed kubeconfig; ``inline_only`` refuses local file paths
    (a kubeconfig from a Secret). Runs an exec plugin once, now."""
    cluster, user = current_cluster_and_user(config)
    if inline_only:
        local = sorted((_CLUSTER_FILE_KEYS & cluster.keys()) | (_USER_FILE_KEYS & user.keys()))
        if local:
            raise KubeConfigError(
                f"kubeconfig refers to local files ({', '.join(local)}); "
                "only inline data is supported"
            )
    if "auth-provider" in user:
        raise KubeConfigError("kubeconfig auth-provider plugins are not supported")
    if _IMPERSONATION_KEYS & user.keys():
        raise KubeConfigError("kubeconfig impersonation (as) is not supported")
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeConfigError("kubeconfig cluster has no server")
    cert = key = ""
    if "client-certificate-data" in user:
        cert = _pem_text(_decoded(user, "client-certificate-data"), "client-certificate-data")
    elif "client-certificate" in user:
        cert = _read_local(user, "client-certificate")
    if "client-key-data" in user:
        key = _pem_text(_decoded(user, "client-key-data"), "client-key-data")
    elif "client-key" in user:
        key = _read_local(user, "client-key")
    if bool(cert) != bool(key):
        raise KubeConfigError("kubeconfig has a client certificate without its key, or a key alone")
    directory = user.get("_directory")
    auth: _Auth = _Auth()
    if "exec" in user:
        exec_auth = _ExecAuth(user["exec"], cluster, Path(directory) if directory else None)
        await exec_auth.credential()  # a plugin that fails is told now, as the client is made
        auth = exec_auth
    elif user.get("token"):
        auth = _StaticAuth(f"Bearer {user['token']}")
    elif user.get("tokenFile"):
        auth = _TokenFileAuth(_local_path(user, "tokenFile"))
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        auth = _StaticAuth(f"Basic {basic}")
    context = _tls_context(cluster, own=bool(cert) or "exec" in user)
    if cert:
        _load_client_pair(context, cert, key)
    namespace = _current_context(config).get("namespace")
    return _Cluster(
        server=server,
        context=context,
        auth=auth,
        tls_server_name=str(cluster.get("tls-server-name") or "") or None,
        proxy=str(cluster.get("proxy-url") or "") or None,
        namespace=str(namespace) if namespace else None,
    )


def _in_cluster() -> _Cluster:
    """The pod's service account (``SERVICE_ACCOUNT_DIR``) and the API server's Service from
    ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError(
            "no kubeconfig given and not in a cluster "
            "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)"
        )
    if ":" in host:
        host = f"[{host}]"
    auth = _TokenFileAuth(SERVICE_ACCOUNT_DIR / "token")
    try:
        context = ssl.create_default_context(cafile=SERVICE_ACCOUNT_DIR / "ca.crt")
    except (OSError, ssl.SSLError) as err:
        raise KubeConfigError(f"cannot load {SERVICE_ACCOUNT_DIR / 'ca.crt'}: {err}") from None
    try:
        namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or None
    except OSError:
        namespace = None
    return _Cluster(f"https://{host}:{port}", context, auth, namespace=namespace)


def _direct(cluster: _Cluster) -> bool:
    """Whether requests to the cluster go straight to it: no proxy-url in the kubeconfig and
    no proxy in the environment for its scheme (httpx's own transport handles proxies)."""
    if cluster.proxy:
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get(urlsplit(cluster.server).scheme) or proxies.get("all"))


class _Session:
    """What a client and its views share: the server, the connection pool, the credential."""

    def __init__(self, cluster: _Cluster) -> None:
        self.cluster = cluster
        self.http = self._new_pool()
        self._client_pair: tuple[str, str] | None = None
        # Pools left when an exec plugin rotated the client certificate: their connections
        # present the old one. Closed once the watches on them have ended, or by close().
        self._retired: dict[httpx.AsyncClient, asyncio.Task[None]] = {}

    def _new_pool(self) -> httpx.AsyncClient:
        transport = None
        if _direct(self.cluster):
            transport = AsyncioTransport(
                self.cluster.context,
                max_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )
        return httpx.AsyncClient(
            transport=transport,
            verify=self.cluster.context,
            proxy=self.cluster.proxy,
            http1=True,
            http2=False,
            timeout=REQUEST_TIMEOUT_SECONDS,
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_SECONDS,
            ),
            # HTTPS_PROXY and NO_PROXY, as client-go and kubernetes-asyncio's aiohttp honour.
            trust_env=True,
        )

    async def credential(self) -> _Credential:
        credential = await self.cluster.auth.credential()
        if credential.client_pair is not None and credential.client_pair != self._client_pair:
            first = self._client_pair is None
            cert, key = credential.client_pair
            _load_client_pair(self.cluster.context, cert, key)
            self._client_pair = credential.client_pair
            if not first and not self.http.is_closed:
                # New connections present the new certificate; pooled ones the old.
                old = self.http
                self._retired[old] = asyncio.create_task(self._close_later(old))
                self.http = self._new_pool()
        return credential

    async def _close_later(self, pool: httpx.AsyncClient) -> None:
        await asyncio.sleep(RETIRED_POOL_SECONDS)
        del self._retired[pool]
        await pool.aclose()

    async def close(self) -> None:
        for task in self._retired.values():
            task.cancel()
        await asyncio.gather(*self._retired.values(), return_exceptions=True)
        for pool in (*self._retired, self.http):
            await pool.aclose()
        self._retired.clear()


class KubeClient:
    """Typed access to the API server, shared by every task of one process."""

    def __init__(self, session: _Session, *, qps: float = 50, burst: int = 300) -> None:
        self._session = session
        self._limit = _TokenBucket(qps, burst)
        # Sent with every request; views from impersonating() share _session and _limit.
        self._identity_headers: dict[str, str] = {}
        self._owns_session = True

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        context: str | None = None,
        qps: float = 50,
        burst: int = 300,
    ) -> KubeClient:
        """Connect with ``kubeconfig``, else $KUBECONFIG (files separated by ``:`` are merged
        as kubectl merges them), else the in-cluster service account; with ``context``
        instead of the kubeconfig's current context."""
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            config = _merged_kubeconfig([Path(part) for part in path.split(os.pathsep) if part])
            if context:
                config["current-context"] = context
            cluster = await _load_kubeconfig(config, inline_only=False)
        else:
            cluster = _in_cluster()
        return cls(_Session(cluster), qps=qps, burst=burst)

    @classmethod
    async def from_kubeconfig(cls, config: Any, *, qps: float = 50, burst: int = 300) -> KubeClient:
        """Connect with the current context of a kubeconfig's parsed contents (a Secret's).

        Certificates, keys and tokens must be inline; paths to local files, auth-provider
        plugins and ``as`` raise ``KubeConfigError``. An ``exec`` plugin runs now (and again
        when its credential expires), and ``insecure-skip-tls-verify`` is honoured: refusing
        them is the caller's decision.
        """
        cluster = await _load_kubeconfig(config, inline_only=True)
        return cls(_Session(cluster), qps=qps, burst=burst)

    def impersonating(self, user: str) -> KubeClient:
        """A view acting as ``user`` (``Impersonate-User``) in every request, watches too.

        It shares this client's connections and rate limit; closing it does nothing.
        """
        view = copy.copy(self)
        view._identity_headers = {**self._identity_headers, "Impersonate-User": user}
        view._owns_session = False
        return view

    def with_rate_limit(self, qps: float, burst: int) -> KubeClient:
        """A view with a rate limit of its own (events, as client-go's recorder has one), so
        that what it sends does not eat into the reconcilers' budget. Closing it does nothing.
        """
        view = copy.copy(self)
        view._limit = _TokenBucket(qps, burst)
        view._owns_session = False
        return view

    @property
    def host(self) -> str:
        return self._session.cluster.server

    @property
    def namespace(self) -> str | None:
        """The default namespace: the kubeconfig context's, or the pod's in a cluster."""
        return self._session.cluster.namespace

    async def close(self) -> None:
        """Close the connections; a view from ``impersonating()`` leaves them to its origin."""
        if self._owns_session:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """Send one request and return the decoded JSON body; raise ApiError on error.

        A 429 or 5xx answer with ``Retry-After`` (how a server with flow control sheds load)
        is sent again after that many seconds, up to ``MAX_RETRY_AFTER`` times, as client-go
        does."""
        for attempt in range(MAX_RETRY_AFTER + 1):
            status, response_headers, data = await self._exchange(
                method, path, query, body, content_type, headers, timeout
            )
            wait = _retry_after(status, response_headers)
            if wait is None or attempt == MAX_RETRY_AFTER:
                break
            await asyncio.sleep(wait)
        if not 200 <= status <= 299:
            raise _error_for(status, data)
        return json.loads(data) if data else {}

    async def get_text(self, path: str, *, query: dict[str, str] | None = None) -> str:
        """A GET whose answer is text, not JSON (``pods/<name>/log``); ApiError on error."""
        status, _, data = await self._exchange(
            "GET", path, query, None, "application/json", None, REQUEST_TIMEOUT_SECONDS
        )
        if not 200 <= status <= 299:
            raise _error_for(status, data)
        return data.decode(errors="replace")

    async def has_flow_control(self) -> bool:
        """Whether the API server runs API Priority and Fairness, seen in the headers of its
        answer to ``/livez/ping`` (as fluxcd/pkg's runtime client checks)."""
        _, headers, _ = await self._exchange(
            "GET", "/livez/ping", None, None, "text/plain", None, REQUEST_TIMEOUT_SECONDS
        )
        return FLOW_SCHEMA_HEADER in headers

    @property
    def rate_limit(self) -> tuple[float, int]:
        """The client-side limit, QPS and burst; a QPS of zero or less: none (flow control)."""
        return self._limit.limits

    def drop_rate_limit(self) -> None:
        """Send without a client-side limit (this client and every view sharing its limit):
        what Flux does towards a server with flow control, whose own limits and 429s pace
        the client."""
        self._limit.disable()

    async def _exchange(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        headers: dict[str, str] | None,
        timeout: float,
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request read to its end within ``timeout`` seconds, sent once more with a new
        credential when the server refused one that can be renewed (401)."""
        for renewed in (False, True):
            request, credential = await self._request(
                method, path, query, body, content_type, headers, httpx.Timeout(timeout)
            )
            with _transport_errors(method, path):
                try:
                    async with asyncio.timeout(timeout):
                        response = await self._session.http.send(request)
                except TimeoutError:
                    raise httpx.TimeoutException(f"no answer within {timeout:g}s") from None
            if response.status_code != 401 or renewed:
                break
            if not self._session.cluster.auth.refused(credential):
                break
        return response.status_code, response.headers, response.content

    async def _request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        headers: dict[str, str] | None,
        timeout: httpx.Timeout,
    ) -> tuple[httpx.Request, _Credential]:
        """The request to send (after waiting for the rate limit), and the credential in it."""
        await self._limit.take()
        credential = await self._session.credential()
        all_headers = {"Accept": "application/json", "Content-Type": content_type}
        all_headers.update(headers or {})
        all_headers.update(self._identity_headers)
        if credential.authorization:
            all_headers["Authorization"] = credential.authorization
        # JSON, and apply patches as JSON (JSON is YAML), as kubernetes-asyncio sent them.
        content = None if body is None or method in ("GET", "HEAD") else json.dumps(body)
        extensions: dict[str, Any] = {}
        if self._session.cluster.tls_server_name:
            extensions["sni_hostname"] = self._session.cluster.tls_server_name
        request = self._session.http.build_request(
            method,
            self.host + path,
            params=query,
            headers=all_headers,
            content=content,
            timeout=timeout,
            extensions=extensions,
        )
        return request, credential

    # Typed helpers over request().

    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", resource_path(info, namespace, name))

    async def get_or_none(
        self, info: ResourceInfo, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self.get(info, namespace, name)
        except NotFound:
            return None

    async def list(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> dict[str, Any]:
        """A full list (paginated underneath); items and metadata.resourceVersion."""
        items: list[dict[str, Any]] = []
        query: dict[str, str] = {"limit": "500"}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", resource_path(info, namespace), query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                page["items"] = items
                return page
            query["continue"] = token

    async def create(
        self, info: ResourceInfo, obj: dict[str, Any], *, field_manager: str | None = None
    ) -> dict[str, Any]:
        namespace = (obj.get("metadata") or {}).get("namespace")
        query = {"fieldManager": field_manager} if field_manager else None
        return await self.request("POST", resource_path(info, namespace), query=query, body=obj)

    async def replace(
        self, info: ResourceInfo, obj: dict[str, Any], *, field_manager: str | None = None
    ) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        query = {"fieldManager": field_manager} if field_manager else None
        path = resource_path(info, meta.get("namespace"), meta["name"])
        return await self.request("PUT", path, query=query, body=obj)

    async def patch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = MERGE_PATCH,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        path = resource_path(info, namespace, name)
        if subresource:
            path += f"/{subresource}"
        query: dict[str, str] = {}
        if field_manager:
            query["fieldManager"] = field_manager
        if force:
            query["force"] = "true"
        return await self.request("PATCH", path, query=query, body=patch, content_type=content_type)

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
    ) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        with contextlib.suppress(NotFound):
            await self.request("DELETE", resource_path(info, namespace, name), body=body)

    async def watch(
        self,
        info: ResourceInfo,
        resource_version: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        inactivity_seconds: float = 360.0,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events from ``resource_version``, with bookmarks.

        Ends when the server closes the stream (normal after ``timeout_seconds``); raises
        ``Gone`` when the resourceVersion is too old, and ``TimeoutError`` when nothing at
        all arrives for ``inactivity_seconds`` (a half-dead connection).
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        path = resource_path(info, namespace)
        # Silence is timed below, as TimeoutError; httpx's own read timeout stays out of it.
        timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, read=None)
        for renewed in (False, True):
            request, credential = await self._request(
                "GET", path, query, None, "application/json", None, timeout
            )
            with _transport_errors("WATCH", path):
                # Not wait_for: on 3.11 it can swallow a cancel racing a finished read.
                async with asyncio.timeout(inactivity_seconds):
                    response = await self._session.http.send(request, stream=True)
            if response.status_code != 401 or renewed:
                break
            await response.aclose()
            if not self._session.cluster.auth.refused(credential):
                break
        try:
            if response.status_code != 200:
                with _transport_errors("WATCH", path):
                    data = await response.aread()
                raise _error_for(response.status_code, data)
            chunks = response.aiter_bytes()
            buffer = b""
            while True:
                # Split on b"\n" only: JSON escapes it, not other line breaks (U+0085).
                newline = buffer.find(b"\n")
                if newline < 0:
                    if len(buffer) > MAX_WATCH_LINE_BYTES:
                        raise TransportError(
                            f"WATCH {path}: an event of over {MAX_WATCH_LINE_BYTES} bytes"
                        )
                    async with asyncio.timeout(inactivity_seconds):
                        with _transport_errors("WATCH", path):
                            chunk = await anext(chunks, b"")
                    if not chunk:
                        if buffer.strip():
                            raise TransportError(f"WATCH {path}: the stream ended mid-event")
                        return
                    buffer += chunk
                    continue
                line, buffer = buffer[:newline], buffer[newline + 1 :]
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _error_for(int(obj.get("code") or 500), json.dumps(obj))
                yield WatchEvent(type=str(event.get("type")), object=obj)
        finally:
            await response.aclose()
