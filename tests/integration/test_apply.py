"""The server-side apply engine and pruning, against the real API server."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper
from controllers.inventory import ObjectRef, diff, entries_for, merge
from controllers.kube import KubeClient
from kustomize.apply.changeset import ChangeSet
from kustomize.apply.errors import ApplyError, PruneError
from kustomize.apply.manager import ApplyOptions, ResourceManager
from tests.integration.kinds import NAMESPACE

pytestmark = pytest.mark.integration

CONFIGMAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
CLUSTER_ROLE = ResourceInfo(
    group="rbac.authorization.k8s.io",
    version="v1",
    kind="ClusterRole",
    plural="clusterroles",
    namespaced=False,
)
CRD = ResourceInfo(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
)
OWNER = {
    "kustomize.toolkit.fluxcd.io/name": "apps",
    "kustomize.toolkit.fluxcd.io/namespace": "flux",
}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def configmap(
    name: str, namespace: str, data: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def deployment(name: str, namespace: str, image: str, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 80}]}
                    ]
                },
            },
            **spec,
        },
    }


def widget_crd(group: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def lines(change_set: ChangeSet) -> list[str]:
    return str(change_set).splitlines()


@pytest.fixture
def manager(kube: KubeClient) -> ResourceManager:
    return ResourceManager(kube, RestMapper(kube), owner_name="apps", owner_namespace="flux")


@pytest.fixture
async def cluster_scoped(kube: KubeClient) -> AsyncIterator[Callable[[ResourceInfo, str], str]]:
    """Registers cluster-scoped objects a test creates; deletes them afterwards."""
    created: list[tuple[ResourceInfo, str]] = []

    def register(info: ResourceInfo, name: str) -> str:
        created.append((info, name))
        return name

    yield register
    for info, name in reversed(created):
        await kube.delete(info, None, name)


async def test_first_apply_creates_then_nothing_changes_then_a_change_configures(
    kube: KubeClient, manager: ResourceManager, namespace: str
) -> None:
    objects = [
        deployment("web", namespace, "nginx:1.27", replicas=2),
        configmap("settings", namespace, {"color": "blue"}),
    ]

    first = await manager.apply_all_staged(objects)
    live = await kube.get(CONFIGMAP, namespace, "settings")
    second = await manager.apply_all_staged(objects)
    unchanged = await kube.get(CONFIGMAP, namespace, "settings")
    objects[1]["data"]["color"] = "green"
    third = await manager.apply_all_staged(objects)

    assert lines(first) == [
        f"ConfigMap/{namespace}/settings created",
        f"Deployment/{namespace}/web created",
    ]
    assert lines(second) == [
        f"ConfigMap/{namespace}/settings unchanged",
        f"Deployment/{namespace}/web unchanged",
    ]
    assert second.changes() == ""
    assert unchanged["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert third.changes() == f"ConfigMap/{namespace}/settings configured"
    assert (await kube.get(CONFIGMAP, namespace, "settings"))["data"] == {"color": "green"}
    assert live["metadata"]["labels"] == OWNER
    managers = {(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]}
    assert managers == {("kustomize-controller", "Apply")}
    web = await kube.get(DEPLOYMENT, namespace, "web")
    assert web["spec"]["replicas"] == 2


async def test_a_crd_namespace_and_custom_resource_apply_in_one_call(
    kube: KubeClient,
    manager: ResourceManager,
    cluster_scoped: Callable[[ResourceInfo, str], str],
) -> None:
    group = f"{uuid.uuid4().hex[:8]}.weir.example.com"
    crd = widget_crd(group)
    cluster_scoped(CRD, crd["metadata"]["name"])
    ns = cluster_scoped(NAMESPACE, unique("stage"))
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "gear", "namespace": ns},
        "spec": {"size": 3},
    }
    objects = [
        widget,
        configmap("settings", ns, {"a": "1"}),
        crd,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    ]

    applied = await manager.apply_all_staged(objects)
    again = await manager.apply_all_staged(objects)

    assert lines(applied) == [
        f"CustomResourceDefinition/widgets.{group} created",
        f"Namespace/{ns} created",
        f"ConfigMap/{ns}/settings created",
        f"Widget/{ns}/gear created",
    ]
    assert again.changes() == ""
    widgets = ResourceInfo(group=group, version="v1", kind="Widget", plural="widgets")
    assert (await kube.get(widgets, ns, "gear"))["spec"] == {"size": 3}
    assert [entry["id"] for entry in entries_for(applied.refs())] == [
        f"_widgets.{group}_apiextensions.k8s.io_CustomResourceDefinition",
        f"_{ns}__Namespace",
        f"{ns}_settings__ConfigMap",
        f"{ns}_gear_{group}_Widget",
    ]


async def test_one_invalid_object_applies_nothing_and_is_named(
    kube: KubeClient,
    manager: ResourceManager,
    namespace: str,
    cluster_scoped: Callable[[ResourceInfo, str], str],
) -> None:
    role = cluster_scoped(CLUSTER_ROLE, unique("weir-reader"))
    objects = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        },
        configmap("settings", namespace, {"a": "1"}),
        deployment("broken", namespace, "nginx", replicas="three"),
    ]

    with pytest.raises(ApplyError) as failure:
        await manager.apply_all_staged(objects)

    assert failure.value.reason == "ReconciliationFailed"
    assert failure.value.message.startswith(f"Deployment/{namespace}/broken dry-run failed")
    assert ".spec.replicas" in failure.value.message
    assert len(failure.value.change_set) == 0
    assert await kube.get_or_none(CLUSTER_ROLE, None, role) is None
    assert await kube.get_or_none(CONFIGMAP, namespace, "settings") is None


async def test_an_unknown_kind_is_named(manager: ResourceManager, namespace: str) -> None:
    gadget = {
        "apiVersion": "nowhere.example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g", "namespace": namespace},
    }

    with pytest.raises(ApplyError) as failure:
        await manager.apply_all_staged([gadget, configmap("settings", namespace, {})])

    assert failure.value.message == (
        f'Gadget/{namespace}/g dry-run failed: no matches for kind "Gadget" in version '
        '"nowhere.example.com/v1"'
    )


async def kubectl_client_side_apply(kube: KubeClient, obj: dict[str, Any]) -> None:
    """What ``kubectl apply`` (client-side) leaves: its manager and the annotation."""
    written = {
        **obj,
        "metadata": {**obj["metadata"], "annotations": {LAST_APPLIED: json.dumps(obj)}},
    }
    await kube.create(CONFIGMAP, written, field_manager="kubectl-client-side-apply")


@pytest.mark.parametrize(
    ("annotations", "data", "managers"),
    [
        pytest.param(
            {},
            {"color": "green"},
            {("kustomize-controller", "Apply")},
            id="override-takes-over",
        ),
        pytest.param(
            {"kustomize.toolkit.fluxcd.io/ssa": "Merge"},
            {"color": "green", "legacy": "yes"},
            {("kustomize-controller", "Apply"), ("kubectl-client-side-apply", "Update")},
            id="merge-keeps-theirs",
        ),
    ],
)
async def test_fields_kubectl_applied_are_taken_over(
    kube: KubeClient,
    manager: ResourceManager,
    namespace: str,
    annotations: dict[str, str],
    data: dict[str, str],
    managers: set[tuple[str, str]],
) -> None:
    await kubectl_client_side_apply(
        kube, configmap("settings", namespace, {"color": "blue", "legacy": "yes"})
    )
    desired = configmap("settings", namespace, {"color": "green"}, annotations)

    applied = await manager.apply_all_staged([desired])
    again = await manager.apply_all_staged([desired])

    live = await kube.get(CONFIGMAP, namespace, "settings")
    assert str(applied) == f"ConfigMap/{namespace}/settings configured"
    assert str(again) == f"ConfigMap/{namespace}/settings unchanged"
    assert live["data"] == data
    assert {(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]} == managers
    assert (LAST_APPLIED in (live["metadata"].get("annotations") or {})) == bool(annotations)


SSA = "kustomize.toolkit.fluxcd.io/ssa"


@pytest.mark.parametrize(
    ("annotation", "existing_action", "missing_action"),
    [
        pytest.param({SSA: "IfNotPresent"}, "skipped", "created", id="if-not-present"),
        pytest.param({SSA: "ifnotpresent"}, "skipped", "created", id="any-case"),
        pytest.param({SSA: "Ignore"}, "skipped", "skipped", id="ignore"),
        pytest.param({SSA: "Override"}, "configured", "created", id="override"),
        pytest.param(
            {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
            "skipped",
            "skipped",
            id="reconcile-disabled",
        ),
    ],
)
async def test_opting_out_per_object(
    kube: KubeClient,
    manager: ResourceManager,
    namespace: str,
    annotation: dict[str, str],
    existing_action: str,
    missing_action: str,
) -> None:
    await kube.create(CONFIGMAP, configmap("existing", namespace, {"owner": "someone else"}))
    objects = [
        configmap("existing", namespace, {"owner": "us"}, annotation),
        configmap("missing", namespace, {"owner": "us"}, annotation),
    ]

    applied = await manager.apply_all_staged(objects)

    assert lines(applied) == [
        f"ConfigMap/{namespace}/existing {existing_action}",
        f"ConfigMap/{namespace}/missing {missing_action}",
    ]
    existing = await kube.get(CONFIGMAP, namespace, "existing")
    assert existing["data"]["owner"] == (
        "us" if existing_action == "configured" else "someone else"
    )
    missing = await kube.get_or_none(CONFIGMAP, namespace, "missing")
    assert (missing is not None) == (missing_action == "created")


@pytest.mark.parametrize(
    ("options", "annotations"),
    [
        pytest.param(ApplyOptions(force=True), {}, id="force-option"),
        pytest.param(
            ApplyOptions(), {"kustomize.toolkit.fluxcd.io/force": "Enabled"}, id="annotation"
        ),
    ],
)
async def test_force_recreates_an_object_on_an_immutable_field_change(
    kube: KubeClient,
    manager: ResourceManager,
    namespace: str,
    options: ApplyOptions,
    annotations: dict[str, str],
) -> None:
    frozen = configmap("frozen", namespace, {"v": "1"}, annotations) | {"immutable": True}
    await manager.apply_all_staged([frozen])
    before = await kube.get(CONFIGMAP, namespace, "frozen")
    frozen["data"] = {"v": "2"}

    applied = await manager.apply_all_staged([frozen], options)

    after = await kube.get(CONFIGMAP, namespace, "frozen")
    assert str(applied) == f"ConfigMap/{namespace}/frozen created"
    assert after["data"] == {"v": "2"}
    assert after["metadata"]["uid"] != before["metadata"]["uid"]


async def test_without_force_an_immutable_field_change_fails(
    kube: KubeClient, manager: ResourceManager, namespace: str
) -> None:
    frozen = configmap("frozen", namespace, {"v": "1"}) | {"immutable": True}
    await manager.apply_all_staged([frozen])
    frozen["data"] = {"v": "2"}

    with pytest.raises(ApplyError) as failure:
        await manager.apply_all_staged([frozen, configmap("other", namespace, {})])

    assert failure.value.message.startswith(
        f"ConfigMap/{namespace}/frozen dry-run failed (Invalid): "
    )
    assert "field is immutable" in failure.value.message
    assert (await kube.get(CONFIGMAP, namespace, "frozen"))["data"] == {"v": "1"}
    assert await kube.get_or_none(CONFIGMAP, namespace, "other") is None


async def test_prune_deletes_only_what_left_the_inventory_and_is_ours(
    kube: KubeClient, manager: ResourceManager, namespace: str
) -> None:
    kept = {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
    first = await manager.apply_all_staged(
        [
            configmap("stays", namespace, {}),
            configmap("leaves", namespace, {}),
            configmap("protected", namespace, {}, kept),
            configmap("adopted", namespace, {}),
        ]
    )
    # Someone else took "adopted" over since: another Kustomization's labels.
    other = {"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "other"}}}
    await kube.patch(CONFIGMAP, namespace, "adopted", other)
    second = await manager.apply_all_staged([configmap("stays", namespace, {})])

    stale = diff(entries_for(first.refs()), entries_for(second.refs()))
    pruned = await manager.prune(stale)
    again = await manager.prune(stale)

    assert lines(pruned) == [
        f"ConfigMap/{namespace}/protected skipped",
        f"ConfigMap/{namespace}/leaves deleted",
        f"ConfigMap/{namespace}/adopted skipped",
    ]
    assert lines(again) == lines(pruned)
    names = {item["metadata"]["name"] for item in (await kube.list(CONFIGMAP, namespace))["items"]}
    assert names >= {"stays", "protected", "adopted"}
    assert "leaves" not in names


async def test_failed_deletions_stay_in_the_inventory(
    kube: KubeClient, manager: ResourceManager, namespace: str
) -> None:
    applied = await manager.apply_all_staged([configmap("leaves", namespace, {})])
    vanished = ObjectRef(namespace, "g", "gone.example.com", "Gadget", "v1")
    old = entries_for([*applied.refs(), vanished])

    with pytest.raises(PruneError) as failure:
        await manager.prune(diff(old, []))

    assert failure.value.reason == "PruneFailed"
    assert failure.value.survivors == [vanished]
    assert failure.value.message == (
        f'delete failed, errors: Gadget/{namespace}/g query failed: no matches for kind "Gadget" '
        'in version "gone.example.com/v1"'
    )
    assert lines(failure.value.change_set) == [
        f"Gadget/{namespace}/g unknown",
        f"ConfigMap/{namespace}/leaves deleted",
    ]
    assert merge([], failure.value.survivors) == [
        {"id": f"{namespace}_g_gone.example.com_Gadget", "v": "v1"}
    ]
    assert await kube.get_or_none(CONFIGMAP, namespace, "leaves") is None


async def test_a_definition_that_never_becomes_ready_fails_its_stage(
    kube: KubeClient,
    manager: ResourceManager,
    namespace: str,
    cluster_scoped: Callable[[ResourceInfo, str], str],
) -> None:
    group = f"{uuid.uuid4().hex[:8]}.weir.example.com"
    accepted = widget_crd(group)
    # Same kind, another plural: the API server refuses its names (KindConflict).
    conflicting = widget_crd(group)
    conflicting["metadata"]["name"] = f"gizmos.{group}"
    conflicting["spec"]["names"] = {"plural": "gizmos", "kind": "Widget"}
    cluster_scoped(CRD, accepted["metadata"]["name"])
    cluster_scoped(CRD, conflicting["metadata"]["name"])
    await manager.apply_all_staged([accepted])

    with pytest.raises(ApplyError) as failure:
        await manager.apply_all_staged([accepted, conflicting, configmap("c", namespace, {})])

    assert failure.value.message.startswith(
        "failed early due to stalled resources: "
        f"[CustomResourceDefinition/gizmos.{group} status: 'Failed': "
    )
    assert lines(failure.value.change_set) == [
        f"CustomResourceDefinition/gizmos.{group} created",
        f"CustomResourceDefinition/widgets.{group} unchanged",
    ]
    assert await kube.get_or_none(CONFIGMAP, namespace, "c") is None
