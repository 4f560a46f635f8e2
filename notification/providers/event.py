"""Reading Flux's event JSON the way Flux's notifiers do.

The event is the JSON the controllers POST (``controllers.events.flux_event``) with the
Alert's metadata merged in by the caller. Flux hands its notifiers the metadata with the group
prefixes stripped (``revision``, not ``kustomize.toolkit.fluxcd.io/revision``); both spellings
are read here, so an event merged either way finds its revision.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

__all__ = [
    "PROGRESSING",
    "event_json",
    "event_revision",
    "involved",
    "metadata",
    "name_and_description",
    "object_label",
    "rfc3339",
    "split_camelcase",
    "timestamp",
]

# Flux's meta.ProgressingReason: commit statuses and PagerDuty skip such events.
PROGRESSING = "Progressing"

# The order of Go's corev1.ObjectReference and eventv1beta1.Event fields, as Flux marshals them.
_OBJECT_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
_EVENT_FIELDS = (
    "involvedObject",
    "severity",
    "timestamp",
    "message",
    "reason",
    "metadata",
    "reportingController",
    "reportingInstance",
)
_OMIT_EMPTY = {"metadata", "reportingInstance"}


def involved(event: dict[str, Any]) -> dict[str, Any]:
    """The event's ``involvedObject`` (empty when missing)."""
    value = event.get("involvedObject")
    return value if isinstance(value, dict) else {}


def event_json(event: dict[str, Any]) -> bytes:
    """The event as Flux's generic provider posts it: Go's field order, empty optional fields
    left out, compact JSON, metadata keys sorted (Go sorts map keys)."""
    obj = involved(event)
    shaped: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        if name == "involvedObject":
            shaped[name] = {key: obj[key] for key in _OBJECT_FIELDS if obj.get(key)}
        elif name == "metadata":
            shaped[name] = dict(sorted(metadata(event).items()))
        else:
            shaped[name] = event.get(name) or ""
        if name in _OMIT_EMPTY and not shaped[name]:
            del shaped[name]
    return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode()


def metadata(event: dict[str, Any]) -> dict[str, str]:
    """The event's metadata as strings, sorted by key (Flux iterates a Go map: any order)."""
    value = event.get("metadata")
    if not isinstance(value, dict):
        return {}
    return {str(key): str(value[key]) for key in sorted(value)}


def object_label(event: dict[str, Any]) -> str:
    """``kind/name.namespace`` with the kind lower-cased, as Flux's chat messages name the
    object."""
    obj = involved(event)
    return f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}.{obj.get('namespace', '')}"


def name_and_description(event: dict[str, Any]) -> tuple[str, str]:
    """Flux's ``formatNameAndDescription``: ``kind/name`` lower-cased, and the reason split at
    its camel case, lower-cased (``ReconciliationSucceeded`` -> ``reconciliation succeeded``)."""
    obj = involved(event)
    name = f"{obj.get('kind', '')}/{obj.get('name', '')}".lower()
    description = " ".join(split_camelcase(str(event.get("reason", "")))).lower()
    return name, description


def split_camelcase(text: str) -> list[str]:
    """Words of a camel-case string, as fatih/camelcase (which Flux uses) splits them: runs of
    lower case, upper case, digits and other characters, an upper-case run giving its last
    letter to a lower-case run after it (``PDFLoader`` -> ``PDF``, ``Loader``)."""
    runs: list[list[str]] = []
    last = 0
    for char in text:
        kind = 1 if char.islower() else 2 if char.isupper() else 3 if char.isdecimal() else 4
        if kind == last:
            runs[-1].append(char)
        else:
            runs.append([char])
        last = kind
    for i in range(len(runs) - 1):
        if runs[i][0].isupper() and runs[i + 1][0].islower():
            runs[i + 1].insert(0, runs[i].pop())
    return ["".join(run) for run in runs if run]


def event_revision(event: dict[str, Any]) -> str | None:
    """The revision the event is about: ``originRevision``, else ``revision`` (Flux's
    ``GetRevision``), with or without the involved object's group prefix."""
    values = event.get("metadata")
    if not isinstance(values, dict):
        return None
    group = str(involved(event).get("apiVersion", "")).partition("/")[0]
    for key in ("originRevision", "revision"):
        for spelled in (key, f"{group}/{key}"):
            value = values.get(spelled)
            if isinstance(value, str) and value:
                return value
    return None


def timestamp(event: dict[str, Any]) -> datetime.datetime:
    """The event's time (UTC); now when it has none or one that does not parse."""
    text = str(event.get("timestamp") or "")
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.datetime.now(datetime.UTC)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    """Go's ``time.RFC3339`` of a UTC time: seconds, ``Z``."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
