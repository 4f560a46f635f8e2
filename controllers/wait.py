"""Waiting until a set of objects is in some state, by watching them.

``wait_until`` is the one way weir waits on objects in the cluster, whatever it waits for
(every object healthy, every object gone, one object replaced): it follows the objects with
one list+watch per kind and namespace, up to ``MAX_WATCHES`` of them so that a large set
cannot hold every connection of the client's pool; the kinds and namespaces beyond are listed
every ``RECHECK_SECONDS``. A kind the API server does not serve (yet) is looked up again at
the same pace, so that a CRD applied meanwhile is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controllers.api import ResourceInfo, object_key
from controllers.discovery import RestMapper, UnknownKind
from controllers.informer import Informer
from controllers.kube import ApiError, KubeClient, TransportError

__all__ = [
    "MAX_WATCHES",
    "NOT_OBSERVED",
    "RECHECK_SECONDS",
    "Observed",
    "WatchedObject",
    "wait_until",
]

# How often the state is judged again without a change (some states depend on time, such as
# a Pod that stayed unschedulable), and unknown kinds are looked up again.
RECHECK_SECONDS = 2.0
# Watches one wait holds at most; the other kinds and namespaces are listed instead.
MAX_WATCHES = 10


class WatchedObject(Protocol):
    """An object to follow: ``controllers.inventory.ObjectRef`` is one."""

    @property
    def api_version(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Observed:
    """What is known of one object: ``obj`` as last seen (None when it does not exist), or
    ``unknown_kind`` with why its kind could not be looked up (``obj`` is then None)."""

    obj: dict[str, Any] | None
    unknown_kind: str | None = None


Judge = Callable[[Sequence[Observed]], bool]
NOT_OBSERVED = "not observed yet"
"""The ``unknown_kind`` of an object whose kind and namespace were never listed in time."""


async def wait_until(
    client: KubeClient,
    mapper: RestMapper,
    targets: Sequence[WatchedObject],
    done: Judge,
    timeout: float,
) -> tuple[list[Observed], bool]:
    """Follow ``targets`` until ``done`` holds for what is observed of them (called once each
    has been observed, after each change and every ``RECHECK_SECONDS``), or ``timeout``
    seconds pass. Returns the last observations, in the order of ``targets``, and whether
    ``done`` held. Objects are observed with their ``apiVersion`` and ``kind`` set."""
    watcher = _Watcher(client, mapper)
    groups = dict.fromkeys(_group_of(target) for target in targets)
    tasks = [
        asyncio.create_task(watcher.follow(group, watch=i < MAX_WATCHES))
        for i, group in enumerate(groups)
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            watcher.changed.clear()
            seen = [watcher.observe(target) for target in targets]
            # Only once every object was seen, so that the verdict does not depend on which
            # watch answered first.
            complete = [s for s in seen if s is not None]
            if len(complete) == len(seen) and done(complete):
                return complete, True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return [s or Observed(None, NOT_OBSERVED) for s in seen], False
            for task in tasks:
                if task.done():
                    task.result()  # a follower that crashed: its error is ours
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(RECHECK_SECONDS, remaining)):
                    await watcher.changed.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_Group = tuple[str, str, str]  # apiVersion, kind, namespace


def _group_of(target: WatchedObject) -> _Group:
    return target.api_version, target.kind, target.namespace


class _Lister:
    """An informer's stand-in that lists instead of watching, every RECHECK_SECONDS."""

    def __init__(
        self, client: KubeClient, info: ResourceInfo, changed: asyncio.Event, namespace: str | None
    ) -> None:
        self._client = client
        self._changed = changed
        self._namespace = namespace
        self._cache: dict[str, dict[str, Any]] = {}
        self.info = info
        self.synced = asyncio.Event()

    def get(self, key: str) -> dict[str, Any] | None:
        return self._cache.get(key)

    async def run(self) -> None:
        while True:
            # A failed list is tried again; what it would have said stays unknown meanwhile.
            with contextlib.suppress(ApiError, TransportError, OSError, TimeoutError):
                page = await self._client.list(self.info, self._namespace)
                self._cache = {object_key(item): item for item in page["items"]}
                self.synced.set()
                self._changed.set()
            await asyncio.sleep(RECHECK_SECONDS)


class _Watcher:
    """The last seen state of every object of a set, per kind and namespace."""

    def __init__(self, client: KubeClient, mapper: RestMapper) -> None:
        self._client = client
        self._mapper = mapper
        self._sources: dict[_Group, Informer | _Lister] = {}
        self._unknown: dict[_Group, str] = {}
        self.changed = asyncio.Event()

    def observe(self, target: WatchedObject) -> Observed | None:
        """What is known of ``target``; None before it was seen at all."""
        group = _group_of(target)
        if group in self._unknown:
            return Observed(None, self._unknown[group])
        source = self._sources.get(group)
        if source is None or not source.synced.is_set():
            return None
        info = source.info
        key = {"name": target.name, "namespace": target.namespace if info.namespaced else None}
        obj = source.get(object_key({"metadata": key}))
        if obj is None:
            return Observed(None)
        # The items of a list carry no apiVersion and kind.
        return Observed({"apiVersion": info.api_version, "kind": info.kind, **obj})

    async def follow(self, group: _Group, *, watch: bool) -> None:
        """Watch (or list again and again) the objects of ``group`` once its kind is known;
        until cancelled."""
        api_version, kind, namespace = group
        info: ResourceInfo | None = None
        while info is None:
            try:
                info = await self._mapper.resource_for(api_version, kind)
            except (UnknownKind, ApiError) as err:
                self._unknown[group] = err.message if isinstance(err, ApiError) else str(err)
                self.changed.set()
                await asyncio.sleep(RECHECK_SECONDS)
        self._unknown.pop(group, None)
        scope = (namespace or None) if info.namespaced else None
        source: Informer | _Lister
        if watch:
            source = Informer(self._client, info, lambda *_: self.changed.set(), namespace=scope)
        else:
            source = _Lister(self._client, info, self.changed, scope)
        self._sources[group] = source
        await source.run()
