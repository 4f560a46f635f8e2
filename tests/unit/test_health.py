"""kstatus's rules, kind by kind, on statuses as the Kubernetes controllers write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controllers.cel import InvalidExpression
from controllers.health import HealthCheckError, compute, custom_checks
from controllers.kstatus import Health, Status
from controllers.reconcile import ReconcileError
from kustomize.api_v1 import CustomHealthCheck

CURRENT, IN_PROGRESS, FAILED = Status.CURRENT, Status.IN_PROGRESS, Status.FAILED


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def obj(
    api_version: str,
    kind: str,
    *,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "apps", **metadata},
    }
    if spec is not None:
        manifest["spec"] = spec
    if status is not None:
        manifest["status"] = status
    return manifest


def deployment(spec: dict[str, Any], status: dict[str, Any], generation: int = 1) -> Any:
    return obj("apps/v1", "Deployment", spec=spec, status=status, generation=generation)


# A Deployment of 2 replicas rolled out: what the deployment controller reports.
ROLLED_OUT = {
    "observedGeneration": 1,
    "replicas": 2,
    "updatedReplicas": 2,
    "readyReplicas": 2,
    "availableReplicas": 2,
    "conditions": [
        cond(
            "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
        ),
        cond("Progressing", "True", "NewReplicaSetAvailable", 'ReplicaSet "web-5d" has ...'),
    ],
}
DEADLINE = {"replicas": 2, "progressDeadlineSeconds": 600}


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(phase: str | None, *conditions: dict[str, str], **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"conditions": list(conditions), **status}
    if phase is not None:
        body["phase"] = phase
    return obj("v1", "Pod", status=body, creationTimestamp=ago(60))


def unschedulable(created: str) -> dict[str, Any]:
    manifest = pod("Pending", cond("PodScheduled", "False", "Unschedulable", "0/1 nodes ..."))
    manifest["metadata"]["creationTimestamp"] = created
    return manifest


def crash_looping(*names: str) -> dict[str, Any]:
    statuses = [
        {"name": n, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}
        for n in names
    ] + [{"name": "sidecar", "state": {"running": {"startedAt": ago(5)}}}]
    return pod("Running", cond("Ready", "False", "ContainersNotReady"), containerStatuses=statuses)


def job(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return obj("batch/v1", "Job", spec=spec, status=status, generation=1)


def crd(*conditions: dict[str, str]) -> dict[str, Any]:
    return obj(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        status={"conditions": list(conditions)},
        generation=1,
    )


def custom(*conditions: dict[str, str], generation: int = 1, observed: int = 1) -> Any:
    status = {"observedGeneration": observed, "conditions": list(conditions)}
    return obj("source.toolkit.fluxcd.io/v1", "GitRepository", status=status, generation=generation)


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(None, Health(Status.NOT_FOUND, "Resource not found"), id="missing"),
        # Generic rules, before any kind's own.
        pytest.param(
            obj("apps/v1", "Deployment", status=ROLLED_OUT, deletionTimestamp=ago(1)),
            Health(Status.TERMINATING, "Resource scheduled for deletion"),
            id="terminating",
        ),
        pytest.param(
            deployment({"replicas": 2}, ROLLED_OUT, generation=2),
            Health(IN_PROGRESS, "Deployment generation is 2, but latest observed generation is 1"),
            id="generation-not-observed",
        ),
        pytest.param(
            custom(
                cond("Reconciling", "True", "Progressing", "fetching"), cond("Ready", "Unknown")
            ),
            Health(IN_PROGRESS, "fetching"),
            id="reconciling",
        ),
        pytest.param(
            custom(
                cond("Stalled", "True", "InvalidURL", "invalid URL"),
                cond("Ready", "False", "InvalidURL", "invalid URL"),
            ),
            Health(FAILED, "invalid URL"),
            id="stalled",
        ),
        # Any other kind: its Ready condition, else nothing to wait for.
        pytest.param(
            custom(cond("Ready", "True", "Succeeded", "stored artifact")),
            Health(CURRENT, "Resource is Ready"),
            id="ready",
        ),
        pytest.param(
            custom(cond("Ready", "False", "GitOperationFailed", "connection refused")),
            Health(IN_PROGRESS, "connection refused"),
            id="not-ready-without-stalled",
        ),
        pytest.param(
            custom(cond("Ready", "Unknown", "Progressing", "reconciliation in progress")),
            Health(IN_PROGRESS, "reconciliation in progress"),
            id="ready-unknown",
        ),
        pytest.param(custom(), Health(CURRENT, "Resource is current"), id="no-conditions"),
        pytest.param(
            obj("networking.k8s.io/v1", "Ingress", spec={}),
            Health(CURRENT, "Resource is current"),
            id="no-status",
        ),
        # Deployment.
        pytest.param(
            deployment({"replicas": 2}, ROLLED_OUT),
            Health(CURRENT, "Deployment is available. Replicas: 2"),
            id="deployment-available",
        ),
        pytest.param(
            deployment({"replicas": 2}, {"observedGeneration": 1}),
            Health(IN_PROGRESS, "Replicas: 0/2"),
            id="deployment-no-replicas",
        ),
        pytest.param(
            deployment({"replicas": 2}, ROLLED_OUT | {"updatedReplicas": 1}),
            Health(IN_PROGRESS, "Updated: 1/2"),
            id="deployment-updating",
        ),
        pytest.param(
            deployment({"replicas": 2}, ROLLED_OUT | {"replicas": 3}),
            Health(IN_PROGRESS, "Pending termination: 1"),
            id="deployment-old-pods",
        ),
        pytest.param(
            deployment({"replicas": 2}, ROLLED_OUT | {"availableReplicas": 0}),
            Health(IN_PROGRESS, "Available: 0/2"),
            id="deployment-pods-pending",
        ),
        pytest.param(
            deployment({"replicas": 2}, ROLLED_OUT | {"readyReplicas": 1}),
            Health(IN_PROGRESS, "Ready: 1/2"),
            id="deployment-not-ready",
        ),
        pytest.param(
            deployment(DEADLINE, ROLLED_OUT | {"conditions": [cond("Available", "True")]}),
            Health(IN_PROGRESS, "ReplicaSet not Available"),
            id="deployment-progressing-unknown",
        ),
        pytest.param(
            deployment(
                DEADLINE,
                ROLLED_OUT
                | {"conditions": [cond("Progressing", "True", "NewReplicaSetAvailable")]},
            ),
            Health(IN_PROGRESS, "Deployment not Available"),
            id="deployment-not-available",
        ),
        pytest.param(
            deployment(DEADLINE, ROLLED_OUT),
            Health(CURRENT, "Deployment is available. Replicas: 2"),
            id="deployment-with-deadline",
        ),
        pytest.param(
            deployment(
                DEADLINE,
                {
                    "observedGeneration": 1,
                    "replicas": 2,
                    "updatedReplicas": 2,
                    "unavailableReplicas": 2,
                    "conditions": [
                        cond("Available", "False", "MinimumReplicasUnavailable"),
                        cond(
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            'ReplicaSet "web-5d" has timed out progressing.',
                        ),
                    ],
                },
            ),
            Health(FAILED, "Progress deadline exceeded"),
            id="deployment-deadline-exceeded",
        ),
        pytest.param(
            deployment({}, ROLLED_OUT | {"replicas": 1, "updatedReplicas": 1}),
            Health(CURRENT, "Deployment is available. Replicas: 1"),
            id="deployment-default-one-replica",
        ),
        # StatefulSet.
        pytest.param(
            obj(
                "apps/v1",
                "StatefulSet",
                spec={"replicas": 3},
                status={
                    "observedGeneration": 1,
                    "replicas": 3,
                    "readyReplicas": 3,
                    "currentReplicas": 3,
                    "updatedReplicas": 3,
                    "currentRevision": "db-7f",
                    "updateRevision": "db-7f",
                },
                generation=1,
            ),
            Health(CURRENT, "All replicas scheduled as expected. Replicas: 3"),
            id="statefulset-ready",
        ),
        pytest.param(
            obj(
                "apps/v1",
                "StatefulSet",
                spec={"replicas": 3},
                status={"replicas": 3, "readyReplicas": 1, "currentReplicas": 3},
            ),
            Health(IN_PROGRESS, "Ready: 1/3"),
            id="statefulset-not-ready",
        ),
        pytest.param(
            obj(
                "apps/v1",
                "StatefulSet",
                spec={"replicas": 2},
                status={
                    "replicas": 2,
                    "readyReplicas": 2,
                    "currentReplicas": 2,
                    "currentRevision": "db-7f",
                    "updateRevision": "db-8a",
                },
            ),
            Health(IN_PROGRESS, "Waiting for updated revision to match current"),
            id="statefulset-rolling",
        ),
        pytest.param(
            obj(
                "apps/v1",
                "StatefulSet",
                spec={"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}},
                status={"replicas": 3, "readyReplicas": 3, "updatedReplicas": 1},
            ),
            Health(CURRENT, "Partition rollout complete. updated: 1"),
            id="statefulset-partition",
        ),
        pytest.param(
            obj("apps/v1", "StatefulSet", spec={"updateStrategy": {"type": "OnDelete"}}),
            Health(CURRENT, "StatefulSet is using the ondelete update strategy"),
            id="statefulset-ondelete",
        ),
        # DaemonSet.
        pytest.param(
            obj(
                "apps/v1",
                "DaemonSet",
                status={
                    "observedGeneration": 2,
                    "desiredNumberScheduled": 3,
                    "currentNumberScheduled": 3,
                    "updatedNumberScheduled": 3,
                    "numberAvailable": 3,
                    "numberReady": 3,
                },
                generation=2,
            ),
            Health(CURRENT, "All replicas scheduled as expected. Replicas: 3"),
            id="daemonset-ready",
        ),
        pytest.param(
            obj(
                "apps/v1",
                "DaemonSet",
                status={
                    "observedGeneration": 2,
                    "desiredNumberScheduled": 3,
                    "currentNumberScheduled": 3,
                    "updatedNumberScheduled": 1,
                },
                generation=2,
            ),
            Health(IN_PROGRESS, "Updated: 1/3"),
            id="daemonset-updating",
        ),
        pytest.param(
            obj("apps/v1", "DaemonSet", status={}, generation=1),
            Health(IN_PROGRESS, "DaemonSet status.observedGeneration not found"),
            id="daemonset-not-observed",
        ),
        # ReplicaSet.
        pytest.param(
            obj(
                "apps/v1",
                "ReplicaSet",
                spec={"replicas": 2},
                status={
                    "replicas": 2,
                    "fullyLabeledReplicas": 2,
                    "readyReplicas": 2,
                    "availableReplicas": 2,
                },
            ),
            Health(CURRENT, "ReplicaSet is available. Replicas: 2"),
            id="replicaset-ready",
        ),
        pytest.param(
            obj(
                "apps/v1",
                "ReplicaSet",
                spec={"replicas": 2},
                status={
                    "replicas": 0,
                    "conditions": [cond("ReplicaFailure", "True", "FailedCreate", "quota")],
                },
            ),
            Health(IN_PROGRESS, "Replica Failure condition. Check Pods"),
            id="replicaset-failure",
        ),
        # Pod.
        pytest.param(
            pod("Running", cond("Ready", "True")), Health(CURRENT, "Pod is Ready"), id="pod-ready"
        ),
        pytest.param(
            pod("Running", cond("Ready", "False", "ContainersNotReady")),
            Health(IN_PROGRESS, "Pod is running but is not Ready"),
            id="pod-not-ready",
        ),
        pytest.param(
            crash_looping("app", "init"),
            Health(FAILED, "Containers in CrashLoop state: app,init"),
            id="pod-crash-loop",
        ),
        pytest.param(
            pod("Succeeded"), Health(CURRENT, "Pod has completed successfully"), id="pod-succeeded"
        ),
        pytest.param(
            pod("Failed"),
            Health(CURRENT, "Pod has completed, but not successfully"),
            id="pod-failed-is-done",
        ),
        pytest.param(
            pod("Pending", cond("PodScheduled", "True")),
            Health(IN_PROGRESS, "Pod is in the Pending phase"),
            id="pod-pending",
        ),
        pytest.param(
            unschedulable(created=ago(3600)),
            Health(FAILED, "Pod could not be scheduled"),
            id="pod-unschedulable",
        ),
        pytest.param(pod(None), Health(IN_PROGRESS, "Pod phase not available"), id="pod-no-phase"),
        pytest.param(
            pod("Lost"), Health(Status.UNKNOWN, "unknown phase Lost"), id="pod-unknown-phase"
        ),
        # PersistentVolumeClaim.
        pytest.param(
            obj("v1", "PersistentVolumeClaim", status={"phase": "Bound"}),
            Health(CURRENT, "PVC is Bound"),
            id="pvc-bound",
        ),
        pytest.param(
            obj("v1", "PersistentVolumeClaim", status={"phase": "Pending"}),
            Health(IN_PROGRESS, "PVC is not Bound. phase: Pending"),
            id="pvc-pending",
        ),
        # Service.
        pytest.param(
            obj("v1", "Service", spec={"type": "ClusterIP", "clusterIP": "10.96.0.12"}),
            Health(CURRENT, "Service is ready"),
            id="service",
        ),
        pytest.param(
            obj("v1", "Service", spec={"type": "LoadBalancer"}, status={"loadBalancer": {}}),
            Health(IN_PROGRESS, "ClusterIP not set. Service type: LoadBalancer"),
            id="service-load-balancer-without-ip",
        ),
        pytest.param(
            obj("v1", "Service", spec={"type": "LoadBalancer", "clusterIP": "10.96.0.13"}),
            Health(CURRENT, "Service is ready"),
            id="service-load-balancer-without-ingress",
        ),
        # Job.
        pytest.param(
            job(
                {"completions": 3, "parallelism": 1},
                {
                    "startTime": ago(30),
                    "completionTime": ago(1),
                    "succeeded": 3,
                    "conditions": [cond("SuccessCriteriaMet", "True"), cond("Complete", "True")],
                },
            ),
            Health(CURRENT, "Job Completed. succeeded: 3/3"),
            id="job-complete",
        ),
        pytest.param(
            job(
                {"backoffLimit": 0},
                {
                    "startTime": ago(30),
                    "failed": 1,
                    "conditions": [
                        cond("FailureTarget", "True", "BackoffLimitExceeded"),
                        cond("Failed", "True", "BackoffLimitExceeded", "Job has reached ..."),
                    ],
                },
            ),
            Health(FAILED, "Job Failed. failed: 1/1"),
            id="job-failed",
        ),
        pytest.param(
            job({"parallelism": 2}, {"startTime": ago(3), "active": 2}),
            Health(CURRENT, "Job in progress. success:0, active: 2, failed: 0"),
            id="job-running",
        ),
        pytest.param(job({}, {}), Health(IN_PROGRESS, "Job not started"), id="job-not-started"),
        pytest.param(
            job({"suspend": True}, {"conditions": [cond("Suspended", "True", "JobSuspended")]}),
            Health(CURRENT, "Job is suspended"),
            id="job-suspended",
        ),
        # PodDisruptionBudget.
        pytest.param(
            obj(
                "policy/v1",
                "PodDisruptionBudget",
                status={"observedGeneration": 1, "disruptionsAllowed": 1},
                generation=1,
            ),
            Health(CURRENT, "AllowedDisruptions has been computed."),
            id="pdb",
        ),
        pytest.param(
            obj("policy/v1", "PodDisruptionBudget", status={"observedGeneration": 1}, generation=2),
            Health(
                IN_PROGRESS,
                "PodDisruptionBudget generation is 2, but latest observed generation is 1",
            ),
            id="pdb-not-observed",
        ),
        # CustomResourceDefinition.
        pytest.param(
            crd(
                cond("NamesAccepted", "True", "NoConflicts"),
                cond("Established", "True", "InitialNamesAccepted"),
            ),
            Health(CURRENT, "CRD is established"),
            id="crd-established",
        ),
        pytest.param(
            crd(
                cond("NamesAccepted", "True", "NoConflicts"),
                cond("Established", "False", "Installing", "the initial names have been accepted"),
            ),
            Health(IN_PROGRESS, "Install in progress"),
            id="crd-installing",
        ),
        pytest.param(crd(), Health(IN_PROGRESS, "Install in progress"), id="crd-new"),
        pytest.param(
            crd(
                cond("NamesAccepted", "False", "KindConflict", '"Widget" is already in use'),
                cond("Established", "False", "NotAccepted", "not all names are accepted"),
            ),
            Health(FAILED, '"Widget" is already in use'),
            id="crd-names-rejected",
        ),
        # Always ready.
        pytest.param(
            obj("v1", "ConfigMap"), Health(CURRENT, "Resource is always ready"), id="configmap"
        ),
        pytest.param(obj("v1", "Secret"), Health(CURRENT, "Resource is always ready"), id="secret"),
        pytest.param(
            obj("batch/v1", "CronJob", status={"lastScheduleTime": ago(5)}),
            Health(CURRENT, "Resource is always ready"),
            id="cronjob",
        ),
        # The same kind name in another group follows the generic rules only.
        pytest.param(
            obj(
                "example.com/v1",
                "Deployment",
                status={"conditions": [cond("Ready", "False", "Waiting", "waiting for db")]},
            ),
            Health(IN_PROGRESS, "waiting for db"),
            id="other-group",
        ),
    ],
)
def test_compute(manifest: dict[str, Any] | None, expected: Health) -> None:
    assert compute(manifest) == expected


def test_an_unschedulable_pod_is_given_time_to_be_scheduled() -> None:
    # Built here, not at collection: the rule compares with the current time.
    assert compute(unschedulable(created=ago(2))) == Health(
        IN_PROGRESS, "Pod has not been scheduled"
    )
    assert compute(unschedulable(created=ago(20))) == Health(FAILED, "Pod could not be scheduled")


def test_statuses_are_kstatus_strings() -> None:
    assert [str(s) for s in Status] == [
        "Current",
        "InProgress",
        "Failed",
        "Terminating",
        "NotFound",
        "Unknown",
    ]


def test_a_failed_health_check_is_a_reconcile_error_with_flux_reason() -> None:
    error = HealthCheckError("timeout waiting for: [Deployment/apps/web status: 'InProgress']")

    assert isinstance(error, ReconcileError)
    assert error.reason == "HealthCheckFailed"
    assert error.message == "timeout waiting for: [Deployment/apps/web status: 'InProgress']"


# spec.healthCheckExprs, as Flux's CEL status evaluator reads them (fluxcd/pkg runtime/cel).

UNKNOWN = Status.UNKNOWN
# Flux's own test expressions: a Ready condition decides, a generation not observed waits.
READY_EXPRS = {
    "inProgress": "has(status.observedGeneration) && "
    "metadata.generation != status.observedGeneration",
    "failed": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')",
    "current": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
}
# What the three expressions answer, read from the object itself.
DATA_EXPRS = {"current": "data.current", "inProgress": "data.inProgress", "failed": "data.failed"}


def checks(api_version: str = "example.com/v1", kind: str = "Widget", **exprs: str) -> Any:
    return custom_checks(
        [CustomHealthCheck.model_validate({"apiVersion": api_version, "kind": kind, **exprs})]
    )


def widget(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", **fields}


def answers(current: bool, in_progress: bool, failed: bool) -> dict[str, Any]:
    data = {"current": current, "inProgress": in_progress, "failed": failed}
    return widget(metadata={"name": "x"}, data=data)


@pytest.mark.parametrize(
    ("exprs", "manifest", "expected"),
    [
        pytest.param(
            {"current": "true"},
            widget(metadata={"generation": 2}, status={"observedGeneration": 1}),
            Health(IN_PROGRESS, "Widget generation is 2, but latest observed generation is 1"),
            id="generation-not-observed-before-any-expression",
        ),
        pytest.param(
            DATA_EXPRS, answers(False, False, False), Health(IN_PROGRESS, ""), id="none-true"
        ),
        pytest.param(
            DATA_EXPRS, answers(True, True, True), Health(IN_PROGRESS, ""), id="in-progress-first"
        ),
        pytest.param(
            DATA_EXPRS, answers(True, False, True), Health(FAILED, ""), id="failed-before-current"
        ),
        pytest.param(DATA_EXPRS, answers(True, False, False), Health(CURRENT, ""), id="current"),
        pytest.param(
            {"current": "data.current"},
            answers(False, True, True),
            Health(IN_PROGRESS, ""),
            id="only-current-given",
        ),
        pytest.param(
            {**DATA_EXPRS, "current": "data.currentt"},
            answers(True, False, False),
            Health(
                UNKNOWN,
                "failed to evaluate the CEL expression 'data.currentt': no such key: currentt",
            ),
            id="current-cannot-be-evaluated",
        ),
        pytest.param(
            READY_EXPRS,
            widget(metadata={"name": "x"}, status={}),
            Health(
                UNKNOWN,
                f"failed to evaluate the CEL expression '{READY_EXPRS['failed']}': "
                "no such key: conditions",
            ),
            id="no-conditions-yet",
        ),
        # The pitfall Flux's docs warn of: all() holds on an empty list.
        pytest.param(
            READY_EXPRS,
            widget(metadata={"generation": 1}, status={"conditions": []}),
            Health(FAILED, ""),
            id="empty-conditions-all-is-true",
        ),
        pytest.param(
            READY_EXPRS,
            widget(
                metadata={"generation": 1},
                status={"observedGeneration": 1, "conditions": [cond("Ready", "True")]},
            ),
            Health(CURRENT, ""),
            id="ready",
        ),
    ],
)
def test_health_check_exprs_decide_the_health_of_their_kind(
    exprs: dict[str, str], manifest: dict[str, Any], expected: Health
) -> None:
    assert compute(manifest, checks(**exprs)) == expected


def test_health_check_exprs_replace_every_rule_of_their_kind_only() -> None:
    # Not rolled out and stalled: kstatus says Failed; the expression alone decides.
    stalled = deployment(
        {"replicas": 2}, {"conditions": [cond("Stalled", "True", "Broken", "broken")]}
    )
    own = checks("apps/v1", "Deployment", current="metadata.name == 'x'")

    assert compute(stalled, own) == Health(CURRENT, "")
    # Another version of the same group and kind is the same kind.
    assert compute({**stalled, "apiVersion": "apps/v1beta2"}, own) == Health(CURRENT, "")
    assert compute(stalled, checks(current="true")) == Health(FAILED, "broken")
    assert compute(stalled) == Health(FAILED, "broken")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        pytest.param(
            [{"apiVersion": "example.com/v1", "kind": "Widget", "current": "status.ready =="}],
            "failed to create custom status evaluator for healthchecks[0]: failed to parse the "
            "expression Current: failed to parse the CEL expression 'status.ready ==': "
            "ERROR: <input>:1:16: Syntax error",
            id="current",
        ),
        pytest.param(
            [
                {"apiVersion": "example.com/v1", "kind": "Gadget", "current": "true"},
                {
                    "apiVersion": "example.com/v1",
                    "kind": "Widget",
                    "current": "true",
                    "failed": "has(status)",
                },
            ],
            "failed to create custom status evaluator for healthchecks[1]: failed to parse the "
            "expression Failed: failed to parse the CEL expression 'has(status)': "
            "ERROR: <input>:1:5: invalid argument to has() macro",
            id="failed",
        ),
        pytest.param(
            [{"apiVersion": "example.com/v1", "kind": "Widget", "current": ""}],
            "failed to create custom status evaluator for healthchecks[0]: "
            "expression Current not specified",
            id="current-empty",
        ),
        pytest.param(
            [
                {"apiVersion": "example.com/v1", "kind": "Widget", "current": "true"},
                {"apiVersion": "example.com/v2", "kind": "Widget", "current": "false"},
            ],
            "duplicate custom health check for GroupKind Widget.example.com at healthchecks[1]",
            id="duplicate-kind",
        ),
    ],
)
def test_health_check_exprs_that_do_not_compile_are_refused_in_flux_words(
    items: list[dict[str, str]], message: str
) -> None:
    with pytest.raises(InvalidExpression) as caught:
        custom_checks([CustomHealthCheck.model_validate(item) for item in items])

    assert str(caught.value).startswith(message)
