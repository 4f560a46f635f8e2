"""dependsOn readiness and which Kustomizations a dependency's change requeues."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.cel import InvalidExpression
from kustomize.__main__ import parser, reconcilers
from kustomize.api_v1 import DependencyReference, Kustomization
from kustomize.dependencies import dependents_of_ready, is_ready, why_not_ready


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


# dependsOn[].readyExpr: the dependent is ``self``, the dependency ``dep``.

REVISION = "main@sha1:2"
FRONTEND = Kustomization.from_dict(
    {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "frontend", "namespace": "apps", "labels": {"app/version": "v2"}},
        "spec": {
            "interval": "5m",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "app"},
        },
    }
)
# Flux's lockstep example: the same version label, and Ready for the dependency's generation.
LOCKSTEP = (
    "dep.metadata.labels['app/version'] == self.metadata.labels['app/version'] && "
    "dep.status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True') && "
    "dep.metadata.generation == dep.status.observedGeneration"
)


def backend(version: str, *, ready: str = "True", applied: str = REVISION) -> dict[str, Any]:
    """The dependency as the API server returns it: same source as FRONTEND."""
    ready_condition = {
        "type": "Ready",
        "status": ready,
        "reason": "ReconciliationSucceeded",
        "message": f"Applied revision: {applied}",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": "backend",
            "namespace": "apps",
            "generation": 1,
            "labels": {"app/version": version},
        },
        "spec": FRONTEND.to_dict()["spec"],
        "status": {
            "observedGeneration": 1,
            "conditions": [ready_condition],
            "lastAppliedRevision": applied,
        },
    }


@pytest.mark.parametrize(
    ("ready_expr", "dependency", "additive", "expected"),
    [
        pytest.param(None, None, False, "dependency 'apps/backend' not found", id="missing"),
        pytest.param(None, backend("v2"), False, None, id="built-in-ready"),
        pytest.param(
            None,
            backend("v2", applied="main@sha1:1"),
            False,
            "dependency 'apps/backend' revision is not up to date",
            id="built-in-behind-on-the-source",
        ),
        pytest.param(LOCKSTEP, backend("v2"), False, None, id="expression-true"),
        pytest.param(
            LOCKSTEP,
            backend("v1"),
            False,
            "dependency 'apps/backend' is not ready according to readyExpr eval",
            id="expression-false",
        ),
        pytest.param(
            "dep.metadata.labels['app/version'] == self.metadata.labels['app/version']",
            backend("v2", ready="False"),
            False,
            None,
            id="expression-replaces-the-built-in-check",
        ),
        pytest.param(
            "dep.metadata.labels['app/version'] == self.metadata.labels['app/version']",
            backend("v2", ready="False"),
            True,
            "dependency 'apps/backend' is not ready",
            id="additive-gate-keeps-the-built-in-check",
        ),
        pytest.param(
            "dep.metadata.labels['app/version'] == self.metadata.labels['app/version']",
            backend("v2", applied="main@sha1:1"),
            True,
            "dependency 'apps/backend' revision is not up to date",
            id="additive-gate-keeps-the-revision-check",
        ),
        pytest.param(
            "dep.status.phase == 'Done'",
            backend("v2"),
            False,
            "failed to evaluate the CEL expression 'dep.status.phase == 'Done'': "
            "no such key: phase",
            id="expression-cannot-be-evaluated",
        ),
    ],
)
def test_why_a_dependency_is_not_ready(
    ready_expr: str | None, dependency: dict[str, Any] | None, additive: bool, expected: str | None
) -> None:
    ref = DependencyReference(name="backend", ready_expr=ready_expr)

    assert why_not_ready(FRONTEND, ref, dependency, REVISION, additive_cel=additive) == expected


def test_a_ready_expression_that_does_not_compile_is_a_configuration_error() -> None:
    ref = DependencyReference(name="backend", ready_expr="dep.status.")

    with pytest.raises(InvalidExpression) as caught:
        why_not_ready(FRONTEND, ref, backend("v2"), REVISION)

    assert str(caught.value).startswith(
        "failed to evaluate dependency backend: failed to parse the CEL expression "
        "'dep.status.': ERROR: <input>:1:12: Syntax error"
    )


@pytest.mark.parametrize(
    ("argv", "additive"),
    [
        pytest.param([], False, id="off-by-default"),
        pytest.param(["--feature-gates=AdditiveCELDependencyCheck=true"], True, id="gate-on"),
    ],
)
def test_the_additive_check_is_the_controller_feature_gate(argv: list[str], additive: bool) -> None:
    # The process looks its build worker up at start; nothing is built here, so any executable
    # does, and the unit tests need nothing built from Go.
    worker = "--kustomize-build-worker=/bin/true"

    [reconciler] = reconcilers(parser().parse_args([worker, *argv]))

    assert getattr(reconciler, "additive_cel_dependency_check", None) is additive


@pytest.mark.parametrize(
    ("argv", "additive"),
    [
        pytest.param([], False, id="off-by-default"),
        pytest.param(["--feature-gates=AdditiveCELDependencyCheck=true"], True, id="gate-on"),
    ],
)
def test_the_helm_controller_has_the_same_gate(argv: list[str], additive: bool) -> None:
    from helm.__main__ import parser as helm_parser
    from helm.__main__ import reconcilers as helm_reconcilers

    [reconciler] = helm_reconcilers(helm_parser().parse_args(argv))

    assert getattr(reconciler, "additive_cel_dependency_check", None) is additive


@pytest.mark.parametrize("gate", ["Unknown=true", "AdditiveCELDependencyCheck=maybe"])
def test_a_bad_feature_gate_is_a_usage_error(gate: str, capsys: pytest.CaptureFixture[str]) -> None:
    from helm.__main__ import parser as helm_parser

    with pytest.raises(SystemExit) as caught:
        helm_parser().parse_args([f"--feature-gates={gate}"])

    assert caught.value.code == 2
    assert "invalid feature gate" in capsys.readouterr().err
