"""A small asynchronous Kubernetes API client over kubernetes-asyncio's transport.

kubernetes-asyncio handles kubeconfig, in-cluster config and TLS; this module adds generic
resource paths, client-side rate limiting (``--kube-api-qps``/``--kube-api-burst``), a typed
error hierarchy and a line-by-line watch stream with an inactivity timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from controllers.api import ResourceInfo

__all__ = [
    "ApiError",
    "Conflict",
    "Gone",
    "KubeClient",
    "NotFound",
    "WatchEvent",
]

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

# Bounded so that a stuck API server cannot hold a worker forever.
REQUEST_TIMEOUT_SECONDS = 30.0


class ApiError(Exception):
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

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def close(self) -> None:
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
        """Send one request and return the decoded JSON body; raise ApiError on error."""
        response = await self._send(method, path, query, body, content_type, headers, timeout)
        async with response:
            data = await response.read()
            if not 200 <= response.status <= 299:
                raise _error_for(response.status, data)
        return json.loads(data) if data else {}

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
        response = await self._send(
            "GET",
            resource_path(info, namespace),
            query,
            None,
            "application/json",
            None,
            (REQUEST_TIMEOUT_SECONDS, inactivity_seconds),
        )
        async with response:
            if response.status != 200:
                raise _error_for(response.status, await response.read())
            while True:
                # Not wait_for: on 3.11 it can swallow a cancel racing a finished read.
                async with asyncio.timeout(inactivity_seconds):
                    line = await response.content.readline()
                if not line:
                    return
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _error_for(int(obj.get("code") or 500), json.dumps(obj))
                yield WatchEvent(type=str(event.get("type")), object=obj)
