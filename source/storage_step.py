"""The artifact steps every source kind shares: the storage step each runs first, storing a
new artifact and recording it in status, and garbage collection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from controllers.api import Artifact
from controllers.reconcile import ReconcileError, Result, RunContext
from source.api_v1 import GitRepository
from source.conditions import (
    ARCHIVE_FAILED,
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    NEW_ARTIFACT,
    NO_ARTIFACT,
    STORAGE_OPERATION_FAILED,
    SUCCEEDED,
    Source,
)
from source.storage import ArtifactStorage, StorageError

__all__ = [
    "collect_garbage",
    "keep_artifact",
    "reconcile_storage",
    "record_artifact",
    "store_artifact",
]


async def reconcile_storage(storage: ArtifactStorage, ctx: RunContext[Any], obj: Source) -> Result:
    """Collect old artifacts; forget the recorded one if its file is gone; point its URL at the
    storage address in use now (it changes when ``--storage-adv-addr`` does)."""
    artifact = obj.status.artifact
    await collect_garbage(storage, ctx, obj, artifact)
    if artifact is None:
        return Result()
    if not await asyncio.to_thread(storage.has, artifact):
        obj.status.artifact = None
        _set_url(obj, None)
        ctx.clear(ARTIFACT_IN_STORAGE)
        ctx.mark(ARTIFACT_OUTDATED, "True", NO_ARTIFACT, "artifact missing from storage")
        return Result()
    url = storage.url_for(artifact.path)
    if artifact.url != url:
        obj.status.artifact = artifact.model_copy(update={"url": url})
        _set_url(obj, url)
    return Result()


async def store_artifact(
    ctx: RunContext[Any], write: Callable[[], Artifact], *, verb: str = "archive"
) -> Artifact:
    """The artifact ``write`` puts in storage (run off the event loop); a ``StorageError``
    marks ``StorageOperationFailed`` and fails the run, success clears it."""
    try:
        artifact = await asyncio.to_thread(write)
    except StorageError as err:
        message = f"unable to {verb} artifact to storage: {err}"
        ctx.mark(STORAGE_OPERATION_FAILED, "True", ARCHIVE_FAILED, message)
        raise ReconcileError(message, reason=ARCHIVE_FAILED) from err
    ctx.clear(STORAGE_OPERATION_FAILED)
    return artifact


def record_artifact(
    ctx: RunContext[Any], obj: Source, artifact: Artifact, *, stored: str, event: str
) -> Result:
    """The end of a run that stored a new ``artifact``: it goes in status, and a
    ``NewArtifact`` event with ``event`` when its digest is new; then as
    :func:`keep_artifact`."""
    previous = obj.status.artifact
    obj.status.artifact = artifact
    if previous is None or previous.digest != artifact.digest:
        ctx.notify(NEW_ARTIFACT, event, revision=artifact.revision)
    return keep_artifact(ctx, obj, stored=stored)


def keep_artifact(ctx: RunContext[Any], obj: Source, *, stored: str) -> Result:
    """The end of every successful run: the artifact in status holds the source
    (``ArtifactInStorage=True``, no ``ArtifactOutdated``; its URL mirrored in ``status.url``
    by the kinds that have one); ``stored`` is the Ready message."""
    artifact = obj.status.artifact
    assert artifact is not None
    _set_url(obj, artifact.url)
    ctx.mark(ARTIFACT_IN_STORAGE, "True", SUCCEEDED, stored)
    ctx.clear(ARTIFACT_OUTDATED)
    return Result(message=stored)


async def collect_garbage(
    storage: ArtifactStorage, ctx: RunContext[Any], obj: Source, keep: Artifact | None
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


def _set_url(obj: Source, url: str | None) -> None:
    # OCIRepository and Bucket mirror the artifact URL in status.url; GitRepository v1 has none.
    if not isinstance(obj, GitRepository):
        obj.status.url = url
