"""The pure parts of the apply engine: stages, change sets, takeover, drift, masking."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from controllers.inventory import ObjectRef
from controllers.kube import ApiError
from controllers.ssa import is_immutable, masked, normalize
from kustomize.apply.changeset import Action, ChangeSet, ChangeSetEntry
from kustomize.apply.managedfields import _union_fields, take_over_managed_fields
from kustomize.apply.manager import Stage, _drifted, stage_of


@pytest.mark.parametrize(
    ("api_version", "kind", "stage"),
    [
        pytest.param(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", Stage.DEFINITIONS, id="crd"
        ),
        pytest.param("v1", "Namespace", Stage.DEFINITIONS, id="namespace"),
        pytest.param(
            "rbac.authorization.k8s.io/v1", "ClusterRole", Stage.DEFINITIONS, id="clusterrole"
        ),
        pytest.param(
            "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", Stage.RESOURCES, id="binding"
        ),
        pytest.param("example.com/v1", "Namespace", Stage.RESOURCES, id="namespace-lookalike"),
        pytest.param("storage.k8s.io/v1", "StorageClass", Stage.CLASSES, id="storageclass"),
        pytest.param("networking.k8s.io/v1", "IngressClass", Stage.CLASSES, id="ingressclass"),
        pytest.param("scheduling.k8s.io/v1", "PriorityClass", Stage.CLASSES, id="priorityclass"),
        pytest.param(
            "gateway.networking.k8s.io/v1", "GatewayClass", Stage.CLASSES, id="custom-class"
        ),
        pytest.param("apps/v1", "Deployment", Stage.RESOURCES, id="deployment"),
        pytest.param("example.com/v1", "Widget", Stage.RESOURCES, id="custom-resource"),
    ],
)
def test_objects_are_staged_as_flux_stages_them(api_version: str, kind: str, stage: Stage) -> None:
    assert stage_of({"apiVersion": api_version, "kind": kind}) is stage


def test_stages_run_in_fluxs_order() -> None:
    assert list(Stage) == [Stage.DEFINITIONS, Stage.CLASSES, Stage.RESOURCES]


def test_a_change_set_reads_one_line_per_object() -> None:
    change_set = ChangeSet(
        [
            ChangeSetEntry(ObjectRef("", "apps", "", "Namespace", "v1"), Action.CREATED),
            ChangeSetEntry(ObjectRef("apps", "web", "", "Service", "v1"), Action.UNCHANGED),
            ChangeSetEntry(ObjectRef("apps", "web", "apps", "Deployment", "v1"), Action.CONFIGURED),
            ChangeSetEntry(ObjectRef("apps", "old", "", "ConfigMap", "v1"), Action.SKIPPED),
            ChangeSetEntry(ObjectRef("apps", "gone", "", "Secret", "v1"), Action.DELETED),
        ]
    )

    assert str(change_set) == (
        "Namespace/apps created\n"
        "Service/apps/web unchanged\n"
        "Deployment/apps/web configured\n"
        "ConfigMap/apps/old skipped\n"
        "Secret/apps/gone deleted"
    )
    assert change_set.changes() == (
        "Namespace/apps created\nDeployment/apps/web configured\nSecret/apps/gone deleted"
    )
    assert len(change_set) == 5
    assert change_set.refs()[2].id == "apps_web_apps_Deployment"


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


DATA_A: dict[str, Any] = {"f:data": {"f:a": {}}}
DATA_B: dict[str, Any] = {"f:data": {"f:b": {}}}
LABEL: dict[str, Any] = {"f:metadata": {"f:labels": {"f:app": {}}}}


@pytest.mark.parametrize(
    ("entries", "taken"),
    [
        pytest.param(
            [entry("kubectl-client-side-apply", "Update", DATA_A)],
            [entry("kustomize-controller", "Apply", DATA_A)],
            id="kubectl-renamed",
        ),
        pytest.param(
            [
                entry("kubectl-client-side-apply", "Update", DATA_A),
                entry("kustomize-controller", "Apply", DATA_B),
            ],
            [entry("kustomize-controller", "Apply", {"f:data": {"f:a": {}, "f:b": {}}})],
            id="merged-into-ours",
        ),
        pytest.param(
            [
                entry("before-first-apply", "Update", LABEL),
                entry("kube-controller-manager", "Update", DATA_B),
                entry("kubectl", "Apply", DATA_A),
            ],
            [
                entry("kube-controller-manager", "Update", DATA_B),
                entry("kustomize-controller", "Apply", {**LABEL, **DATA_A}),
            ],
            id="several-others-kept",
        ),
        pytest.param(
            [entry("kustomize-controller", "Update", DATA_A)],
            [entry("kustomize-controller", "Apply", DATA_A)],
            id="our-old-updates",
        ),
        pytest.param(
            [entry("kubectl-edit", "Update", DATA_A, subresource="status")],
            None,
            id="subresource-left",
        ),
        pytest.param([entry("before-first-apply", "Apply", DATA_A)], None, id="wrong-operation"),
        pytest.param([entry("kustomize-controller", "Apply", DATA_A)], None, id="only-ours"),
        pytest.param([entry("helm", "Update", DATA_A)], None, id="another-manager"),
    ],
)
def test_managed_fields_are_taken_over_as_flux_does(
    entries: list[dict[str, Any]], taken: list[dict[str, Any]] | None
) -> None:
    assert take_over_managed_fields(entries, "kustomize-controller") == taken


@pytest.mark.parametrize(
    ("first", "second", "union"),
    [
        pytest.param({}, {"f:a": {}}, {"f:a": {}}, id="empty"),
        pytest.param({"f:a": {}}, {"f:b": {}}, {"f:a": {}, "f:b": {}}, id="disjoint"),
        pytest.param(
            {"f:a": {"f:x": {}}}, {"f:a": {"f:y": {}}}, {"f:a": {"f:x": {}, "f:y": {}}}, id="deep"
        ),
        pytest.param({"f:a": {}}, {"f:a": {"f:x": {}}}, {"f:a": {".": {}, "f:x": {}}}, id="leaf"),
        pytest.param(
            {"f:a": {".": {}, "f:x": {}}},
            {"f:a": {"f:y": {}}},
            {"f:a": {".": {}, "f:x": {}, "f:y": {}}},
            id="member",
        ),
    ],
)
def test_field_sets_unite(
    first: dict[str, Any], second: dict[str, Any], union: dict[str, Any]
) -> None:
    assert _union_fields(first, second) == union
    assert _union_fields(second, first) == union


LIVE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "labels": {"a": "1"}, "resourceVersion": "7", "managedFields": []},
    "data": {"k": "v"},
}


@pytest.mark.parametrize(
    ("change", "drifted"),
    [
        pytest.param({}, False, id="same"),
        pytest.param({"metadata": {**LIVE["metadata"], "resourceVersion": "8"}}, False, id="rv"),
        pytest.param({"metadata": {**LIVE["metadata"], "labels": {"a": "2"}}}, True, id="label"),
        pytest.param(
            {"metadata": {**LIVE["metadata"], "annotations": {"x": "y"}}}, True, id="annotation"
        ),
        pytest.param(
            {"metadata": {**LIVE["metadata"], "annotations": {}}}, False, id="empty-annotations"
        ),
        pytest.param({"data": {"k": "w"}}, True, id="data"),
        pytest.param({"status": {"phase": "x"}}, False, id="status"),
    ],
)
def test_drift_is_detected_as_flux_does(change: dict[str, Any], drifted: bool) -> None:
    assert _drifted(LIVE, {**LIVE, **change}) is drifted


def test_a_missing_object_has_drifted() -> None:
    assert _drifted(None, LIVE)


@pytest.mark.parametrize(
    ("status", "message", "immutable"),
    [
        pytest.param(422, "spec.selector: field is immutable", True, id="invalid"),
        pytest.param(409, "the object has been modified", True, id="conflict"),
        pytest.param(400, "admission webhook denied: spec.x is immutable", True, id="webhook"),
        pytest.param(403, "forbidden", False, id="forbidden"),
        pytest.param(500, "failed to create typed patch object", False, id="bad-type"),
    ],
)
def test_immutable_errors_as_flux_detects_them(status: int, message: str, immutable: bool) -> None:
    assert is_immutable(ApiError(status, "", message)) is immutable


def test_secret_values_are_masked_in_messages() -> None:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "data": {"token": base64.b64encode(b"hunter22").decode(), "pin": "MTI="},
        "stringData": {"password": "correct horse"},
    }
    message = (
        'Secret "s" is invalid: token "hunter22", encoded '
        f'{secret["data"]["token"]}, pin "12", password correct horse'
    )

    shown = masked(message, secret)

    assert shown == 'Secret "s" is invalid: token "***", encoded ***, pin "***", password ***'


def test_other_kinds_are_not_masked() -> None:
    configmap = {"kind": "ConfigMap", "data": {"k": "visible"}}

    assert masked("value visible", configmap) == "value visible"


def test_objects_are_normalized_as_flux_does() -> None:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "creationTimestamp": None},
        "data": {"a": "YQ=="},
        "stringData": {"b": "b"},
        "status": {},
    }
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}
        },
    }
    crd: dict[str, Any] = {"kind": "CustomResourceDefinition", "metadata": {}, "status": {"x": 1}}

    for obj in (secret, deployment, crd):
        normalize(obj)

    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": "YQ==", "b": "Yg=="},
    }
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"containerPort": 80, "protocol": "TCP"}]
    assert crd["status"] == {"x": 1}
