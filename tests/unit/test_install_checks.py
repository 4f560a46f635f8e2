"""What ``weir install`` waits for and ``weir check`` judges: the Kubernetes version, a
Deployment rolled out, a CRD established."""

from __future__ import annotations

from typing import Any

import pytest

from weir.cli.check import MIN_KUBERNETES, kubernetes_version
from weir.cli.install import established, rollout_problem


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"major": "1", "minor": "34", "gitVersion": "v1.34.4"}, (1, 34), id="plain"),
        pytest.param(
            {"major": "1", "minor": "30+", "gitVersion": "v1.30.2-gke.1"}, (1, 30), id="gke"
        ),
        pytest.param({"gitVersion": "v1.29.0-eks-5e0fdde"}, (1, 29), id="git-version-only"),
        pytest.param({"major": "", "minor": "", "gitVersion": "unknown"}, None, id="unknown"),
    ],
)
def test_the_kubernetes_version_from_the_version_endpoint(
    answer: dict[str, str], expected: tuple[int, int] | None
) -> None:
    assert kubernetes_version(answer) == expected


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        pytest.param((1, 29), False, id="1.29"),
        pytest.param((1, 30), True, id="1.30"),
        pytest.param((1, 34), True, id="1.34"),
        pytest.param((2, 0), True, id="2.0"),
    ],
)
def test_the_floor_is_1_30(version: tuple[int, int], supported: bool) -> None:
    assert (version >= MIN_KUBERNETES) is supported


def deployment(**status: Any) -> dict[str, Any]:
    """A Deployment of one replica at generation 2, with ``status``."""
    return {
        "metadata": {"name": "source-controller", "generation": 2},
        "spec": {"replicas": 1},
        "status": status,
    }


def progressing(reason: str, message: str = "") -> list[dict[str, str]]:
    return [
        {"type": "Available", "status": "True"},
        {"type": "Progressing", "status": "True", "reason": reason, "message": message},
    ]


DONE: dict[str, Any] = {
    "observedGeneration": 2,
    "replicas": 1,
    "updatedReplicas": 1,
    "availableReplicas": 1,
    "conditions": progressing("NewReplicaSetAvailable"),
}


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        pytest.param(deployment(**DONE), None, id="rolled-out"),
        pytest.param(
            deployment(**{**DONE, "observedGeneration": 1}),
            "its new generation is not observed yet",
            id="generation-not-observed",
        ),
        pytest.param(
            deployment(**{**DONE, "updatedReplicas": 0}), "0 of 1 replicas updated", id="updating"
        ),
        pytest.param(
            deployment(**{**DONE, "replicas": 2}),
            "old replicas are still terminating",
            id="old-replica-left",
        ),
        pytest.param(
            deployment(**{**DONE, "availableReplicas": 0}),
            "0 of 1 replicas available",
            id="not-available",
        ),
        pytest.param(
            deployment(
                **{
                    **DONE,
                    "conditions": progressing(
                        "ReplicaSetUpdated", 'ReplicaSet "x" is progressing.'
                    ),
                }
            ),
            'ReplicaSet "x" is progressing.',
            id="last-status-write-to-come",
        ),
        pytest.param(
            deployment(
                **{**DONE, "conditions": progressing("ProgressDeadlineExceeded", "too slow")}
            ),
            "too slow",
            id="deadline-exceeded",
        ),
        pytest.param(deployment(), "its new generation is not observed yet", id="no-status"),
    ],
)
def test_a_deployment_has_rolled_out(obj: dict[str, Any], problem: str | None) -> None:
    assert rollout_problem(obj) == problem


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param([{"type": "Established", "status": "True"}], True, id="established"),
        pytest.param([{"type": "Established", "status": "False"}], False, id="not-yet"),
        pytest.param(None, False, id="no-status"),
    ],
)
def test_a_crd_is_established(conditions: list[dict[str, str]] | None, expected: bool) -> None:
    crd: dict[str, Any] = {"metadata": {"name": "x"}, "status": {"conditions": conditions}}

    assert established(crd) is expected
