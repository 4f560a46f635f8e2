"""Running a Manager inside the test's event loop, scoped to the test's namespace."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper
from controllers.envtest import ControlPlane, free_port
from controllers.kube import APPLY_PATCH, KubeClient, resource_path
from controllers.manager import Manager, Options
from controllers.reconcile import Reconciler


def options(control_plane: ControlPlane, namespace: str, **overrides: Any) -> Options:
    base = Options(
        name="probe-controller",
        identity="in-process",
        kubeconfig=str(control_plane.admin_kubeconfig),
        health_addr=f"127.0.0.1:{free_port()}",
        metrics_addr=f"127.0.0.1:{free_port()}",
        watch_all_namespaces=False,
        watch_namespace=namespace,
        graceful_shutdown_timeout=10.0,
    )
    return dataclasses.replace(base, **overrides)


@asynccontextmanager
async def running(opts: Options, reconcilers: Sequence[Reconciler[Any]]) -> AsyncIterator[Manager]:
    """A started manager whose informers have synced; stopped (gracefully) on exit."""
    manager = Manager(opts, reconcilers)
    task = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(30):
            done, _ = await asyncio.wait(
                {task, asyncio.ensure_future(manager.started.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if task in done:
                task.result()
            await asyncio.gather(*(i.synced.wait() for i in manager.informers))
        yield manager
    finally:
        manager.stop.set()
        await task


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the object's current generation."""
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )


async def wait_for_deletion(
    kube: KubeClient, info: ResourceInfo, namespace: str, name: str, timeout: float = 30.0
) -> None:
    """Return once the object no longer exists, watching for its DELETED event."""
    async with asyncio.timeout(timeout):
        while True:
            page = await kube.list(info, namespace)
            if all(item["metadata"]["name"] != name for item in page["items"]):
                return
            version = page["metadata"]["resourceVersion"]
            async for event in kube.watch(info, version, namespace=namespace, timeout_seconds=60):
                if event.type == "DELETED" and event.object["metadata"]["name"] == name:
                    return


async def wait_for_object(
    kube: KubeClient,
    info: ResourceInfo,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The object once ``predicate`` holds for it, watching (not polling) for changes."""
    async with asyncio.timeout(timeout):
        while True:
            page = await kube.list(info, namespace)
            items: list[dict[str, Any]] = page["items"]
            for item in items:
                if item["metadata"]["name"] == name and predicate(item):
                    return item
            version = page["metadata"]["resourceVersion"]
            async for event in kube.watch(info, version, namespace=namespace, timeout_seconds=60):
                obj = event.object
                if event.type != "BOOKMARK" and obj["metadata"]["name"] == name and predicate(obj):
                    return obj


async def conditions_written(
    kube: KubeClient,
    info: ResourceInfo,
    namespace: str,
    name: str,
    since: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
) -> list[dict[str, dict[str, Any]]]:
    """The conditions (by type) of every version of the object written after resource version
    ``since``, up to the first one for which ``until`` holds: what a run wrote on its way."""
    written: list[dict[str, dict[str, Any]]] = []
    async with asyncio.timeout(timeout):
        async for event in kube.watch(info, since, namespace=namespace, timeout_seconds=60):
            obj = event.object
            if event.type == "BOOKMARK" or obj["metadata"]["name"] != name:
                continue
            conditions = (obj.get("status") or {}).get("conditions") or []
            written.append({c["type"]: c for c in conditions})
            if until(obj):
                return written
    raise TimeoutError(f"the watch on {info.kind} '{namespace}/{name}' ended early")


def assert_new_revision_reported(written: list[dict[str, Any]], new: str) -> None:
    """The status writes of a run that built a new artifact (``conditions_written``): while it
    built, ``Reconciling`` said "building artifact: <new>", ``ArtifactOutdated=True
    NewRevision`` said ``new`` and ``Ready`` was Unknown; at the end neither is left."""
    progress = [c for c in written if c.get("Reconciling", {}).get("reason") == "Progressing"]
    assert progress, "no status was written while the artifact was built"
    assert progress[0]["Reconciling"]["message"] == f"building artifact: {new}"
    outdated = progress[0]["ArtifactOutdated"]
    assert (outdated["status"], outdated["reason"], outdated["message"]) == (
        "True",
        "NewRevision",
        new,
    )
    assert progress[0]["Ready"]["status"] == "Unknown"
    assert "ArtifactOutdated" not in written[-1]
    assert "Reconciling" not in written[-1]


async def dry_run_apply(
    kube: KubeClient, objects: Sequence[dict[str, Any]], field_manager: str
) -> None:
    """Server-side apply each object with ``dryRun=All``: the API server validates and
    admits it (an error raises), and nothing is written."""
    mapper = RestMapper(kube)
    for obj in objects:
        info = await mapper.resource_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        answer = await kube.request(
            "PATCH",
            resource_path(info, meta.get("namespace"), meta["name"]),
            query={"fieldManager": field_manager, "force": "true", "dryRun": "All"},
            body=obj,
            content_type=APPLY_PATCH,
        )
        assert (answer["kind"], answer["metadata"]["name"]) == (obj["kind"], meta["name"])
