"""The runtime's dependsOn check (``controllers.dependencies``), which the kustomize and helm
controllers share, and the helm controller's use of it."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.cel import InvalidExpression
from controllers.dependencies import (
    DependencyNotReady,
    check_dependencies,
    cross_namespace_dependency,
    dependents_to_requeue,
    why_not_ready,
)
from helm import dependencies as helm_dependencies
from helm.api_v2 import DependencyReference, HelmRelease
from helm.settings import unsupported_settings


def release(
    name: str,
    *,
    namespace: str = "apps",
    ready: str | None = "True",
    generation: int = 1,
    observed: int = 1,
    version: str = "v1",
    depends_on: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A HelmRelease as the API server returns it."""
    status: dict[str, Any] = {"observedGeneration": observed}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "x", "message": ""}]
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"values": {"app": {"version": version}}, "dependsOn": depends_on or []},
        "status": status,
    }


FRONTEND = release("frontend", version="v2")
SAME_VERSION = "dep.spec.values.app.version == self.spec.values.app.version"


def helm_not_found(key: str, name: str) -> str:
    return f"unable to get '{key}' dependency: {name}"


def behind(key: str, dependency: dict[str, Any]) -> str | None:
    """A kind's own rule, as the kustomize controller's source revision: here, the version."""
    version = dependency["spec"]["values"]["app"]["version"]
    return None if version == "v2" else f"dependency '{key}' is at {version}"


@pytest.mark.parametrize(
    ("ref", "dependency", "options", "expected"),
    [
        pytest.param(
            DependencyReference(name="backend"),
            None,
            {},
            "dependency 'apps/backend' not found",
            id="missing-default-message",
        ),
        pytest.param(
            DependencyReference(name="backend", namespace="infra"),
            None,
            {"not_found": helm_not_found},
            "unable to get 'infra/backend' dependency: backend",
            id="missing-kind-message-and-namespace",
        ),
        pytest.param(DependencyReference(name="backend"), release("backend"), {}, None, id="ready"),
        pytest.param(
            DependencyReference(name="backend"),
            release("backend", ready="False"),
            {},
            "dependency 'apps/backend' is not ready",
            id="not-ready",
        ),
        pytest.param(
            DependencyReference(name="backend"),
            release("backend", ready=None),
            {},
            "dependency 'apps/backend' is not ready",
            id="no-conditions",
        ),
        pytest.param(
            DependencyReference(name="backend"),
            release("backend", generation=2, observed=1),
            {},
            "dependency 'apps/backend' is not ready",
            id="generation-not-observed",
        ),
        pytest.param(
            DependencyReference(name="backend"),
            release("backend", version="v1"),
            {"extra_check": behind},
            "dependency 'apps/backend' is at v1",
            id="kind-rule",
        ),
        pytest.param(
            DependencyReference(name="backend"),
            release("backend", ready="False", version="v1"),
            {"extra_check": behind},
            "dependency 'apps/backend' is not ready",
            id="kind-rule-after-readiness",
        ),
        pytest.param(
            DependencyReference(name="backend", ready_expr=SAME_VERSION),
            release("backend", ready="False", version="v2"),
            {"extra_check": behind},
            None,
            id="expression-replaces-built-in-and-kind-rule",
        ),
        pytest.param(
            DependencyReference(name="backend", ready_expr=SAME_VERSION),
            release("backend", version="v1"),
            {},
            "dependency 'apps/backend' is not ready according to readyExpr eval",
            id="expression-false",
        ),
        pytest.param(
            DependencyReference(name="backend", ready_expr=SAME_VERSION),
            release("backend", ready="False", version="v2"),
            {"additive_cel": True},
            "dependency 'apps/backend' is not ready",
            id="additive-keeps-built-in",
        ),
        pytest.param(
            DependencyReference(name="backend", ready_expr="dep.status.phase == 'Done'"),
            release("backend"),
            {},
            "failed to evaluate the CEL expression 'dep.status.phase == 'Done'': "
            "no such key: phase",
            id="expression-cannot-be-evaluated",
        ),
    ],
)
def test_why_not_ready(
    ref: DependencyReference,
    dependency: dict[str, Any] | None,
    options: dict[str, Any],
    expected: str | None,
) -> None:
    assert why_not_ready(FRONTEND, ref, dependency, **options) == expected


def test_a_ready_expression_that_does_not_compile_names_the_dependency() -> None:
    ref = DependencyReference(name="backend", ready_expr="dep.status.")

    with pytest.raises(InvalidExpression, match=r"^failed to evaluate dependency backend: "):
        why_not_ready(FRONTEND, ref, release("backend"))


async def test_check_reads_each_dependency_in_order_and_stops_at_the_first_not_ready() -> None:
    cluster = {
        ("apps", "db"): release("db"),
        ("infra", "cache"): release("cache", namespace="infra", ready="False"),
        ("apps", "queue"): release("queue", ready="False"),
    }
    reads: list[tuple[str, str]] = []

    async def read(namespace: str, name: str) -> dict[str, Any] | None:
        reads.append((namespace, name))
        return cluster.get((namespace, name))

    refs = [
        DependencyReference(name="db"),
        DependencyReference(name="cache", namespace="infra"),
        DependencyReference(name="queue"),
    ]
    with pytest.raises(DependencyNotReady) as caught:
        await check_dependencies(FRONTEND, refs, read)

    assert str(caught.value) == "dependency 'infra/cache' is not ready"
    assert reads == [("apps", "db"), ("infra", "cache")]

    cluster[("infra", "cache")] = release("cache", namespace="infra")
    cluster[("apps", "queue")] = release("queue")
    await check_dependencies(FRONTEND, refs, read)  # all ready: returns


# Dependents of HelmReleases: no rule on a revision, so only those waiting are requeued.
WAITING_ON_DB = [
    release("ready-app", depends_on=[{"name": "db"}]),
    release("waiting-app", ready="False", depends_on=[{"name": "db"}]),
    release(
        "elsewhere",
        namespace="other",
        ready="False",
        depends_on=[{"name": "db", "namespace": "apps"}],
    ),
    release(
        "same-name-other-namespace", namespace="other", ready="False", depends_on=[{"name": "db"}]
    ),
    release("unrelated", ready="False", depends_on=[{"name": "cache"}]),
]


@pytest.mark.parametrize(
    ("old", "new", "revision_of", "expected"),
    [
        pytest.param(
            release("db", ready="False"),
            release("db"),
            None,
            ["apps/waiting-app", "other/elsewhere"],
            id="became-ready-waiting-dependents",
        ),
        pytest.param(
            release("db", generation=2, observed=1),
            release("db", generation=2, observed=2),
            None,
            ["apps/waiting-app", "other/elsewhere"],
            id="observed-new-generation",
        ),
        pytest.param(
            None, release("db"), None, ["apps/waiting-app", "other/elsewhere"], id="created-ready"
        ),
        pytest.param(release("db"), release("db", version="v3"), None, [], id="still-ready"),
        pytest.param(release("db"), release("db", ready="False"), None, [], id="not-ready"),
        pytest.param(release("db"), None, None, [], id="deleted"),
        pytest.param(
            release("db"),
            release("db", version="v3"),
            lambda raw: raw["spec"]["values"]["app"]["version"],
            ["apps/ready-app", "apps/waiting-app", "other/elsewhere"],
            id="new-revision-all-dependents",
        ),
    ],
)
def test_dependents_to_requeue(
    old: dict[str, Any] | None, new: dict[str, Any] | None, revision_of: Any, expected: list[str]
) -> None:
    assert dependents_to_requeue(old, new, WAITING_ON_DB, revision_of=revision_of) == expected


def test_helm_requeues_only_waiting_dependents() -> None:
    assert helm_dependencies.dependents_of_ready(release("db"), release("db"), WAITING_ON_DB) == []
    assert helm_dependencies.dependents_of_ready(
        release("db", ready="Unknown"), release("db"), WAITING_ON_DB
    ) == ["apps/waiting-app", "other/elsewhere"]


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        pytest.param([], "", id="none"),
        pytest.param([DependencyReference(name="db")], "", id="default-namespace"),
        pytest.param([DependencyReference(name="db", namespace="apps")], "", id="own-namespace"),
        pytest.param(
            [DependencyReference(name="db"), DependencyReference(name="cache", namespace="infra")],
            "can't access 'HelmRelease/infra/cache', cross-namespace references have been blocked",
            id="other-namespace",
        ),
    ],
)
def test_cross_namespace_dependency(refs: list[DependencyReference], expected: str) -> None:
    assert cross_namespace_dependency("HelmRelease", "apps", refs) == expected


def test_helm_reports_a_missing_dependency_as_flux_does() -> None:
    # helm-controller reads the dependency from the API server and wraps its NotFound error.
    assert helm_dependencies._not_found("apps/db", "db") == (
        "unable to get 'apps/db' dependency: helmreleases.helm.toolkit.fluxcd.io \"db\" not found"
    )


def test_depends_on_is_no_longer_refused() -> None:
    obj = HelmRelease.from_dict(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "frontend", "namespace": "apps"},
            "spec": {
                "interval": "5m",
                "chart": {
                    "spec": {
                        "chart": "podinfo",
                        "sourceRef": {"kind": "HelmRepository", "name": "c"},
                    }
                },
                "dependsOn": [{"name": "db", "readyExpr": SAME_VERSION}],
            },
        }
    )
    assert unsupported_settings(obj) == []
