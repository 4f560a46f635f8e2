"""Condition types, reasons, setters and the kstatus rule check.

kstatus rules (https://github.com/kubernetes-sigs/cli-utils/tree/master/pkg/kstatus):
``Ready`` is always present once reconciled; ``Reconciling`` and ``Stalled`` appear only when
True and never together; ``lastTransitionTime`` moves only when status, reason or message do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from controllers.api import Condition, time_now

__all__ = [
    "FAILED",
    "PROGRESSING",
    "PROGRESSING_WITH_RETRY",
    "READY",
    "RECONCILING",
    "STALLED",
    "SUCCEEDED",
    "find",
    "is_true",
    "kstatus_violations",
    "remove",
    "set_condition",
]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

PROGRESSING = "Progressing"
PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
SUCCEEDED = "ReconciliationSucceeded"
FAILED = "ReconciliationFailed"

MAX_MESSAGE = 32768  # metav1.Condition's limit

Status = Literal["True", "False", "Unknown"]


def find(conditions: Iterable[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or () if c.type == type_), None)


def is_true(conditions: Iterable[Condition] | None, type_: str) -> bool:
    condition = find(conditions, type_)
    return condition is not None and condition.status == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int | None,
) -> list[Condition]:
    """``conditions`` with ``type_`` set; its transition time kept unless something changed."""
    message = message[:MAX_MESSAGE]  # as stored, so an unchanged long message compares equal
    old = find(conditions, type_)
    moved = old is None or (old.status, old.reason, old.message) != (status, reason, message)
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=time_now() if moved or old is None else old.last_transition_time,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def remove(conditions: list[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.type != type_]


def kstatus_violations(obj: dict[str, Any], negative_polarity: Iterable[str] = ()) -> list[str]:
    """Every way the object's conditions break the kstatus rules; empty when they hold.

    ``negative_polarity`` names abnormal conditions (``FetchFailed``, ...) that, like
    ``Reconciling`` and ``Stalled``, may only be present when True.
    """
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    raw = status.get("conditions") or []
    problems: list[str] = []
    by_type: dict[str, dict[str, Any]] = {}
    for c in raw:
        if c.get("type") in by_type:
            problems.append(f"condition {c.get('type')} appears twice")
        by_type[c.get("type", "")] = c
        if c.get("status") not in ("True", "False", "Unknown"):
            problems.append(
                f"{c.get('type')}: status {c.get('status')!r} is not True/False/Unknown"
            )
        if not c.get("reason"):
            problems.append(f"{c.get('type')}: no reason")
        if not c.get("lastTransitionTime"):
            problems.append(f"{c.get('type')}: no lastTransitionTime")
        observed = c.get("observedGeneration")
        if observed is not None and generation is not None and observed > generation:
            problems.append(f"{c.get('type')}: observedGeneration {observed} > {generation}")
    ready = by_type.get(READY)
    if ready is None:
        problems.append("Ready is missing")
    for type_ in (RECONCILING, STALLED, *negative_polarity):
        if type_ in by_type and by_type[type_].get("status") != "True":
            problems.append(f"{type_} is present but not True")
    if _true(by_type, RECONCILING) and _true(by_type, STALLED):
        problems.append("Reconciling and Stalled are both True")
    if ready is not None and ready.get("status") == "True":
        for type_ in (RECONCILING, STALLED):
            if type_ in by_type:
                problems.append(f"Ready is True while {type_} is present")
    if _true(by_type, STALLED) and ready is not None:
        if ready.get("status") != "False":
            problems.append("Stalled is True but Ready is not False")
        elif ready.get("reason") != by_type[STALLED].get("reason"):
            problems.append("Ready does not carry the Stalled reason")
    settled = ready is not None and not _true(by_type, RECONCILING)
    if settled and status.get("observedGeneration") != generation:
        problems.append(
            f"status.observedGeneration {status.get('observedGeneration')} != generation "
            f"{generation} while not Reconciling"
        )
    return problems


def _true(by_type: dict[str, dict[str, Any]], type_: str) -> bool:
    return by_type.get(type_, {}).get("status") == "True"
