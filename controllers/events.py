"""Kubernetes Events for reconcile outcomes, and forwarding them to the notification controller.

The event reason is the condition reason. With ``--events-addr`` set, each event is also
POSTed as Flux's event JSON; a 429 there means "duplicate" and is not retried.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import structlog

from controllers.api import CustomResource, micro_time_now, time_now
from controllers.kinds import EVENT
from controllers.kube import ApiError, KubeClient

__all__ = ["EventForwarder", "EventRecorder", "EventType", "flux_event"]

FORWARD_TIMEOUT_SECONDS = 5.0
FORWARD_ATTEMPTS = 3
MAX_MESSAGE = 39_000

log = structlog.get_logger()

EventType = Literal["Normal", "Warning"]


def _involved(obj: CustomResource) -> dict[str, Any]:
    meta = obj.metadata
    return {
        "apiVersion": obj.info.api_version,
        "kind": obj.info.kind,
        "name": meta.name,
        "namespace": meta.namespace,
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
    }


def flux_event(
    obj: CustomResource,
    type_: EventType,
    reason: str,
    message: str,
    *,
    controller: str,
    instance: str,
    revision: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON body Flux controllers POST to the notification controller; ``metadata`` keys
    are prefixed with the object's API group, as Flux's controllers write them."""
    metadata = _metadata(obj, revision, metadata)
    return {
        "involvedObject": _involved(obj),
        "severity": "error" if type_ == "Warning" else "info",
        "timestamp": time_now(),
        "message": message[:MAX_MESSAGE],
        "reason": reason,
        "metadata": metadata,
        "reportingController": controller,
        "reportingInstance": instance,
    }


def _metadata(
    obj: CustomResource, revision: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    group = obj.info.group
    metadata = {f"{group}/{key}": value for key, value in (extra or {}).items()}
    if revision:
        metadata[f"{group}/revision"] = revision
    return metadata


class EventForwarder:
    """POSTs events to ``address`` in the background, with a timeout and a few retries."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_SECONDS)
        self._pending: set[asyncio.Task[None]] = set()

    def send(self, event: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._post(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, event: dict[str, Any]) -> None:
        for attempt in range(FORWARD_ATTEMPTS):
            try:
                answer = await self._client.post(self.address, json=event)
                if answer.status_code == 429 or answer.is_success:
                    return
                error = f"HTTP {answer.status_code}"
            except httpx.HTTPError as err:
                error = f"{type(err).__name__}: {err}"
            if attempt + 1 < FORWARD_ATTEMPTS:
                await asyncio.sleep(0.5 * 2**attempt)
        log.warning("event not forwarded", address=self.address, error=error)

    async def close(self) -> None:
        """Wait for events still being sent (bounded by their timeouts), then close."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._client.aclose()


class EventRecorder:
    """Creates core/v1 Events for objects, and forwards them when a forwarder is set."""

    def __init__(
        self,
        client: KubeClient,
        *,
        controller: str,
        instance: str,
        forwarder: EventForwarder | None = None,
    ) -> None:
        self._client = client
        self.controller = controller
        self.instance = instance
        self.forwarder = forwarder

    async def record(
        self,
        obj: CustomResource,
        type_: EventType,
        reason: str,
        message: str,
        *,
        revision: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Record one event; failures are logged, never raised (events are best effort).
        ``revision`` and ``metadata`` become annotations (and the forwarded event's metadata),
        keyed under the object's API group."""
        now = micro_time_now()
        meta = obj.metadata
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.name}.{secrets.token_hex(8)}",
                "namespace": meta.namespace or "default",
            },
            "involvedObject": _involved(obj),
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "type": type_,
            "source": {"component": self.controller},
            "reportingComponent": self.controller,
            "reportingInstance": self.instance,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        annotations = _metadata(obj, revision, metadata)
        if annotations:
            event["metadata"]["annotations"] = annotations
        try:
            await self._client.create(EVENT, event)
        except ApiError as err:
            log.warning("event not recorded", reason=reason, error=str(err))
        if self.forwarder is not None:
            self.forwarder.send(
                flux_event(
                    obj,
                    type_,
                    reason,
                    message,
                    controller=self.controller,
                    instance=self.instance,
                    revision=revision,
                    metadata=metadata,
                )
            )
