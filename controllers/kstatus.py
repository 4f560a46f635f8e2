"""The kstatus status of an object: kstatus's rules, as Flux waits with them.

``compute`` follows kstatus (sigs.k8s.io/cli-utils ``pkg/kstatus/status``, as vendored by
Flux in fluxcd/cli-utils), rule for rule and with its messages:

1. Generic rules, for every kind: a ``deletionTimestamp`` makes the object ``Terminating``;
   an ``observedGeneration`` that differs from ``generation`` makes it ``InProgress``; a
   ``Reconciling`` condition that is True makes it ``InProgress``, a ``Stalled`` one
   ``Failed``.
2. Rules per built-in kind: Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod,
   PersistentVolumeClaim, Service, Job, PodDisruptionBudget, CustomResourceDefinition;
   Secret, ConfigMap and CronJob are always ``Current``.
3. Any other kind with a ``Ready`` condition: True is ``Current``, False or Unknown is
   ``InProgress`` (kstatus cannot tell a doomed resource from a slow one; only ``Stalled``
   says ``Failed``).
4. Otherwise ``Current``: a resource that reports nothing is taken as reconciled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from controllers.api import parse_time

__all__ = [
    "Health",
    "Status",
    "compute",
    "kind_key",
    "unobserved_generation",
]

# kstatus gives a Pod this long to be scheduled before reporting it unschedulable.
SCHEDULE_WINDOW = timedelta(seconds=15)
_MAX_INT32 = 2**31 - 1


class Status(StrEnum):
    """kstatus's statuses."""

    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    NOT_FOUND = "NotFound"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Health:
    """The kstatus status of one object, and kstatus's message for it."""

    status: Status
    message: str


def _current(message: str) -> Health:
    return Health(Status.CURRENT, message)


def _in_progress(message: str) -> Health:
    return Health(Status.IN_PROGRESS, message)


def _failed(message: str) -> Health:
    return Health(Status.FAILED, message)


# Reading fields as kstatus does: a missing or mistyped field takes the default.


def _field(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _int(obj: Mapping[str, Any], path: str, default: int) -> int:
    value = _field(obj, path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(obj: Mapping[str, Any], path: str, default: str) -> str:
    value = _field(obj, path)
    return value if isinstance(value, str) else default


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = _field(obj, "status.conditions")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def _condition(obj: Mapping[str, Any], type_: str, status: str) -> Mapping[str, Any] | None:
    for c in _conditions(obj):
        if c.get("type") == type_ and c.get("status") == status:
            return c
    return None


def _message(condition: Mapping[str, Any]) -> str:
    return str(condition.get("message") or "")


# Generic rules.


def unobserved_generation(obj: Mapping[str, Any]) -> Health | None:
    """``InProgress`` when ``status.observedGeneration`` is not ``metadata.generation`` (both
    set): the object's controller has not yet seen its latest spec."""
    generation = _int(obj, "metadata.generation", -1)
    observed = _int(obj, "status.observedGeneration", -1)
    if generation != -1 and observed != -1 and observed != generation:
        kind = obj.get("kind")
        return _in_progress(
            f"{kind} generation is {generation}, but latest observed generation is {observed}"
        )
    return None


def _generic(obj: Mapping[str, Any]) -> Health | None:
    if _field(obj, "metadata.deletionTimestamp"):
        return Health(Status.TERMINATING, "Resource scheduled for deletion")
    behind = unobserved_generation(obj)
    if behind is not None:
        return behind
    for c in _conditions(obj):
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return _in_progress(_message(c))
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return _failed(_message(c))
    return None


def _ready_condition(obj: Mapping[str, Any]) -> Health | None:
    for c in _conditions(obj):
        if c.get("type") != "Ready":
            continue
        if c.get("status") == "True":
            return _current("Resource is Ready")
        if c.get("status") in ("False", "Unknown"):
            return _in_progress(_message(c))
    return None


# Rules per built-in kind.


def _always_ready(obj: Mapping[str, Any]) -> Health:
    return _current("Resource is always ready")


def _deployment(obj: Mapping[str, Any]) -> Health:
    # Without progressDeadlineSeconds (or with the maximum, which the controller treats
    # alike) there is no Progressing condition to wait for.
    progressing = _int(obj, "spec.progressDeadlineSeconds", _MAX_INT32) == _MAX_INT32
    available = False
    for c in _conditions(obj):
        if c.get("type") == "Progressing":
            if c.get("reason") == "ProgressDeadlineExceeded":
                return _failed("Progress deadline exceeded")
            if c.get("status") == "True" and c.get("reason") == "NewReplicaSetAvailable":
                progressing = True
        elif c.get("type") == "Available" and c.get("status") == "True":
            available = True

    spec = _int(obj, "spec.replicas", 1)
    replicas = _int(obj, "status.replicas", 0)
    updated = _int(obj, "status.updatedReplicas", 0)
    ready = _int(obj, "status.readyReplicas", 0)
    available_replicas = _int(obj, "status.availableReplicas", 0)
    if spec > replicas:
        return _in_progress(f"Replicas: {replicas}/{spec}")
    if spec > updated:
        return _in_progress(f"Updated: {updated}/{spec}")
    if replicas > spec:
        return _in_progress(f"Pending termination: {replicas - spec}")
    if updated > available_replicas:
        return _in_progress(f"Available: {available_replicas}/{updated}")
    if spec > ready:
        return _in_progress(f"Ready: {ready}/{spec}")
    if not progressing:
        return _in_progress("ReplicaSet not Available")
    if not available:
        return _in_progress("Deployment not Available")
    return _current(f"Deployment is available. Replicas: {replicas}")


def _stateful_set(obj: Mapping[str, Any]) -> Health:
    if _str(obj, "spec.updateStrategy.type", "") == "OnDelete":
        return _current("StatefulSet is using the ondelete update strategy")
    spec = _int(obj, "spec.replicas", 1)
    ready = _int(obj, "status.readyReplicas", 0)
    current = _int(obj, "status.currentReplicas", 0)
    updated = _int(obj, "status.updatedReplicas", 0)
    replicas = _int(obj, "status.replicas", 0)
    partition = _int(obj, "spec.updateStrategy.rollingUpdate.partition", -1)
    if spec > replicas:
        return _in_progress(f"Replicas: {replicas}/{spec}")
    if spec > ready:
        return _in_progress(f"Ready: {ready}/{spec}")
    if replicas > spec:
        return _in_progress(f"Pending termination: {replicas - spec}")
    if partition != -1:
        if updated < spec - partition:
            return _in_progress(f"updated: {updated}/{spec - partition}")
        return _current(f"Partition rollout complete. updated: {updated}")
    if spec > current:
        return _in_progress(f"current: {current}/{spec}")
    if _str(obj, "status.currentRevision", "") != _str(obj, "status.updateRevision", ""):
        return _in_progress("Waiting for updated revision to match current")
    return _current(f"All replicas scheduled as expected. Replicas: {replicas}")


def _daemon_set(obj: Mapping[str, Any]) -> Health:
    # The generic rule skips objects without these fields; the DaemonSet controller always
    # sets them once it has seen the object, so their absence means it has not yet.
    kind = obj.get("kind")
    if _int(obj, "metadata.generation", -1) == -1:
        return _in_progress(f"{kind} metadata.generation not found")
    if _int(obj, "status.observedGeneration", -1) == -1:
        return _in_progress(f"{kind} status.observedGeneration not found")
    desired = _int(obj, "status.desiredNumberScheduled", -1)
    current = _int(obj, "status.currentNumberScheduled", 0)
    updated = _int(obj, "status.updatedNumberScheduled", 0)
    available = _int(obj, "status.numberAvailable", 0)
    ready = _int(obj, "status.numberReady", 0)
    if desired == -1:
        return _in_progress("Missing .status.desiredNumberScheduled")
    if desired > current:
        return _in_progress(f"Current: {current}/{desired}")
    if desired > updated:
        return _in_progress(f"Updated: {updated}/{desired}")
    if desired > available:
        return _in_progress(f"Available: {available}/{desired}")
    if desired > ready:
        return _in_progress(f"Ready: {ready}/{desired}")
    return _current(f"All replicas scheduled as expected. Replicas: {desired}")


def _replica_set(obj: Mapping[str, Any]) -> Health:
    if _condition(obj, "ReplicaFailure", "True"):
        return _in_progress("Replica Failure condition. Check Pods")
    spec = _int(obj, "spec.replicas", 1)
    replicas = _int(obj, "status.replicas", 0)
    ready = _int(obj, "status.readyReplicas", 0)
    available = _int(obj, "status.availableReplicas", 0)
    labelled = _int(obj, "status.fullyLabeledReplicas", 0)
    if spec > labelled:
        return _in_progress(f"Labelled: {labelled}/{spec}")
    if spec > available:
        return _in_progress(f"Available: {available}/{spec}")
    if spec > ready:
        return _in_progress(f"Ready: {ready}/{spec}")
    if replicas > spec:
        return _in_progress(f"Pending termination: {replicas - spec}")
    return _current(f"ReplicaSet is available. Replicas: {replicas}")


def _persistent_volume_claim(obj: Mapping[str, Any]) -> Health:
    phase = _str(obj, "status.phase", "unknown")
    if phase != "Bound":
        return _in_progress(f"PVC is not Bound. phase: {phase}")
    return _current("PVC is Bound")


def _crash_looping(obj: Mapping[str, Any]) -> list[str]:
    statuses = _field(obj, "status.containerStatuses")
    names = []
    for container in statuses if isinstance(statuses, list) else []:
        if not isinstance(container, Mapping) or not container.get("name"):
            continue
        if _str(container, "state.waiting.reason", "") == "CrashLoopBackOff":
            names.append(str(container["name"]))
    return names


def _created_at(obj: Mapping[str, Any]) -> datetime:
    created = parse_time(_str(obj, "metadata.creationTimestamp", ""))
    return created or datetime.min.replace(tzinfo=UTC)


def _pod(obj: Mapping[str, Any]) -> Health:
    phase = _str(obj, "status.phase", "")
    if phase == "Succeeded":
        return _current("Pod has completed successfully")
    if phase == "Failed":
        return _current("Pod has completed, but not successfully")
    if phase == "Running":
        if _condition(obj, "Ready", "True"):
            return _current("Pod is Ready")
        looping = _crash_looping(obj)
        if looping:
            return _failed(f"Containers in CrashLoop state: {','.join(looping)}")
        return _in_progress("Pod is running but is not Ready")
    if phase == "Pending":
        scheduled = _condition(obj, "PodScheduled", "False")
        if scheduled and scheduled.get("reason") == "Unschedulable":
            if datetime.now(UTC) - SCHEDULE_WINDOW < _created_at(obj):
                return _in_progress("Pod has not been scheduled")
            return _failed("Pod could not be scheduled")
        return _in_progress("Pod is in the Pending phase")
    if phase == "":
        return _in_progress("Pod phase not available")
    return Health(Status.UNKNOWN, f"unknown phase {phase}")


def _pod_disruption_budget(obj: Mapping[str, Any]) -> Health:
    # The generic rule already waited for observedGeneration; the disruption controller
    # sets no condition when it cannot compute the budget.
    return _current("AllowedDisruptions has been computed.")


def _job(obj: Mapping[str, Any]) -> Health:
    parallelism = _int(obj, "spec.parallelism", 1)
    completions = _int(obj, "spec.completions", parallelism)
    succeeded = _int(obj, "status.succeeded", 0)
    active = _int(obj, "status.active", 0)
    failed = _int(obj, "status.failed", 0)
    for c in _conditions(obj):
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return _current(f"Job Completed. succeeded: {succeeded}/{completions}")
        if c.get("type") == "Failed":
            return _failed(f"Job Failed. failed: {failed}/{completions}")
        if c.get("type") == "Suspended":
            return _current("Job is suspended")
    if not _str(obj, "status.startTime", ""):
        return _in_progress("Job not started")
    return _current(f"Job in progress. success:{succeeded}, active: {active}, failed: {failed}")


def _service(obj: Mapping[str, Any]) -> Health:
    # kstatus looks only for the cluster IP, not for a load balancer's ingress.
    if _str(obj, "spec.type", "ClusterIP") == "LoadBalancer" and not _str(
        obj, "spec.clusterIP", ""
    ):
        return _in_progress("ClusterIP not set. Service type: LoadBalancer")
    return _current("Service is ready")


def _custom_resource_definition(obj: Mapping[str, Any]) -> Health:
    for c in _conditions(obj):
        if c.get("type") == "NamesAccepted" and c.get("status") == "False":
            return _failed(_message(c))
        if c.get("type") == "Established":
            if c.get("status") == "False" and c.get("reason") != "Installing":
                return _failed(_message(c))
            if c.get("status") == "True":
                return _current("CRD is established")
    return _in_progress("Install in progress")


_BUILT_IN = {
    "Service": _service,
    "Pod": _pod,
    "Secret": _always_ready,
    "PersistentVolumeClaim": _persistent_volume_claim,
    "apps/StatefulSet": _stateful_set,
    "apps/DaemonSet": _daemon_set,
    "extensions/DaemonSet": _daemon_set,
    "apps/Deployment": _deployment,
    "extensions/Deployment": _deployment,
    "apps/ReplicaSet": _replica_set,
    "extensions/ReplicaSet": _replica_set,
    "policy/PodDisruptionBudget": _pod_disruption_budget,
    "batch/CronJob": _always_ready,
    "ConfigMap": _always_ready,
    "batch/Job": _job,
    "apiextensions.k8s.io/CustomResourceDefinition": _custom_resource_definition,
}


def kind_key(api_version: str, kind: str) -> str:
    """``<group>/<kind>``, or ``<kind>`` in the core group: what rules are looked up by."""
    group = api_version.rpartition("/")[0]
    return f"{group}/{kind}" if group else kind


def compute(obj: Mapping[str, Any] | None) -> Health:
    """The kstatus status of ``obj`` (``NotFound`` for None), with kstatus's message."""
    if obj is None:
        return Health(Status.NOT_FOUND, "Resource not found")
    found = _generic(obj)
    if found is not None:
        return found
    rule = _BUILT_IN.get(kind_key(str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")))
    if rule is not None:
        return rule(obj)
    return _ready_condition(obj) or _current("Resource is current")
