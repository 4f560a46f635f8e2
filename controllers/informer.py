"""List+watch of one kind, keeping a cache and telling a handler which keys changed.

The informer never misses a change: it resumes each watch from the last resourceVersion it
saw (objects and bookmarks), reconnects with backoff after any failure, and when the server
answers 410 Gone (the resourceVersion was compacted away) it relists and compares the list
with its cache, reporting every object that was added, changed or deleted in between.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import structlog

from controllers.api import ResourceInfo, object_key
from controllers.kube import ApiError, Gone, KubeClient, TransportError

__all__ = ["Handler", "Informer"]

Handler = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]
"""Called with (key, old object or None, new object or None) for each change."""

log = structlog.get_logger()

RECONNECT_MIN_SECONDS = 0.8
RECONNECT_MAX_SECONDS = 30.0
# client-go's range: long enough to be cheap, short enough to rebalance across API servers.
WATCH_MIN_SECONDS = 300
# A live stream carries at least a bookmark or the server's close before this.
INACTIVITY_MARGIN_SECONDS = 60.0


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Informer:
    """Watches ``info`` (optionally in one namespace / with a label selector)."""

    def __init__(
        self,
        client: KubeClient,
        info: ResourceInfo,
        handler: Handler,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        watch_seconds: int = WATCH_MIN_SECONDS,
        inactivity_margin: float = INACTIVITY_MARGIN_SECONDS,
    ) -> None:
        """``watch_seconds``: each watch asks the server to end it after between this and twice
        this; ``inactivity_margin``: a stream silent for that long past its end is dead."""
        self._client = client
        self._watch_seconds = watch_seconds
        self._inactivity_margin = inactivity_margin
        self.info = info
        self._handler = handler
        self._namespace = namespace
        self._label_selector = label_selector
        self._cache: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.relists = 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The newest version of ``key`` the informer has seen, or None."""
        return self._cache.get(key)

    def keys(self) -> list[str]:
        return list(self._cache)

    def objects(self) -> list[dict[str, Any]]:
        """Every object the informer holds now."""
        return list(self._cache.values())

    async def run(self) -> None:
        """List and watch until cancelled."""
        resource_version: str | None = None
        delay = RECONNECT_MIN_SECONDS
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._relist()
                timeout = random.randint(self._watch_seconds, 2 * self._watch_seconds)  # noqa: S311
                stream = self._client.watch(
                    self.info,
                    resource_version,
                    namespace=self._namespace,
                    label_selector=self._label_selector,
                    timeout_seconds=timeout,
                    inactivity_seconds=timeout + self._inactivity_margin,
                )
                async for event in stream:
                    if event.type != "BOOKMARK":
                        self._apply(event.type, event.object)
                    resource_version = _resource_version(event.object) or resource_version
                    delay = RECONNECT_MIN_SECONDS
            except Gone:
                log.info("watch expired, relisting", kind=self.info.kind)
                resource_version = None
            except (ApiError, TransportError, OSError, TimeoutError, ValueError) as err:
                log.warning(
                    "watch failed", kind=self.info.kind, error=str(err), retry_in=round(delay, 2)
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _relist(self) -> str:
        page = await self._client.list(
            self.info, self._namespace, label_selector=self._label_selector
        )
        self.relists += 1
        fresh = {object_key(item): item for item in page["items"]}
        for key, obj in fresh.items():
            old = self._cache.get(key)
            if old is None or _resource_version(old) != _resource_version(obj):
                self._cache[key] = obj
                self._handler(key, old, obj)
        for key in [k for k in self._cache if k not in fresh]:
            self._handler(key, self._cache.pop(key), None)
        self.synced.set()
        return str(page["metadata"]["resourceVersion"])

    def _apply(self, event_type: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        old = self._cache.get(key)
        if event_type == "DELETED":
            self._cache.pop(key, None)
            self._handler(key, old, None)
        else:
            self._cache[key] = obj
            self._handler(key, old, obj)
