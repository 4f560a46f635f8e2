"""Which live changes ``weir drift export`` counts as made by hand, and the patches it writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controllers.apitypes import Selector
from controllers.inventory import ObjectRef
from controllers.jsondiff import IgnoreRules
from kustomize.api_v1 import KustomizationSpec
from weir.cli.drift import (
    Change,
    ObjectDrift,
    hand_changes,
    json6902_ops,
    source_identity,
    strategic_merge_patch,
)

CONTAINERS = ("spec", "template", "spec", "containers")
WEB = '{"name":"web"}'


def deployment(**container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {"containers": [{"name": "web", "image": "nginx:1", **container}]}
            },
        },
    }


def owned(live: dict[str, Any], manager: str, fields: dict[str, Any], op: str = "Update") -> None:
    entry = {"manager": manager, "operation": op, "fieldsV1": fields}
    live["metadata"].setdefault("managedFields", []).append(entry)


def env_fields(name: str) -> dict[str, Any]:
    element: dict[str, Any] = {".": {}, "f:name": {}, "f:value": {}}
    env = {"f:env": {".": {}, f'k:{{"name":"{name}"}}': element}}
    return {"f:spec": {"f:template": {"f:spec": {"f:containers": {f"k:{WEB}": env}}}}}


def replicas_fields() -> dict[str, Any]:
    return {"f:spec": {"f:replicas": {}}}


def annotation_fields(key: str) -> dict[str, Any]:
    return {"f:metadata": {"f:annotations": {".": {}, f"f:{key}": {}}}}


def with_env(obj: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    changed["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    return changed


def scenario(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(desired, live, dry-run) of a case."""
    desired = deployment()
    if name == "image":
        live = deployment(image="nginx:2")
        return desired, live, deployment()
    if name == "env by kubectl":
        live = with_env(deployment())
        owned(live, "kubectl-patch", env_fields("X"))
        return desired, live, copy.deepcopy(live)
    if name == "env by another manager":
        live = with_env(deployment())
        owned(live, "sidecar-injector", env_fields("X"))
        return desired, live, copy.deepcopy(live)
    if name == "env by kubectl, also another manager's":
        live = with_env(deployment())
        owned(live, "kubectl-edit", env_fields("X"))
        owned(live, "operator", env_fields("X"))
        return desired, live, copy.deepcopy(live)
    if name == "replicas by an autoscaler":
        live = deployment()
        live["spec"]["replicas"] = 5
        owned(live, "kube-controller-manager", replicas_fields())
        return desired, live, copy.deepcopy(live)
    if name == "last-applied annotation":
        live = deployment()
        key = "kubectl.kubernetes.io/last-applied-configuration"
        live["metadata"]["annotations"] = {key: "{}"}
        owned(live, "kubectl-client-side-apply", annotation_fields(key))
        return desired, live, copy.deepcopy(live)
    if name == "annotation by kubectl":
        live = deployment()
        live["metadata"]["annotations"] = {"team": "blue"}
        owned(live, "kubectl-annotate", annotation_fields("team"))
        return desired, live, copy.deepcopy(live)
    if name == "status":
        live = deployment()
        live["status"] = {"replicas": 2}
        return desired, live, deployment()
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("image", [(*CONTAINERS, "0", "image")], id="changed-value"),
        pytest.param("env by kubectl", [(*CONTAINERS, "0", "env")], id="added-by-kubectl"),
        pytest.param("env by another manager", [], id="another-managers-field-survives"),
        pytest.param("env by kubectl, also another manager's", [], id="co-owned-survives"),
        pytest.param("replicas by an autoscaler", [], id="autoscaler-replicas"),
        pytest.param("last-applied annotation", [], id="last-applied-is-not-a-change"),
        pytest.param(
            "annotation by kubectl", [("metadata", "annotations", "team")], id="kubectl-annotate"
        ),
        pytest.param("status", [], id="status"),
    ],
)
def test_hand_changes_are_what_the_next_apply_would_undo(
    case: str, expected: list[tuple[str, ...]]
) -> None:
    desired, live, merged = scenario(case)
    changes = hand_changes(desired, live, merged, IgnoreRules())
    assert [change.tokens for change in changes] == expected


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param([(["/spec/template"], None)], [], id="ignored-parent"),
        # As in the Kustomization's apply: the whole-object pointer has no effect.
        pytest.param([([""], None)], [(*CONTAINERS, "0", "image")], id="whole-object-pointer"),
        pytest.param(
            [(["/spec/template"], Selector(kind="StatefulSet"))],
            [(*CONTAINERS, "0", "image")],
            id="rule-for-another-kind",
        ),
        pytest.param(
            [(["/spec/template/spec/containers/0/image"], Selector(name="web"))],
            [],
            id="ignored-field",
        ),
    ],
)
def test_spec_ignore_leaves_fields_out(
    rules: list[tuple[list[str], Selector | None]], expected: list[tuple[str, ...]]
) -> None:
    desired, live, merged = scenario("image")
    changes = hand_changes(desired, live, merged, IgnoreRules.compile(rules))
    assert [change.tokens for change in changes] == expected


def drifted(desired: dict[str, Any], live: dict[str, Any], *changes: Change) -> ObjectDrift:
    return ObjectDrift(ObjectRef.of(live), desired, live, changes, "web", None)


def test_patches_of_a_changed_image_and_an_added_env_var() -> None:
    live = with_env(deployment(image="nginx:2"))
    found = drifted(
        deployment(),
        live,
        Change((*CONTAINERS, "0", "image")),
        Change((*CONTAINERS, "0", "env", "0")),
    )
    assert strategic_merge_patch(found) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:2", "env": [{"name": "X", "value": "1"}]}
                    ]
                }
            }
        },
    }
    assert json6902_ops(found) == [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:2"},
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/env",
            "value": [{"name": "X", "value": "1"}],
        },
    ]


def test_a_field_removed_by_hand() -> None:
    desired = deployment(command=["serve"])
    found = drifted(desired, deployment(), Change((*CONTAINERS, "0", "command"), removed=True))
    containers = strategic_merge_patch(found)["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "web", "command": None}]
    assert json6902_ops(found) == [
        {"op": "remove", "path": "/spec/template/spec/containers/0/command"}
    ]


def test_a_list_element_is_found_by_its_key_in_the_build() -> None:
    sidecar = {"name": "proxy", "image": "envoy:1"}
    desired = deployment()
    desired["spec"]["template"]["spec"]["containers"].insert(0, sidecar)
    live = deployment(image="nginx:2")
    live["spec"]["template"]["spec"]["containers"].append(sidecar)
    found = drifted(desired, live, Change((*CONTAINERS, "0", "image")))
    assert json6902_ops(found) == [
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "nginx:2"}
    ]


def test_lists_of_custom_resources_are_replaced_whole() -> None:
    desired: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "web"},
        "spec": {"items": [{"name": "a", "size": 1}, {"name": "b", "size": 1}]},
    }
    live = copy.deepcopy(desired)
    live["spec"]["items"][1]["size"] = 2
    found = drifted(desired, live, Change(("spec", "items", "1", "size")))
    assert strategic_merge_patch(found)["spec"] == live["spec"]


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        pytest.param({}, ("app-web-v2", "apps"), id="no-overlay"),
        pytest.param({"targetNamespace": "apps"}, ("app-web-v2", None), id="target-namespace"),
        pytest.param(
            {"namePrefix": "app-", "nameSuffix": "-v2"}, ("web", "apps"), id="prefix-suffix"
        ),
    ],
)
def test_source_identity_undoes_the_overlay(
    overlay: dict[str, Any], expected: tuple[str, str | None]
) -> None:
    spec = KustomizationSpec.model_validate(
        {"interval": "1m", "prune": True, "sourceRef": {"kind": "GitRepository", "name": "x"}}
        | overlay
    )
    obj = {"metadata": {"name": "app-web-v2", "namespace": "apps"}}
    assert source_identity(spec, obj) == expected
