"""``controllers.jsondiff``: the JSON patch between a live object and its dry-run, JSON pointer
removal, label selector expressions and Flux's object selectors."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.apitypes import Selector
from controllers.jsondiff import (
    IgnoreRules,
    InvalidRule,
    ObjectSelector,
    Operation,
    compare,
    parse_label_selector,
    remove_pointers,
)

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web", "tier": "front"}},
    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}},
}


def changed(**spec: Any) -> dict[str, Any]:
    return {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], **spec}}


@pytest.mark.parametrize(
    ("live", "wanted", "patch"),
    [
        pytest.param(DEPLOYMENT, DEPLOYMENT, [], id="same"),
        pytest.param(
            changed(replicas=3),
            DEPLOYMENT,
            [Operation("replace", "/spec/replicas", 1)],
            id="replace",
        ),
        pytest.param(
            changed(paused=True), DEPLOYMENT, [Operation("remove", "/spec/paused")], id="remove"
        ),
        pytest.param(
            changed(template={"spec": {"containers": [{"name": "a", "image": "x:2"}]}}),
            DEPLOYMENT,
            [Operation("replace", "/spec/template/spec/containers/0/image", "x:1")],
            id="list-item",
        ),
        pytest.param(
            changed(template={"spec": {"containers": []}}),
            DEPLOYMENT,
            [
                Operation(
                    "replace", "/spec/template/spec/containers", [{"name": "a", "image": "x:1"}]
                )
            ],
            id="list-length",
        ),
        pytest.param(
            {**DEPLOYMENT, "metadata": {"name": "web", "labels": {"app": "web", "extra": "1"}}},
            DEPLOYMENT,
            [Operation("add", "/metadata/labels/tier", "front")],
            id="metadata-never-removed",
        ),
        pytest.param(
            {
                **DEPLOYMENT,
                "status": {"replicas": 9},
                "metadata": {**DEPLOYMENT["metadata"], "uid": "u"},
            },
            DEPLOYMENT,
            [],
            id="status-and-server-metadata",
        ),
    ],
)
def test_compare_gives_the_patch_back_to_the_wanted_object(
    live: dict[str, Any], wanted: dict[str, Any], patch: list[Operation]
) -> None:
    assert compare(live, wanted) == patch


def test_remove_pointers_takes_fields_out_and_tolerates_missing_ones() -> None:
    obj: dict[str, Any] = {"a": {"b/c": 1, "d~e": 2, "f": [1, 2, 3]}, "g": 1}
    remove_pointers(obj, ["/a/b~1c", "/a/d~0e", "/a/f/1", "/nope/x", "/a/f/9"])
    assert obj == {"a": {"f": [1, 3]}, "g": 1}


@pytest.mark.parametrize(
    ("expression", "labels", "matches"),
    [
        pytest.param("app=web", {"app": "web"}, True, id="equals"),
        pytest.param("app==web", {"app": "api"}, False, id="double-equals"),
        pytest.param("app!=web", {}, True, id="not-equals-absent"),
        pytest.param("tier in (front, back)", {"tier": "back"}, True, id="in"),
        pytest.param("tier notin (front,back)", {"tier": "front"}, False, id="notin"),
        pytest.param("app", {"app": ""}, True, id="exists"),
        pytest.param("!legacy", {"legacy": "x"}, False, id="absent"),
        pytest.param("app=web,tier in (a,b)", {"app": "web", "tier": "c"}, False, id="and"),
        pytest.param("", {}, True, id="empty"),
    ],
)
def test_label_selector_expressions(expression: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_label_selector(expression)(labels) is matches


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param(Selector(kind="Deployment"), True, id="kind"),
        pytest.param(Selector(kind="Deploy"), False, id="anchored"),
        pytest.param(Selector(kind="Deploy.*", group="apps", version="v1"), True, id="regex"),
        pytest.param(Selector(group=""), True, id="empty-matches-all"),
        pytest.param(Selector(name="web", namespace="other"), False, id="namespace"),
        pytest.param(Selector(label_selector="tier=front"), True, id="labels"),
        pytest.param(Selector(annotation_selector="note"), False, id="annotations"),
    ],
)
def test_object_selectors(selector: Selector, matches: bool) -> None:
    assert ObjectSelector.compile(selector).matches(DEPLOYMENT) is matches


def test_ignore_rules_give_the_paths_of_the_rules_that_target_an_object() -> None:
    rules = IgnoreRules.compile(
        [
            (["/spec/replicas"], Selector(kind="Deployment")),
            (["/data"], Selector(kind="Secret")),
            (["/x"], None),
        ]
    )
    assert rules.paths_for(DEPLOYMENT) == ["/spec/replicas", "/x"]


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param((["spec/replicas"], None), id="pointer"),
        pytest.param((["/a"], Selector(kind="(")), id="regex"),
        pytest.param((["/a"], Selector(label_selector="a in b")), id="label-selector"),
    ],
)
def test_invalid_rules_are_refused_when_compiled(rule: tuple[list[str], Selector | None]) -> None:
    with pytest.raises(InvalidRule):
        IgnoreRules.compile([rule])
