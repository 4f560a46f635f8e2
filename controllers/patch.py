"""Status and metadata patches against a snapshot, with optimistic locking.

Conditions are a list, and a JSON merge patch replaces lists whole; so every status patch
carries the snapshot's resourceVersion, and on a conflict the helper fetches the newest object,
lays only *its own* condition types onto the newest list, and tries again. Another
controller's conditions are never dropped.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Collection
from typing import Any

from controllers.api import ResourceInfo
from controllers.kube import Conflict, KubeClient

__all__ = ["StatusPatcher", "merge_patch", "patch_finalizers"]

CONFLICT_RETRIES = 8


async def _conflict_pause() -> None:
    # Jittered, like client-go's RetryOnConflict: two writers in lockstep otherwise keep
    # colliding on every retry.
    await asyncio.sleep(random.uniform(0.01, 0.05))  # noqa: S311 - not crypto


def merge_patch(before: Any, after: Any) -> Any:
    """The RFC 7386 merge patch that turns ``before`` into ``after`` (lists replaced whole)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return copy.deepcopy(after)
    patch: dict[str, Any] = {}
    for key in before.keys() - after.keys():
        patch[key] = None
    for key, value in after.items():
        if key not in before:
            patch[key] = copy.deepcopy(value)
        elif before[key] != value:
            patch[key] = merge_patch(before[key], value)
    return patch


def _merge_conditions(
    latest: list[dict[str, Any]], desired: list[dict[str, Any]], owned: Collection[str]
) -> list[dict[str, Any]]:
    """``latest`` with every owned condition type replaced by, or removed as in, ``desired``."""
    wanted = {c["type"]: c for c in desired if c["type"] in owned}
    merged = [
        wanted.pop(c["type"], c) for c in latest if c["type"] not in owned or c["type"] in wanted
    ]
    return merged + [c for c in desired if c["type"] in wanted]


class StatusPatcher:
    """Writes one reconcile's status changes, as ``field_manager``, for conditions in ``owned``."""

    def __init__(
        self,
        client: KubeClient,
        info: ResourceInfo,
        snapshot: dict[str, Any],
        *,
        owned_conditions: Collection[str],
        field_manager: str,
    ) -> None:
        self._client = client
        self._info = info
        self._snapshot = copy.deepcopy(snapshot)
        self._owned = frozenset(owned_conditions)
        self._field_manager = field_manager

    async def patch(self, desired_status: dict[str, Any]) -> dict[str, Any] | None:
        """Make the object's status ``desired_status``; None when nothing changed."""
        meta = self._snapshot["metadata"]
        before = self._snapshot.get("status") or {}
        version = meta.get("resourceVersion")
        for _ in range(CONFLICT_RETRIES):
            diff = merge_patch(before, desired_status)
            if not diff:
                return None
            body = {"metadata": {"resourceVersion": version}, "status": diff}
            try:
                updated = await self._client.patch(
                    self._info,
                    meta.get("namespace"),
                    meta["name"],
                    body,
                    subresource="status",
                    field_manager=self._field_manager,
                )
            except Conflict:
                await _conflict_pause()
                latest = await self._client.get(self._info, meta.get("namespace"), meta["name"])
                before = latest.get("status") or {}
                version = latest["metadata"]["resourceVersion"]
                desired_status = self._rebase(before, desired_status)
                continue
            self._snapshot = updated
            return updated
        raise Conflict(409, "Conflict", f"status of {meta['name']} kept changing under us")

    def _rebase(self, latest: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        """Our changes since the snapshot, laid onto ``latest``."""
        ours = merge_patch(self._snapshot.get("status") or {}, desired)
        rebased = copy.deepcopy(latest)
        for key, value in ours.items():
            if key == "conditions":
                continue
            if value is None:
                rebased.pop(key, None)
            else:
                rebased[key] = copy.deepcopy(desired[key])
        rebased["conditions"] = _merge_conditions(
            latest.get("conditions") or [], desired.get("conditions") or [], self._owned
        )
        return rebased


async def patch_finalizers(
    client: KubeClient,
    info: ResourceInfo,
    obj: dict[str, Any],
    *,
    add: str | None = None,
    remove: str | None = None,
) -> dict[str, Any]:
    """Add or remove one finalizer with an optimistic lock, retrying on conflict."""
    current = obj
    for _ in range(CONFLICT_RETRIES):
        meta = current["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if add and add not in finalizers:
            finalizers.append(add)
        if remove:
            finalizers = [f for f in finalizers if f != remove]
        if finalizers == (meta.get("finalizers") or []):
            return current
        body = {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": finalizers}}
        try:
            return await client.patch(info, meta.get("namespace"), meta["name"], body)
        except Conflict:
            await _conflict_pause()
            current = await client.get(info, meta.get("namespace"), meta["name"])
    raise Conflict(409, "Conflict", f"finalizers of {obj['metadata']['name']} kept changing")
