"""dependsOn readiness and which Kustomizations a dependency's change requeues."""

from __future__ import annotations

from typing import Any

import pytest

from kustomize.dependencies import dependents_of_ready, is_ready


def ks(
    name: str,
    *,
    namespace: str = "apps",
    ready: str | None = None,
    generation: int = 1,
    observed: int = 1,
    applied: str | None = None,
    depends_on: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    if applied is not None:
        status["lastAppliedRevision"] = applied
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"dependsOn": depends_on or []},
        "status": status,
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (ks("a", ready="True"), True),
        (ks("a", ready="False"), False),
        (ks("a"), False),
        (ks("a", ready="True", generation=2, observed=1), False),
    ],
    ids=["ready", "not-ready", "no-conditions", "generation-not-observed"],
)
def test_is_ready(obj: dict[str, Any], expected: bool) -> None:
    assert is_ready(obj) is expected


DEPENDENTS = [
    ks("app", ready="True", depends_on=[{"name": "infra"}]),
    ks("elsewhere", namespace="other", depends_on=[{"name": "infra", "namespace": "apps"}]),
    ks("same-name-other-namespace", namespace="other", depends_on=[{"name": "infra"}]),
    ks("unrelated", depends_on=[{"name": "else"}]),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            ks("infra", ready="False"),
            ks("infra", ready="True", applied="main@sha1:1"),
            ["apps/app", "other/elsewhere"],
            id="became-ready",
        ),
        pytest.param(None, ks("infra", ready="True"), ["apps/app", "other/elsewhere"], id="new"),
        pytest.param(
            ks("infra", ready="True", applied="main@sha1:1"),
            ks("infra", ready="True", applied="main@sha1:2"),
            ["apps/app", "other/elsewhere"],
            id="applied-new-revision",
        ),
        pytest.param(
            ks("infra", ready="True", applied="main@sha1:1"),
            ks("infra", ready="True", applied="main@sha1:1"),
            [],
            id="still-ready",
        ),
        pytest.param(
            ks("infra", ready="Unknown", applied="main@sha1:1"),
            ks("infra", ready="True", applied="main@sha1:1"),
            ["other/elsewhere"],
            id="ready-again-same-revision-only-waiting-dependents",
        ),
        pytest.param(ks("infra", ready="True"), ks("infra", ready="False"), [], id="not-ready"),
        pytest.param(ks("infra", ready="True"), None, [], id="deleted"),
    ],
)
def test_dependents_of_ready(
    old: dict[str, Any] | None, new: dict[str, Any] | None, expected: list[str]
) -> None:
    assert dependents_of_ready(old, new, DEPENDENTS) == expected
