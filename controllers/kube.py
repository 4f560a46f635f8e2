"""A small asynchronous Kubernetes API client over kubernetes-asyncio's transport.

kubernetes-asyncio handles kubeconfig, in-cluster config and TLS; this module adds generic
resource paths, client-side rate limiting (``--kube-api-qps``/``--kube-api-burst``), a typed
error hierarchy, a line-by-line watch stream with an inactivity timeout, impersonating views
of a client, and clients for self-contained kubeconfigs held in memory (remote clusters).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.exec_provider import ExecProvider
from kubernetes_asyncio.config.kube_config import ConfigNode

from controllers.api import ResourceInfo

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


def current_cluster_and_user(config: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The cluster and user sections of a kubeconfig's current context (user may be empty)."""
    if not isinstance(config, Mapping):
        raise KubeConfigError("kubeconfig is not a mapping")
    current = config.get("current-context")
    if not current:
        raise KubeConfigError("kubeconfig has no current-context")
    context = _named_entry(config, "contexts", str(current))
    cluster = _named_entry(config, "clusters", str(context.get("cluster") or ""))
    user = _named_entry(config, "users", str(context["user"])) if context.get("user") else {}
    return cluster, user


def _decoded(section: Mapping[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(str(section[key]), validate=True)
    except binascii.Error:
        raise KubeConfigError(f"kubeconfig {key} is not valid base64") from None


async def _run_exec_plugin(spec: Any) -> dict[str, Any]:
    """The ``status`` of an ExecCredential from the kubeconfig's ``exec`` plugin."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            status = await ExecProvider(ConfigNode("exec", spec)).run()
    except (ConfigException, OSError) as err:
        raise KubeConfigError(f"exec plugin failed: {str(err)[:500]}") from None
    except TimeoutError:
        raise KubeConfigError("exec plugin did not answer in time") from None
    if not isinstance(status, dict):
        raise KubeConfigError("exec plugin returned no status")
    return status


async def _kubeconfig_configuration(config: Any, files: Path) -> k8s_client.Configuration:
    """A client configuration for a self-contained kubeconfig; PEM files go under ``files``."""
    cluster, user = current_cluster_and_user(config)
    local = sorted((_CLUSTER_FILE_KEYS & cluster.keys()) | (_USER_FILE_KEYS & user.keys()))
    if local:
        raise KubeConfigError(
            f"kubeconfig refers to local files ({', '.join(local)}); only inline data is supported"
        )
    if "auth-provider" in user:
        raise KubeConfigError("kubeconfig auth-provider plugins are not supported")
    if _IMPERSONATION_KEYS & user.keys():
        raise KubeConfigError("kubeconfig impersonation (as) is not supported")
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeConfigError("kubeconfig cluster has no server")
    configuration = k8s_client.Configuration()
    configuration.host = server
    configuration.verify_ssl = not cluster.get("insecure-skip-tls-verify", False)
    configuration.tls_server_name = cluster.get("tls-server-name") or None
    configuration.proxy = cluster.get("proxy-url") or None
    if "certificate-authority-data" in cluster:
        (files / "ca.crt").write_bytes(_decoded(cluster, "certificate-authority-data"))
        configuration.ssl_ca_cert = str(files / "ca.crt")
    cert = _decoded(user, "client-certificate-data") if "client-certificate-data" in user else b""
    key = _decoded(user, "client-key-data") if "client-key-data" in user else b""
    token = str(user.get("token") or "")
    if "exec" in user:
        status = await _run_exec_plugin(user["exec"])
        token = str(status.get("token") or "")
        if status.get("clientCertificateData"):
            cert = str(status["clientCertificateData"]).encode()
            key = str(status.get("clientKeyData") or "").encode()
    if bool(cert) != bool(key):
        raise KubeConfigError("kubeconfig has a client certificate without its key, or a key alone")
    if cert:
        (files / "client.crt").write_bytes(cert)
        (files / "client.key").write_bytes(key)
        configuration.cert_file, configuration.key_file = (
            str(files / "client.crt"),
            str(files / "client.key"),
        )
    if token:
        configuration.api_key["BearerToken"] = f"Bearer {token}"
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        configuration.api_key["BearerToken"] = f"Basic {basic}"
    return configuration


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
    """aiohttp's errors as ``TransportError`` (its timeouts are aiohttp errors too)."""
    try:
        yield
    except aiohttp.ClientError as err:
        raise TransportError(f"{method} {path}: {type(err).__name__}: {err}") from err


def _client_timeout(timeout: float | tuple[float, float]) -> aiohttp.ClientTimeout:
    """A total timeout, or (connect, read) for streams that may stay open for long."""
    if isinstance(timeout, tuple):
        connect, read = timeout
        return aiohttp.ClientTimeout(connect=connect, sock_connect=connect, sock_read=read)
    return aiohttp.ClientTimeout(total=timeout)


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


class KubeClient:
    """Typed access to the API server, shared by every task of one process."""

    def __init__(self, api: k8s_client.ApiClient, *, qps: float = 50, burst: int = 300) -> None:
        self._api = api
        self._limit = _TokenBucket(qps, burst)
        # Sent with every request; views from impersonating() share _api and _limit.
        self._identity_headers: dict[str, str] = {}
        self._owns_api = True

    @classmethod
    async def connect(
        cls, kubeconfig: str | None = None, *, qps: float = 50, burst: int = 300
    ) -> KubeClient:
        """Connect with ``kubeconfig``, else $KUBECONFIG, else the in-cluster service account."""
        configuration = k8s_client.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            await k8s_config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        return cls(k8s_client.ApiClient(configuration), qps=qps, burst=burst)

    @classmethod
    async def from_kubeconfig(cls, config: Any, *, qps: float = 50, burst: int = 300) -> KubeClient:
        """Connect with the current context of a kubeconfig's parsed contents (a Secret's).

        Certificates, keys and tokens must be inline; paths to local files, auth-provider
        plugins and ``as`` raise ``KubeConfigError``. An ``exec`` plugin runs once, now, and
        ``insecure-skip-tls-verify`` is honoured: refusing them is the caller's decision.
        """
        with tempfile.TemporaryDirectory(prefix="weir-kubeconfig-") as files:
            configuration = await _kubeconfig_configuration(config, Path(files))
            # The TLS context reads the PEM files once, as the client is made; then they go.
            return cls(k8s_client.ApiClient(configuration), qps=qps, burst=burst)

    def impersonating(self, user: str) -> KubeClient:
        """A view acting as ``user`` (``Impersonate-User``) in every request, watches too.

        It shares this client's connections and rate limit; closing it does nothing.
        """
        view = copy.copy(self)
        view._identity_headers = {**self._identity_headers, "Impersonate-User": user}
        view._owns_api = False
        return view

    def with_rate_limit(self, qps: float, burst: int) -> KubeClient:
        """A view with a rate limit of its own (events, as client-go's recorder has one), so
        that what it sends does not eat into the reconcilers' budget. Closing it does nothing.
        """
        view = copy.copy(self)
        view._limit = _TokenBucket(qps, burst)
        view._owns_api = False
        return view

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def close(self) -> None:
        """Close the connections; a view from ``impersonating()`` leaves them to its origin."""
        if self._owns_api:
            await self._api.close()

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
            with _transport_errors(method, path):
                response = await self._send(
                    method, path, query, body, content_type, headers, timeout
                )
                async with response:
                    data = await response.read()
            wait = _retry_after(response.status, response.headers)
            if wait is None or attempt == MAX_RETRY_AFTER:
                break
            await asyncio.sleep(wait)
        if not 200 <= response.status <= 299:
            raise _error_for(response.status, data)
        return json.loads(data) if data else {}

    async def has_flow_control(self) -> bool:
        """Whether the API server runs API Priority and Fairness, seen in the headers of its
        answer to ``/livez/ping`` (as fluxcd/pkg's runtime client checks)."""
        with _transport_errors("GET", "/livez/ping"):
            response = await self._send(
                "GET", "/livez/ping", None, None, "text/plain", None, REQUEST_TIMEOUT_SECONDS
            )
            async with response:
                await response.read()
        return FLOW_SCHEMA_HEADER in response.headers

    def drop_rate_limit(self) -> None:
        """Send without a client-side limit (this client and every view sharing its limit):
        what Flux does towards a server with flow control, whose own limits and 429s pace
        the client."""
        self._limit.disable()

    async def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        headers: dict[str, str] | None,
        timeout: float | tuple[float, float],
    ) -> Any:
        await self._limit.take()
        all_headers = {"Accept": "application/json", "Content-Type": content_type}
        all_headers.update(headers or {})
        all_headers.update(self._identity_headers)
        query_list: list[tuple[str, str]] = list((query or {}).items())
        await self._api.update_params_for_auth(all_headers, query_list, ["BearerToken"])
        # kubernetes-asyncio JSON-encodes JSON and apply-patch bodies itself (JSON is YAML), so
        # an apply patch is passed as a dict; encoding it here as well sent a JSON string.
        return await self._api.rest_client.request(
            method,
            self.host + path,
            query_params=dict(query_list),
            headers=all_headers,
            body=body,
            _preload_content=False,
            _request_timeout=_client_timeout(timeout),
        )

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
        with _transport_errors("WATCH", path):
            response = await self._send(
                "GET",
                path,
                query,
                None,
                "application/json",
                None,
                (REQUEST_TIMEOUT_SECONDS, inactivity_seconds),
            )
        async with response:
            if response.status != 200:
                with _transport_errors("WATCH", path):
                    data = await response.read()
                raise _error_for(response.status, data)
            while True:
                # Not wait_for: on 3.11 it can swallow a cancel racing a finished read.
                async with asyncio.timeout(inactivity_seconds):
                    with _transport_errors("WATCH", path):
                        line = await response.content.readline()
                if not line:
                    return
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _error_for(int(obj.get("code") or 500), json.dumps(obj))
                yield WatchEvent(type=str(event.get("type")), object=obj)
