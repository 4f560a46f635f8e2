"""Taking over the fields other managers own, and removing stale metadata, before applying.

As Flux does, fields owned by ``kubectl`` (any operation, any manager name starting so, e.g.
``kubectl-client-side-apply``) or by ``before-first-apply`` or by our own manager's ``Update``
operation are reassigned to our ``Apply`` entry, and the
``kubectl.kubernetes.io/last-applied-configuration`` annotation is removed, so fields we no
longer declare are dropped instead of kept by an old owner.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.ssa import any_in_metadata
from kustomize.apply.annotations import NO_CLEANUP, OWNER_GROUP

__all__ = ["LAST_APPLIED_ANNOTATION", "cleanup_patch", "take_over_managed_fields"]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Metadata Flux removes from live objects before applying (kubectl's, and Flux v1's).
_STALE_ANNOTATIONS = (
    LAST_APPLIED_ANNOTATION,
    f"{OWNER_GROUP}/checksum",
    "fluxcd.io/sync-checksum",
)
_STALE_LABELS = ("fluxcd.io/sync-gc-mark",)

# Managed fields: (manager name prefix, operation) pairs that Flux takes over.
_TAKEN_OVER = (("kubectl", "Apply"), ("kubectl", "Update"), ("before-first-apply", "Update"))


def _union_fields(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """The union of two ``fieldsV1`` sets (structured-merge-diff's ``Set.Union``).

    Below the root, a node is a member of the set when it is ``{}`` or has a ``"."`` child;
    a node that is a member in one set and has children in the other keeps both.
    """
    merged: dict[str, Any] = {}
    for key in first.keys() | second.keys():
        if key in first and key in second:
            merged[key] = _union_node(first[key], second[key])
        else:
            merged[key] = copy.deepcopy(first[key] if key in first else second[key])
    return merged


def _union_node(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    children = _union_fields(first, second)
    if children and (not first or not second):
        children["."] = {}
    return children


def take_over_managed_fields(
    entries: Sequence[Mapping[str, Any]], field_manager: str
) -> list[dict[str, Any]] | None:
    """``metadata.managedFields`` with the entries of ``kubectl*`` (Apply or Update),
    ``before-first-apply`` (Update) and ``field_manager`` (Update) folded into
    ``field_manager``'s Apply entry, which goes last; ``None`` when there is nothing to take.

    Fluxcd/pkg ssa ``PatchReplaceFieldsManagers``: the first taken entry is renamed when we
    have no Apply entry yet, the others are merged into it; subresource entries stay.
    """
    managers = (*_TAKEN_OVER, (field_manager, "Update"))
    ours_at = None
    for i, entry in enumerate(entries):
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply":
            ours_at = i
    ours = dict(entries[ours_at]) if ours_at is not None else None
    kept: list[dict[str, Any]] = []
    taken = False
    for i, entry in enumerate(entries):
        if i == ours_at:
            continue
        name, operation = str(entry.get("manager") or ""), entry.get("operation")
        if not entry.get("subresource") and any(
            name.startswith(prefix) and operation == op for prefix, op in managers
        ):
            taken = True
            if ours is None:
                ours = {**entry, "manager": field_manager, "operation": "Apply"}
            else:
                fields = _union_fields(ours.get("fieldsV1") or {}, entry.get("fieldsV1") or {})
                ours = {**ours, "fieldsV1": fields}
            continue
        kept.append(dict(entry))
    if not taken or ours is None:
        return None
    return [*kept, ours]


def _json_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def cleanup_patch(
    desired: Mapping[str, Any], existing: Mapping[str, Any] | None, field_manager: str
) -> list[dict[str, Any]]:
    """The JSON patch that removes stale metadata from ``existing`` and takes over its
    fields; empty when there is none, or when ``ssa: Merge`` opts out."""
    if existing is None or any_in_metadata(desired, NO_CLEANUP):
        return []
    if any_in_metadata(existing, NO_CLEANUP):
        return []
    meta = existing.get("metadata") or {}
    patch: list[dict[str, Any]] = []
    for key in _STALE_ANNOTATIONS:
        if key in (meta.get("annotations") or {}):
            patch.append({"op": "remove", "path": f"/metadata/annotations/{_json_pointer(key)}"})
    for key in _STALE_LABELS:
        if key in (meta.get("labels") or {}):
            patch.append({"op": "remove", "path": f"/metadata/labels/{_json_pointer(key)}"})
    managed = take_over_managed_fields(meta.get("managedFields") or [], field_manager)
    if managed is not None:
        patch.append({"op": "replace", "path": "/metadata/managedFields", "value": managed})
    return patch
