"""``spec.ignore``: fields another writer owns, left out of drift detection and apply, as
Flux 2.9 does it (fluxcd/pkg ssa ``DriftIgnoreRules``).

For each object, the rules whose ``target`` matches the server's dry-run of it give the ignored
JSON pointers. Then:

1. Drift: the pointers are taken out of both the live object and the dry-run before they are
   compared (:func:`drifted`), so an object that differs only there is ``unchanged`` and
   nothing is sent.
2. Apply: when an object is applied anyway (it drifted elsewhere, a new revision changed it),
   each ignored field whose live value differs from the dry-run is resolved by who owns it
   (:func:`resolve_ignored`):

   - *strip*: another ``Apply`` field manager owns it (a controller using server-side
     apply): the field is left out of what we send, so we give up owning it and it keeps
     its value;
   - *adopt*: otherwise (we own it alone, or only ``Update`` writers such as ``kubectl
     edit``, ``kubectl scale`` or an HPA through the ``scale`` subresource touched it): the
     live value is copied into what we send, so it stays and we keep owning it.

A new object is created as the manifest has it: there is nothing to leave alone yet. The
pointer ``""`` (the whole object) has no effect in a Kustomization.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from controllers.apitypes import Selector
from controllers.jsondiff import (
    IGNORE_ROOT,
    IgnoreRules,
    lookup_pointer,
    remove_pointers,
    replace_pointer,
)

__all__ = [
    "compile_ignore_rules",
    "ignored_paths",
    "owned_by_another_applier",
    "resolve_ignored",
    "without_ignored",
]


class _Rule(Protocol):
    @property
    def paths(self) -> Sequence[str]: ...

    @property
    def target(self) -> Selector | None: ...


def compile_ignore_rules(rules: Iterable[_Rule] | None) -> IgnoreRules:
    """A Kustomization's ``spec.ignore``, compiled. Raises ``controllers.jsondiff.InvalidRule``
    for a bad selector expression or pointer."""
    return IgnoreRules.compile((rule.paths, rule.target) for rule in rules or ())


def ignored_paths(rules: IgnoreRules, dry_run: Mapping[str, Any]) -> list[str]:
    """The pointers ignored in one object; rules are matched against its dry-run (as Flux, so
    the live object and the dry-run are always stripped alike)."""
    return [path for path in rules.paths_for(dry_run) if path != IGNORE_ROOT]


def without_ignored(obj: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """A copy of ``obj`` without the fields ``paths`` name."""
    stripped = copy.deepcopy(dict(obj))
    remove_pointers(stripped, paths)
    return stripped


def resolve_ignored(
    payload: Mapping[str, Any],
    live: Mapping[str, Any],
    dry_run: Mapping[str, Any],
    paths: Sequence[str],
    field_manager: str,
) -> dict[str, Any]:
    """What to send for an existing object: ``payload`` with each ignored field whose live
    value differs from the dry-run stripped (another ``Apply`` manager owns it) or set to the
    live value (adopted). Raises ``KeyError`` when a field to adopt is not in ``payload`` (a
    JSON patch ``replace``, as Flux)."""
    appliers = _apply_entries(live)
    strip: list[str] = []
    adopt: list[tuple[str, Any]] = []
    for path in paths:
        live_found, live_value = lookup_pointer(live, path)
        wanted_found, wanted_value = lookup_pointer(dry_run, path)
        if live_found == wanted_found and live_value == wanted_value:
            continue
        if owned_by_another_applier(live, path, field_manager, appliers):
            strip.append(path)
        else:
            adopt.append((path, live_value))
    resolved = copy.deepcopy(dict(payload))
    remove_pointers(resolved, strip)
    for path, value in adopt:
        replace_pointer(resolved, path, value)
    return resolved


# Field ownership, from metadata.managedFields (fieldsV1: "f:name" per field, "k:{...}" per
# list item with merge keys).

_Entry = tuple[str, dict[str, Any]]
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _apply_entries(obj: Mapping[str, Any]) -> list[_Entry]:
    """``(manager, fieldsV1)`` of the ``Apply`` entries on the object itself (no subresource)."""
    entries = []
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("subresource") or entry.get("operation") != "Apply":
            continue
        fields = entry.get("fieldsV1")
        if isinstance(fields, dict) and fields:
            entries.append((str(entry.get("manager") or ""), fields))
    return entries


def owned_by_another_applier(
    obj: Mapping[str, Any],
    pointer: str,
    field_manager: str,
    appliers: Sequence[_Entry] | None = None,
) -> bool:
    """Whether an ``Apply`` field manager other than ``field_manager`` owns the field (or a
    field below it) that ``pointer`` names. A pointer that cannot be followed through the
    managed fields counts as not owned by another (Flux adopts then)."""
    entries = _apply_entries(obj) if appliers is None else appliers
    segments = _field_segments(obj, pointer, entries)
    if segments is None:
        return False
    return any(
        manager != field_manager and _contains(fields, segments) for manager, fields in entries
    )


def _field_segments(
    obj: Mapping[str, Any], pointer: str, entries: Sequence[_Entry]
) -> list[str] | None:
    """The fieldsV1 path of ``pointer`` (``/spec/replicas``: ``f:spec``, ``f:replicas``); a list
    index becomes the ``k:{...}`` key of the item there. None when it cannot be resolved."""
    raw = pointer.removeprefix("/")
    if not raw:
        return None
    segments: list[str] = []
    walked: list[str] = []
    for token in (t.replace("~1", "/").replace("~0", "~") for t in raw.split("/")):
        if not _INTEGER.fullmatch(token):
            segments.append(f"f:{token}")
        else:
            key = _item_key(obj, walked, int(token), segments, entries)
            if key is None:
                return None
            segments.append(key)
        walked.append(token)
    return segments


def _item_key(
    obj: Mapping[str, Any],
    walked: Sequence[str],
    index: int,
    parent: Sequence[str],
    entries: Sequence[_Entry],
) -> str | None:
    """The ``k:{...}`` key of the list item at ``index`` under the path ``walked``."""
    node: Any = obj
    for token in walked:  # as Flux, through maps only: a list inside a list is not resolved
        node = node.get(token) if isinstance(node, dict) else None
    if not isinstance(node, list) or not 0 <= index < len(node):
        return None
    item = node[index]
    if not isinstance(item, dict):
        return None
    keys = sorted(
        {
            key
            for _, fields in entries
            if (found := _walk(fields, parent)) is not None
            for key in found
            if key.startswith("k:")
        }
    )
    for key in keys:
        try:
            merge_key = json.loads(key.removeprefix("k:"))
        except ValueError:
            continue
        if isinstance(merge_key, dict) and all(item.get(k) == v for k, v in merge_key.items()):
            return key
    return None


def _walk(fields: Mapping[str, Any], segments: Sequence[str]) -> Mapping[str, Any] | None:
    node: Any = fields
    for segment in segments:
        node = node.get(segment) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return None
    return node if isinstance(node, dict) else None


def _contains(fields: Mapping[str, Any], segments: Sequence[str]) -> bool:
    """Whether the fieldsV1 set has the path ``segments`` (its last part may have children)."""
    if not segments:
        return False
    parent = _walk(fields, segments[:-1])
    return parent is not None and segments[-1] in parent
