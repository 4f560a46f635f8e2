"""``spec.ignore`` of a Kustomization (``kustomize.apply.ignore``): which fields a rule leaves
out, drift without them, and what is sent for an ignored field: stripped when another
``Apply`` manager owns it, the live value adopted otherwise (Flux 2.9)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from controllers.jsondiff import InvalidRule, lookup_pointer, replace_pointer
from kustomize.api_v1 import Kustomization
from kustomize.apply.ignore import (
    compile_ignore_rules,
    ignored_paths,
    owned_by_another_applier,
    resolve_ignored,
)
from kustomize.apply.manager import _drifted

# The example of Flux 2.9's documentation (kustomize-controller docs/spec/v1, "Ignore Rules").
FLUX_DOC_EXAMPLE = """
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: app
  namespace: flux-system
spec:
  interval: 10m
  prune: true
  sourceRef:
    kind: GitRepository
    name: app
  ignore:
    - paths:
        - "/spec/replicas"
      target:
        kind: Deployment
    - paths:
        - "/metadata/annotations/external-dns.alpha.kubernetes.io~1hostname"
      target:
        kind: Service
        name: my-service
    - paths:
        - "/spec/template/spec/containers/0/resources"
      target:
        kind: Deployment
        name: my-app
"""

MANAGER = "kustomize-controller"
RESOURCES = {"requests": {"cpu": "100m"}}


def deployment(name: str = "my-app", replicas: int = 2, **extra: Any) -> dict[str, Any]:
    container = {"name": "app", "image": "nginx:1.25", "resources": RESOURCES, **extra}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}},
    }


def managed(*entries: tuple[str, str, dict[str, Any], str]) -> list[dict[str, Any]]:
    """managedFields entries from (manager, operation, fieldsV1, subresource)."""
    return [
        {
            "manager": manager,
            "operation": operation,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1,
            **({"subresource": subresource} if subresource else {}),
        }
        for manager, operation, fields_v1, subresource in entries
    ]


OURS: dict[str, Any] = {
    "f:spec": {
        "f:replicas": {},
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}
                }
            }
        },
    }
}
REPLICAS: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
CONTAINER_RESOURCES: dict[str, Any] = {
    "f:spec": {
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"app"}': {".": {}, "f:name": {}, "f:resources": {"f:limits": {}}}
                }
            }
        }
    }
}


def live(replicas: int, *entries: tuple[str, str, dict[str, Any], str]) -> dict[str, Any]:
    obj = deployment(replicas=replicas)
    obj["metadata"]["resourceVersion"] = "7"
    obj["metadata"]["managedFields"] = managed((MANAGER, "Apply", OURS, ""), *entries)
    return obj


@pytest.fixture
def rules() -> Any:
    kustomization = Kustomization.model_validate(yaml.safe_load(FLUX_DOC_EXAMPLE))
    return compile_ignore_rules(kustomization.spec.ignore)


def test_the_flux_documentation_example_targets_as_documented(rules: Any) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "my-service", "namespace": "apps"},
    }
    other_service = {**service, "metadata": {"name": "db", "namespace": "apps"}}
    assert ignored_paths(rules, deployment("web")) == ["/spec/replicas"]
    assert ignored_paths(rules, deployment("my-app")) == [
        "/spec/replicas",
        "/spec/template/spec/containers/0/resources",
    ]
    assert ignored_paths(rules, service) == [
        "/metadata/annotations/external-dns.alpha.kubernetes.io~1hostname"
    ]
    assert ignored_paths(rules, other_service) == []


def test_no_rules_ignore_nothing() -> None:
    assert ignored_paths(compile_ignore_rules(None), deployment()) == []


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param({"paths": ["spec/replicas"]}, id="pointer-without-slash"),
        pytest.param({"paths": ["/spec"], "target": {"kind": "Deploy("}}, id="bad-regex"),
        pytest.param({"paths": ["/spec"], "target": {"labelSelector": "a in b"}}, id="bad-labels"),
    ],
)
def test_invalid_rules_are_refused(rule: dict[str, Any]) -> None:
    spec = yaml.safe_load(FLUX_DOC_EXAMPLE)
    spec["spec"]["ignore"] = [rule]
    with pytest.raises(InvalidRule):
        compile_ignore_rules(Kustomization.model_validate(spec).spec.ignore)


@pytest.mark.parametrize(
    ("name", "change", "drifted"),
    [
        pytest.param("web", {"replicas": 5}, False, id="ignored-replicas"),
        pytest.param("my-app", {"replicas": 5}, False, id="ignored-on-the-named-one-too"),
        pytest.param("web", {"paused": True}, True, id="another-field"),
    ],
)
def test_ignored_fields_are_not_drift(
    rules: Any, name: str, change: dict[str, Any], drifted: bool
) -> None:
    dry_run = deployment(name)
    existing = copy.deepcopy(dry_run)
    existing["spec"].update(change)
    assert _drifted(existing, dry_run, rules) is drifted
    assert _drifted(existing, dry_run) is True  # without the rules


def test_ignored_container_resources_are_not_drift_on_the_targeted_deployment(
    rules: Any,
) -> None:
    scaled = {"requests": {"cpu": "2"}}
    for name, drifted in (("my-app", False), ("web", True)):
        dry_run = deployment(name)
        existing = deployment(name, resources=scaled)
        assert _drifted(existing, dry_run, rules) is drifted, name


@pytest.mark.parametrize(
    ("entries", "pointer", "owned"),
    [
        pytest.param((), "/spec/replicas", False, id="only-ours"),
        pytest.param((("hpa", "Apply", REPLICAS, ""),), "/spec/replicas", True, id="applier"),
        pytest.param((("hpa", "Update", REPLICAS, ""),), "/spec/replicas", False, id="updater"),
        pytest.param(
            (("hpa", "Apply", REPLICAS, "scale"),), "/spec/replicas", False, id="subresource"
        ),
        pytest.param(
            (("vpa", "Apply", CONTAINER_RESOURCES, ""),),
            "/spec/template/spec/containers/0/resources",
            True,
            id="list-item-by-merge-key",
        ),
        pytest.param(
            (("vpa", "Apply", CONTAINER_RESOURCES, ""),),
            "/spec/template/spec/containers/0/image",
            False,
            id="other-field-of-the-item",
        ),
        pytest.param(
            (("vpa", "Apply", CONTAINER_RESOURCES, ""),),
            "/spec/template/spec/containers/3/resources",
            False,
            id="index-out-of-range",
        ),
        pytest.param(
            (("vpa", "Apply", CONTAINER_RESOURCES, ""),), "/spec/template", True, id="parent"
        ),
    ],
)
def test_ownership_by_another_applier(
    entries: tuple[tuple[str, str, dict[str, Any], str], ...], pointer: str, owned: bool
) -> None:
    assert owned_by_another_applier(live(5, *entries), pointer, MANAGER) is owned


def test_a_field_another_applier_owns_is_stripped_from_what_is_sent() -> None:
    existing = live(5, ("hpa", "Apply", REPLICAS, ""))
    sent = resolve_ignored(deployment(), existing, deployment(), ["/spec/replicas"], MANAGER)
    assert "replicas" not in sent["spec"]
    assert sent["spec"]["template"] == deployment()["spec"]["template"]


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param((), id="sole-owner"),
        pytest.param((("kube-controller-manager", "Update", REPLICAS, "scale"),), id="hpa-scale"),
        pytest.param((("kubectl-edit", "Update", REPLICAS, ""),), id="kubectl-edit"),
    ],
)
def test_a_field_no_other_applier_owns_keeps_its_live_value(
    entries: tuple[tuple[str, str, dict[str, Any], str], ...],
) -> None:
    desired = deployment(paused=True)
    sent = resolve_ignored(desired, live(5, *entries), deployment(), ["/spec/replicas"], MANAGER)
    assert sent["spec"]["replicas"] == 5
    assert sent["spec"]["template"] == desired["spec"]["template"]
    assert desired["spec"]["replicas"] == 2  # the desired object is not changed


def test_an_ignored_field_as_the_manifest_has_it_is_sent_unchanged() -> None:
    existing = live(2, ("hpa", "Apply", REPLICAS, ""))
    sent = resolve_ignored(deployment(), existing, deployment(), ["/spec/replicas"], MANAGER)
    assert sent == deployment()


def test_a_field_to_adopt_that_is_not_sent_fails_as_a_json_patch_replace() -> None:
    desired = deployment()
    del desired["spec"]["replicas"]
    with pytest.raises(KeyError, match="missing path: /spec/replicas"):
        resolve_ignored(desired, live(5), deployment(), ["/spec/replicas"], MANAGER)


@pytest.mark.parametrize(
    ("pointer", "found", "value"),
    [
        pytest.param("/spec/replicas", True, 2, id="field"),
        pytest.param("/spec/template/spec/containers/0/name", True, "app", id="list-item"),
        pytest.param("/spec/template/spec/containers/-1/name", True, "app", id="from-the-end"),
        pytest.param("/spec/template/spec/containers/1/name", False, None, id="out-of-range"),
        pytest.param("/spec/missing/deeper", False, None, id="missing"),
        pytest.param("/spec/paused", True, None, id="null"),
    ],
)
def test_lookup_pointer(pointer: str, found: bool, value: Any) -> None:
    obj = deployment()
    obj["spec"]["paused"] = None
    assert lookup_pointer(obj, pointer) == (found, value)


def test_replace_pointer_replaces_only_what_is_there() -> None:
    obj = deployment()
    replace_pointer(obj, "/spec/template/spec/containers/0/resources", {"limits": {}})
    assert obj["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {}}
    with pytest.raises(KeyError):
        replace_pointer(obj, "/spec/strategy", {})
    with pytest.raises(InvalidRule):
        replace_pointer(obj, "", {})
