"""Inventory entries in Flux's format, their order, and the stale set between two of them."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.inventory import ObjectRef, diff, entries_for, merge, refs_from_entries, sort_key


def obj(api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    metadata = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


@pytest.mark.parametrize(
    ("manifest", "entry"),
    [
        pytest.param(
            obj("apps/v1", "Deployment", "podinfo", "default"),
            {"id": "default_podinfo_apps_Deployment", "v": "v1"},
            id="namespaced",
        ),
        pytest.param(
            obj("v1", "ConfigMap", "settings", "default"),
            {"id": "default_settings__ConfigMap", "v": "v1"},
            id="core-group",
        ),
        pytest.param(
            obj("v1", "Namespace", "podinfo"),
            {"id": "_podinfo__Namespace", "v": "v1"},
            id="cluster-scoped-core",
        ),
        pytest.param(
            obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"),
            {"id": "_widgets.example.com_apiextensions.k8s.io_CustomResourceDefinition", "v": "v1"},
            id="cluster-scoped",
        ),
        pytest.param(
            obj("rbac.authorization.k8s.io/v1", "ClusterRole", "system:aggregate-to-view"),
            {"id": "_system__aggregate-to-view_rbac.authorization.k8s.io_ClusterRole", "v": "v1"},
            id="rbac-colons",
        ),
        pytest.param(
            obj("rbac.authorization.k8s.io/v1", "RoleBinding", "a:b", "team"),
            {"id": "team_a__b_rbac.authorization.k8s.io_RoleBinding", "v": "v1"},
            id="rbac-namespaced-colons",
        ),
        pytest.param(
            obj("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps"),
            {"id": "apps_podinfo_helm.toolkit.fluxcd.io_HelmRelease", "v": "v2"},
            id="custom-resource",
        ),
        pytest.param(
            obj("autoscaling/v2", "HorizontalPodAutoscaler", "web", "apps"),
            {"id": "apps_web_autoscaling_HorizontalPodAutoscaler", "v": "v2"},
            id="version-kept-apart",
        ),
    ],
)
def test_entries_use_fluxs_id_format(manifest: dict[str, Any], entry: dict[str, str]) -> None:
    ref = ObjectRef.of(manifest)

    assert entries_for([ref]) == [entry]
    assert ObjectRef.parse(entry["id"], entry["v"]) == ref
    assert ObjectRef.parse(entry["id"], entry["v"]).name == manifest["metadata"]["name"]


@pytest.mark.parametrize(
    "entry_id",
    [
        pytest.param("", id="empty"),
        pytest.param("default_podinfo", id="two-fields"),
        pytest.param("default_podinfo_apps", id="three-fields"),
        pytest.param("default_pod_info_apps_Deployment", id="underscore-in-name"),
    ],
)
def test_malformed_ids_are_rejected(entry_id: str) -> None:
    with pytest.raises(ValueError, match="stored object metadata"):
        ObjectRef.parse(entry_id)


def test_the_version_is_not_part_of_the_identity() -> None:
    v1 = ObjectRef("apps", "web", "autoscaling", "HorizontalPodAutoscaler", "v1")
    v2 = ObjectRef("apps", "web", "autoscaling", "HorizontalPodAutoscaler", "v2")

    assert v1 == v2
    assert entries_for([v1, v2]) == [{"id": v1.id, "v": "v1"}]


@pytest.mark.parametrize(
    ("ref", "subject"),
    [
        pytest.param(
            ObjectRef("apps", "web", "apps", "Deployment"), "Deployment/apps/web", id="ns"
        ),
        pytest.param(ObjectRef("", "apps", "", "Namespace"), "Namespace/apps", id="cluster"),
    ],
)
def test_subjects_read_like_fluxs(ref: ObjectRef, subject: str) -> None:
    assert str(ref) == ref.subject == subject


def test_diff_lists_what_left_in_apply_order() -> None:
    old = [
        {"id": "apps_web_apps_Deployment", "v": "v1"},
        {"id": "apps_settings__ConfigMap", "v": "v1"},
        {"id": "_apps__Namespace", "v": "v1"},
        {"id": "apps_web__Service", "v": "v1"},
    ]
    new = [{"id": "apps_web__Service", "v": "v1"}]

    stale = diff(old, new)

    assert [ref.subject for ref in stale] == [
        "Namespace/apps",
        "ConfigMap/apps/settings",
        "Deployment/apps/web",
    ]
    assert [ref.version for ref in stale] == ["v1", "v1", "v1"]


def test_diff_of_equal_inventories_is_empty() -> None:
    entries = [{"id": "apps_web_apps_Deployment", "v": "v1"}]

    assert diff(entries, entries) == []
    assert diff([], entries) == []


def test_merge_keeps_failed_deletions_once() -> None:
    entries = [{"id": "apps_web__Service", "v": "v1"}]
    survivors = refs_from_entries(
        [{"id": "apps_web__Service", "v": "v1"}, {"id": "apps_old__ConfigMap", "v": "v1"}]
    )

    assert merge(entries, survivors) == [
        {"id": "apps_web__Service", "v": "v1"},
        {"id": "apps_old__ConfigMap", "v": "v1"},
    ]


def test_kinds_sort_in_fluxs_order() -> None:
    kinds = [
        "ValidatingWebhookConfiguration",
        "Widget",
        "Deployment",
        "Service",
        "ClusterRole",
        "Namespace",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
    ]
    refs = [ObjectRef("", kind.lower(), "", kind) for kind in kinds]

    ordered = [ref.kind for ref in sorted(refs, key=sort_key)]

    assert ordered == [
        "CustomResourceDefinition",
        "Namespace",
        "ClusterRole",
        "Service",
        "Deployment",
        "Widget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]


def test_ties_sort_by_group_kind_namespace_and_name() -> None:
    refs = [
        ObjectRef("b", "x", "example.com", "Widget"),
        ObjectRef("a", "y", "example.com", "Widget"),
        ObjectRef("a", "x", "example.com", "Widget"),
        ObjectRef("a", "x", "a.example.com", "Widget"),
    ]

    assert sorted(refs, key=sort_key) == [refs[3], refs[2], refs[1], refs[0]]
