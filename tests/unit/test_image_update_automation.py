"""ImageUpdateAutomation's pure parts: the policy selector as the API server takes it, and which
automations a change of a GitRepository or an ImagePolicy requeues."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.apitypes import LabelSelector
from image_automation.imageupdateautomation import (
    automations_of_changed_policy,
    automations_of_changed_repository,
    label_selector_query,
)


def selector(**raw: Any) -> LabelSelector:
    return LabelSelector.model_validate(raw)


def test_policy_selectors_become_label_selector_queries() -> None:
    assert label_selector_query(None) is None
    assert label_selector_query(selector()) is None
    assert label_selector_query(selector(matchLabels={"b": "2", "a": "1"})) == "a=1,b=2"
    expressions = [
        {"key": "env", "operator": "In", "values": ["prod", "dev"]},
        {"key": "tier", "operator": "NotIn", "values": ["db"]},
        {"key": "team", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]
    assert label_selector_query(selector(matchExpressions=expressions)) == (
        "env in (dev,prod),tier notin (db),team,!legacy"
    )


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ({"key": "env", "operator": "In", "values": []}, "can't be empty"),
        ({"key": "env", "operator": "Exists", "values": ["x"]}, "must be empty"),
        ({"key": "env", "operator": "Like", "values": ["x"]}, "not a valid"),
    ],
)
def test_selectors_the_api_server_would_refuse(expression: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        label_selector_query(selector(matchExpressions=[expression]))


def automation(name: str, namespace: str, source: str, source_namespace: str | None = None) -> Any:
    ref = {"kind": "GitRepository", "name": source}
    if source_namespace:
        ref["namespace"] = source_namespace
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"sourceRef": ref}}


AUTOMATIONS = [
    automation("a", "apps", "fleet"),
    automation("b", "apps", "other"),
    automation("c", "team", "fleet", "apps"),
    automation("d", "team", "fleet"),
]


def test_a_changed_git_repository_requeues_the_automations_using_it() -> None:
    old = {"metadata": {"name": "fleet", "namespace": "apps"}, "spec": {"url": "a"}}
    new = {"metadata": {"name": "fleet", "namespace": "apps"}, "spec": {"url": "b"}}
    assert automations_of_changed_repository(old, new, AUTOMATIONS) == ["apps/a", "team/c"]
    # Its status moving (a new artifact) is not a reason: the automation clones itself.
    same = {**new, "status": {"artifact": {"revision": "x"}}}
    assert automations_of_changed_repository(new, same, AUTOMATIONS) == []


def test_a_new_latest_image_requeues_the_automations_of_its_namespace() -> None:
    def policy(tag: str | None) -> dict[str, Any]:
        status = {"latestRef": {"name": "app", "tag": tag}} if tag else {}
        return {"metadata": {"name": "p", "namespace": "team"}, "status": status}

    assert automations_of_changed_policy(policy("1.0"), policy("1.1"), AUTOMATIONS) == [
        "team/c",
        "team/d",
    ]
    assert automations_of_changed_policy(None, policy("1.0"), AUTOMATIONS) == ["team/c", "team/d"]
    assert automations_of_changed_policy(policy("1.0"), policy("1.0"), AUTOMATIONS) == []
