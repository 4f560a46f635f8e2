"""What drifted in a Kustomization's objects, for ``spec.driftDetection.mode: warn`` (a weir
extension).

In ``warn`` mode, a run whose desired state is the one already applied does not apply: it
plans (``ResourceManager.diff``: server-side dry-runs, ``spec.ignore`` honoured) and reports
what differs as the ``Drifted`` condition and a ``DriftDetected`` Warning event, in the words
of HelmRelease's drift detection: each object as ``Kind/namespace/name``, ``changed`` with the
JSON pointers of the fields that drifted, or ``removed`` when it is gone from the cluster.
Values are never shown (a Secret's would leak). The message is capped as Flux caps a
condition message (32768 characters, ``...`` at the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controllers import conditions as cond
from controllers.inventory import ObjectRef
from controllers.jsondiff import compare
from kustomize.apply.changeset import Action
from kustomize.apply.manager import ObjectDiff

__all__ = [
    "DRIFTED",
    "DRIFT_DETECTED",
    "NO_DRIFT_DETECTED",
    "NO_DRIFT_MESSAGE",
    "ObjectDrift",
    "drift_message",
    "drifts_of",
]

# HelmRelease's condition type, reasons and message (Flux helm-controller).
DRIFTED = "Drifted"
DRIFT_DETECTED = "DriftDetected"
NO_DRIFT_DETECTED = "NoDriftDetected"
NO_DRIFT_MESSAGE = "No drift detected against the cluster state"

# Field paths named per object, as HelmRelease's message: a condition must stay readable.
FIELDS_SHOWN = 10
# Flux's trimConditionMessage suffix.
_TRIMMED = "..."


@dataclass(frozen=True)
class ObjectDrift:
    """One object that differs from its desired state: the JSON pointers of the fields that
    drifted, or ``removed`` when it no longer exists."""

    ref: ObjectRef
    fields: tuple[str, ...] = ()
    removed: bool = False

    def line(self) -> str:
        """``Kind/namespace/name changed: /spec/replicas`` or ``Kind/namespace/name removed``."""
        if self.removed:
            return f"{self.ref.subject} removed"
        line = f"{self.ref.subject} changed"
        if self.fields:
            shown = ", ".join(self.fields[:FIELDS_SHOWN])
            more = len(self.fields) - FIELDS_SHOWN
            line += f": {shown}" + (f" and {more} more" if more > 0 else "")
        return line


def drifts_of(diffs: Sequence[ObjectDiff]) -> list[ObjectDrift]:
    """The objects of a plan that drifted, in its (apply) order. ``configured`` is drift;
    ``created`` means the object is gone from the cluster, since the plan is of the desired
    state already applied."""
    drifts = []
    for diff in diffs:
        if diff.action == Action.CREATED:
            drifts.append(ObjectDrift(diff.ref, removed=True))
        elif diff.action == Action.CONFIGURED:
            ops = compare(diff.live or {}, diff.merged or {})
            fields = tuple(dict.fromkeys(op.path for op in ops))
            drifts.append(ObjectDrift(diff.ref, fields))
    return drifts


def drift_message(
    revision: str, drifts: Sequence[ObjectDrift], limit: int = cond.MAX_MESSAGE
) -> str:
    """The ``Drifted`` condition's and ``DriftDetected`` event's message: one line per
    drifted object, at most ``limit`` characters (Flux's trimming, ``...`` at the end)."""
    lines = "\n".join(drift.line() for drift in drifts)
    message = f"Cluster state has drifted from revision {revision}:\n{lines}"
    if len(message) <= limit:
        return message
    return message[: max(limit - len(_TRIMMED), 0)] + _TRIMMED
