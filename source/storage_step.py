"""The storage step every source kind runs first, and garbage collection after a new artifact."""

from __future__ import annotations

import asyncio
from typing import Any

from controllers.api import Artifact
from controllers.reconcile import Result, RunContext
from source.storage import ArtifactStorage, StorageError

__all__ = ["ARTIFACT_IN_STORAGE", "ARTIFACT_OUTDATED", "collect_garbage", "reconcile_storage"]

ARTIFACT_IN_STORAGE = "ArtifactInStorage"
ARTIFACT_OUTDATED = "ArtifactOutdated"


async def reconcile_storage(storage: ArtifactStorage, ctx: RunContext, obj: Any) -> Result:
    """Collect old artifacts; forget the recorded one if its file is gone; point its URL at the
    storage address in use now (it changes when ``--storage-adv-addr`` does)."""
    artifact: Artifact | None = obj.status.artifact
    await collect_garbage(storage, ctx, obj, artifact)
    if artifact is None:
        return Result()
    if not await asyncio.to_thread(storage.has, artifact):
        obj.status.artifact = None
        _set_url(obj, None)
        ctx.clear(ARTIFACT_IN_STORAGE)
        ctx.mark(ARTIFACT_OUTDATED, "True", "NoArtifact", "artifact missing from storage")
        return Result()
    url = storage.url_for(artifact.path)
    if artifact.url != url:
        obj.status.artifact = artifact.model_copy(update={"url": url})
        _set_url(obj, url)
    return Result()


async def collect_garbage(
    storage: ArtifactStorage, ctx: RunContext, obj: Any, keep: Artifact | None
) -> None:
    """Remove the object's old artifacts; a failure is logged, never fatal."""
    try:
        removed = await asyncio.to_thread(
            storage.garbage_collect,
            obj.info.kind,
            obj.metadata.namespace or "",
            obj.metadata.name,
            keep,
        )
    except StorageError as err:
        ctx.log.warning("garbage collection failed", error=str(err))
        return
    if removed:
        ctx.log.info("garbage collected artifacts", files=len(removed))


def _set_url(obj: Any, url: str | None) -> None:
    # OCIRepository and Bucket mirror the artifact URL in status.url; GitRepository v1 has none.
    if "url" in type(obj.status).model_fields:
        obj.status.url = url
