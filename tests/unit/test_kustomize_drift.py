"""``spec.driftDetection`` of a Kustomization (a weir extension): the mode, when a run only
reports drift, and the ``Drifted`` message naming each object and field, capped in size."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controllers import conditions as cond
from controllers.inventory import ObjectRef
from kustomize.api_v1 import Kustomization
from kustomize.apply.changeset import Action
from kustomize.apply.manager import ObjectDiff
from kustomize.drift import FIELDS_SHOWN, ObjectDrift, drift_message, drifts_of
from kustomize.kustomization import KustomizeRunState, _applied_already

WEB = ObjectRef(namespace="apps", name="web", group="apps", kind="Deployment", version="v1")
ROLE = ObjectRef(namespace="", name="reader", group="rbac.authorization.k8s.io", kind="ClusterRole")
REVISION = "main@sha1:0123456789abcdef"


def kustomization(**spec: Any) -> Kustomization:
    return Kustomization.from_dict(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": "apps"},
            "spec": {
                "interval": "10m",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "app"},
                **spec,
            },
        }
    )


def deployment(replicas: int, image: str = "nginx:1.25") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps", "resourceVersion": "7"},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
        "status": {"replicas": replicas},
    }


# The mode


def test_a_flux_manifest_without_the_setting_corrects_drift_and_stays_as_written() -> None:
    obj = kustomization()

    assert obj.drift_mode == "enabled"
    assert "driftDetection" not in obj.to_dict()["spec"]


@pytest.mark.parametrize(
    ("spec", "mode"),
    [
        pytest.param({}, "enabled", id="unset"),
        pytest.param({"driftDetection": {}}, "enabled", id="empty"),
        pytest.param({"driftDetection": {"mode": "enabled"}}, "enabled", id="enabled"),
        pytest.param({"driftDetection": {"mode": "warn"}}, "warn", id="warn"),
    ],
)
def test_drift_mode(spec: dict[str, Any], mode: str) -> None:
    obj = kustomization(**spec)

    assert obj.drift_mode == mode
    assert obj.to_dict()["spec"].get("driftDetection") == spec.get("driftDetection")


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("disabled", id="helmrelease-only-mode"),
        pytest.param("Warn", id="wrong-case"),
    ],
)
def test_unknown_drift_modes_are_rejected(mode: str) -> None:
    with pytest.raises(ValidationError):
        kustomization(driftDetection={"mode": mode})


# When a run only reports


def snapshot(digest: str, status: str) -> dict[str, Any]:
    return {
        "digest": digest,
        "firstReconciled": "2026-01-01T00:00:00Z",
        "lastReconciled": "2026-01-01T00:00:00Z",
        "lastReconciledDuration": "1s",
        "lastReconciledStatus": status,
        "totalReconciliations": 1,
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param({}, False, id="never-applied"),
        pytest.param({"lastAppliedRevision": "main@sha1:old"}, False, id="new-revision"),
        pytest.param({"lastAppliedRevision": REVISION}, True, id="same-revision-no-history"),
        pytest.param(
            {
                "lastAppliedRevision": REVISION,
                "history": [snapshot("sha256:built", "ReconciliationSucceeded")],
            },
            True,
            id="same-revision-same-objects",
        ),
        pytest.param(
            {
                "lastAppliedRevision": REVISION,
                "history": [snapshot("sha256:before-a-new-patch", "ReconciliationSucceeded")],
            },
            False,
            id="same-revision-objects-changed-by-the-spec",
        ),
        pytest.param(
            {
                "lastAppliedRevision": REVISION,
                "history": [
                    snapshot("sha256:other", "HealthCheckFailed"),
                    snapshot("sha256:built", "ReconciliationSucceeded"),
                ],
            },
            True,
            id="last-success-is-what-counts",
        ),
        pytest.param(
            {
                "lastAppliedRevision": REVISION,
                "history": [
                    snapshot("sha256:built", "ReconciliationFailed"),
                    snapshot("sha256:older", "ReconciliationSucceeded"),
                ],
            },
            False,
            id="objects-never-applied-successfully",
        ),
    ],
)
def test_applied_already(status: dict[str, Any], expected: bool) -> None:
    obj = kustomization(driftDetection={"mode": "warn"})
    obj = Kustomization.from_dict({**obj.to_dict(), "status": status})
    run = KustomizeRunState(revision=REVISION, digest="sha256:built")

    assert _applied_already(obj, run) is expected


# What drifted


def test_drifts_of_names_the_fields_and_the_removed_objects() -> None:
    diffs = [
        ObjectDiff(WEB, Action.CONFIGURED, deployment(2), deployment(5), deployment(2)),
        ObjectDiff(ROLE, Action.CREATED, {}),
        ObjectDiff(ObjectRef("apps", "api", "apps", "Deployment"), Action.UNCHANGED, deployment(2)),
        ObjectDiff(ObjectRef("apps", "db", "apps", "Deployment"), Action.SKIPPED, deployment(2)),
    ]

    assert drifts_of(diffs) == [
        ObjectDrift(WEB, ("/spec/replicas",)),
        ObjectDrift(ROLE, removed=True),
    ]


def test_drifts_of_lists_each_field_once_and_never_status() -> None:
    live = deployment(5, image="nginx:hotfix")
    wanted = deployment(2)
    diffs = [ObjectDiff(WEB, Action.CONFIGURED, wanted, live, wanted)]

    assert drifts_of(diffs) == [
        ObjectDrift(WEB, ("/spec/replicas", "/spec/template/spec/containers/0/image"))
    ]


def test_the_message_names_each_object_and_field() -> None:
    drifts = [ObjectDrift(WEB, ("/spec/replicas",)), ObjectDrift(ROLE, removed=True)]

    assert drift_message(REVISION, drifts) == (
        f"Cluster state has drifted from revision {REVISION}:\n"
        "Deployment/apps/web changed: /spec/replicas\n"
        "ClusterRole/reader removed"
    )


def test_the_fields_of_one_object_are_capped() -> None:
    fields = tuple(f"/data/key{i}" for i in range(FIELDS_SHOWN + 3))

    line = drift_message(REVISION, [ObjectDrift(WEB, fields)]).splitlines()[1]

    shown = ", ".join(fields[:FIELDS_SHOWN])
    assert line == f"Deployment/apps/web changed: {shown} and 3 more"


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param(cond.MAX_MESSAGE, id="flux-condition-limit"),
        pytest.param(200, id="small"),
    ],
)
def test_the_message_is_trimmed_as_flux_trims_condition_messages(limit: int) -> None:
    drifts = [
        ObjectDrift(ObjectRef("apps", f"web-{i:05}", "apps", "Deployment"), ("/spec/replicas",))
        for i in range(2000)
    ]

    message = drift_message(REVISION, drifts, limit=limit)

    assert len(message) == limit
    assert message.endswith("...")
    assert message.startswith(f"Cluster state has drifted from revision {REVISION}:\n")


def test_a_message_within_the_limit_is_not_trimmed() -> None:
    drifts = [ObjectDrift(WEB, ("/spec/replicas",))]
    whole = drift_message(REVISION, drifts)

    assert drift_message(REVISION, drifts, limit=len(whole)) == whole
    assert not whole.endswith("...")
