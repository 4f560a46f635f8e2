"""CEL as Flux's expressions use it: the documented examples, and the errors users see."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.cel import EvaluationError, InvalidExpression, compile_expression

SEALED_SECRET = {
    "apiVersion": "bitnami.com/v1alpha1",
    "kind": "SealedSecret",
    "metadata": {"name": "db", "generation": 2, "labels": {"app/version": "v1.2.3"}},
    "status": {
        "observedGeneration": 2,
        "conditions": [{"type": "Synced", "status": "True", "message": "unsealed"}],
    },
}


def evaluate(source: str, variables: dict[str, Any] = SEALED_SECRET) -> bool:
    return compile_expression(source).evaluate_bool(variables)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # Flux's SealedSecret example (kustomize-controller docs, healthCheckExprs).
        pytest.param(
            "status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'True')",
            True,
            id="docs-current",
        ),
        pytest.param(
            "status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'False')",
            False,
            id="docs-failed",
        ),
        pytest.param(
            "has(status.observedGeneration) && metadata.generation != status.observedGeneration",
            False,
            id="has-macro",
        ),
        pytest.param("has(status.phase)", False, id="has-missing-field"),
        pytest.param(
            "status.conditions.exists(e, e.type == 'Synced' && e.status == 'True')",
            True,
            id="exists",
        ),
        pytest.param("status.conditions.exists_one(e, e.type == 'Synced')", True, id="exists-one"),
        pytest.param(
            "status.conditions.map(c, c.type).all(t, t in ['Synced', 'Ready'])", True, id="map"
        ),
        pytest.param("metadata.labels['app/version'].startsWith('v1.')", True, id="starts-with"),
        pytest.param("status.conditions[0].message.matches('^un')", True, id="matches"),
        # cel-go's strings extension, which Flux enables.
        pytest.param("metadata.labels['app/version'].split('.').size() == 3", True, id="split"),
        pytest.param("metadata.name.upperAscii() == 'DB'", True, id="upper-ascii"),
        # Flux enables cross-type numeric comparisons; equality across types is false.
        pytest.param("metadata.generation == 2.0", True, id="int-equals-double"),
        pytest.param("metadata.generation < 2.5", True, id="int-below-double"),
        pytest.param("metadata.generation == '2'", False, id="int-is-not-string"),
    ],
)
def test_flux_expressions_evaluate(source: str, expected: bool) -> None:
    assert evaluate(source) is expected


def test_the_lockstep_ready_expression_of_the_docs_sees_self_and_dep() -> None:
    dependent = {"metadata": {"labels": {"app/version": "v1.2.3"}}}
    expression = compile_expression(
        "dep.metadata.labels['app/version'] == self.metadata.labels['app/version'] && "
        "dep.status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True') && "
        "dep.metadata.generation == dep.status.observedGeneration"
    )
    ready = {
        "metadata": {"labels": {"app/version": "v1.2.3"}, "generation": 1},
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    behind = {**ready, "metadata": {"labels": {"app/version": "v1.2.2"}, "generation": 1}}

    assert expression.evaluate_bool({"self": dependent, "dep": ready}) is True
    assert expression.evaluate_bool({"self": dependent, "dep": behind}) is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "status.conditions.",
            "failed to parse the CEL expression 'status.conditions.': ERROR: <input>:1:19: "
            "Syntax error: no viable alternative at input '.'",
            id="syntax",
        ),
        # cel-go rejects has() on a bare name when parsing, before any object is seen.
        pytest.param(
            "has(status)",
            "failed to parse the CEL expression 'has(status)': ERROR: <input>:1:5: "
            "invalid argument to has() macro",
            id="has-without-field",
        ),
        pytest.param(
            "",
            "failed to parse the CEL expression '': ERROR: <input>:1:1: Syntax error",
            id="empty",
        ),
    ],
)
def test_an_expression_that_does_not_parse_says_where(source: str, message: str) -> None:
    with pytest.raises(InvalidExpression) as caught:
        compile_expression(source)

    assert str(caught.value).startswith(message)
    assert "Failed to parse expression" not in str(caught.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "status.phase == 'Ready'",
            "failed to evaluate the CEL expression 'status.phase == 'Ready'': no such key: phase",
            id="missing-key",
        ),
        pytest.param(
            "spec.replicas > 0",
            "failed to evaluate the CEL expression 'spec.replicas > 0': "
            "Undefined variable or function: 'spec'",
            id="missing-top-level-field",
        ),
        pytest.param(
            "metadata.name + 1 == 2",
            "failed to evaluate the CEL expression 'metadata.name + 1 == 2': "
            "Unsupported operation: string + int",
            id="mismatched-types",
        ),
        pytest.param(
            "metadata.name",
            "failed to evaluate CEL expression as boolean: 'metadata.name'",
            id="not-a-bool",
        ),
    ],
)
def test_an_expression_that_cannot_be_evaluated_says_why(source: str, message: str) -> None:
    with pytest.raises(EvaluationError) as caught:
        evaluate(source)

    assert str(caught.value).startswith(message)


def test_an_expression_is_compiled_once() -> None:
    source = "metadata.generation == status.observedGeneration"

    assert compile_expression(source) is compile_expression(source)
