"""Flux's Prometheus metrics: reconcile duration, condition status and suspend status; and
weir's own: since when each suspended object has been suspended."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from controllers import conditions as cond
from controllers.api import Condition, CustomResource

__all__ = ["Metrics"]

CONDITION_TYPES = (cond.READY, cond.RECONCILING, cond.STALLED)
STATUSES = ("True", "False", "Unknown", "Deleted")
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800)


class Metrics:
    """One registry per process; series of deleted objects are removed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["kind", "name", "namespace"]
        self.duration = Histogram(
            "gotk_reconcile_duration_seconds",
            "The duration in seconds of a GitOps Toolkit resource reconciliation.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.condition = Gauge(
            "gotk_reconcile_condition",
            "The current condition status of a GitOps Toolkit resource reconciliation.",
            [*labels, "type", "status"],
            registry=self.registry,
        )
        self.suspend = Gauge(
            "gotk_suspend_status",
            "The current suspend status of a GitOps Toolkit resource.",
            labels,
            registry=self.registry,
        )
        # A weir extension, hence not gotk_: Prometheus' advice for "time since" is the time
        # it happened, so the series needs no update between runs; age = time() - value.
        self.suspended_since = Gauge(
            "weir_suspended_since_timestamp_seconds",
            "Since when a resource has been suspended, as a Unix time: the time weir suspend "
            "recorded, else when this controller first saw it suspended.",
            labels,
            registry=self.registry,
        )

    def record_duration(self, obj: CustomResource, seconds: float) -> None:
        self.duration.labels(*_labels(obj)).observe(seconds)

    def record_suspend(
        self, obj: CustomResource, suspended: bool, *, since: float | None = None
    ) -> None:
        """The suspend status and, while suspended, since when (a Unix time)."""
        self.suspend.labels(*_labels(obj)).set(1 if suspended else 0)
        if suspended and since is not None:
            self.suspended_since.labels(*_labels(obj)).set(since)
        else:
            _remove(self.suspended_since, *_labels(obj))

    def record_conditions(self, obj: CustomResource, conditions: Iterable[Condition]) -> None:
        by_type = {c.type: c.status for c in conditions}
        for type_ in CONDITION_TYPES:
            current = by_type.get(type_)
            for status in STATUSES:
                value = 1 if status == current else 0
                self.condition.labels(*_labels(obj), type_, status).set(value)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop every series of a deleted object."""
        for metric in (self.duration, self.suspend, self.suspended_since):
            _remove(metric, kind, name, namespace)
        for type_ in CONDITION_TYPES:
            for status in STATUSES:
                _remove(self.condition, kind, name, namespace, type_, status)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _labels(obj: CustomResource) -> tuple[str, str, str]:
    return obj.info.kind, obj.metadata.name, obj.metadata.namespace or ""


def _remove(metric: Histogram | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
