"""CEL in Kustomizations against the real control plane: healthCheckExprs decide the health
of a custom resource, a dependsOn readyExpr gates a dependent, and expressions that do not
compile stall the Kustomization."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper
from controllers.envtest import ControlPlane
from controllers.health import wait_for
from controllers.inventory import ObjectRef
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from kustomize.api_v1 import Kustomization
from kustomize.kustomization import KustomizationReconciler
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.conftest import SourceController
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.integration.kinds import GITREPO, git_repository

pytestmark = pytest.mark.integration

KS = Kustomization.info
CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
CRD = ResourceInfo(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
)
TERMINAL = "Reconciliation failed terminally due to configuration error: "


@pytest.fixture
async def kustomize_controller(
    control_plane: ControlPlane, namespace: str, source_controller: SourceController
) -> AsyncIterator[None]:
    """The Kustomization reconciler beside the source controller, as in production."""
    opts = options(control_plane, namespace, name="kustomize-controller")
    async with running(opts, [KustomizationReconciler()]):
        yield


@pytest.fixture
async def widgets(kube: KubeClient) -> AsyncIterator[ResourceInfo]:
    """A Widget kind, with a status subresource its own controller (the test) writes."""
    group = f"{uuid.uuid4().hex[:8]}.weir.example.com"
    info = ResourceInfo(group=group, version="v1", kind="Widget", plural="widgets")
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    crd = await kube.create(
        CRD,
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": schema},
                    }
                ],
            },
        },
    )
    try:
        await wait_for(kube, RestMapper(kube), [ObjectRef.of(crd)], timeout=10)
        yield info
    finally:
        await kube.delete(CRD, None, crd["metadata"]["name"])


def kustomization(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": KS.api_version,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "prune": True,
            "targetNamespace": namespace,
            "sourceRef": {"kind": "GitRepository", "name": "app"},
            **spec,
        },
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def reason_is(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: condition(obj, "Ready").get("reason") == reason


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (
        (obj.get("status") or {}).get("lastAppliedRevision") == revision and is_ready(obj)
    )


async def reconcile_now(kube: KubeClient, namespace: str, name: str) -> None:
    annotations = {REQUESTED_AT: uuid.uuid4().hex}
    await kube.patch(KS, namespace, name, {"metadata": {"annotations": annotations}})


async def test_health_check_exprs_decide_the_health_of_a_custom_resource(
    kube: KubeClient,
    namespace: str,
    kustomize_controller: None,
    widgets: ResourceInfo,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    repo = f"cel-health-{namespace}"
    git_repos.create(repo)
    widget = f"apiVersion: {widgets.api_version}\nkind: Widget\nmetadata:\n  name: w\nspec: {{}}\n"
    commit = git_repos.commit(repo, {"widgets/w.yaml": widget}, "a widget")
    await kube.create(
        GITREPO, git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"})
    )
    exprs = {
        "apiVersion": widgets.api_version,
        "kind": "Widget",
        "current": "status.phase == 'Ready'",
        "failed": "status.phase == 'Failed'",
    }
    await kube.create(
        KS,
        kustomization(
            namespace,
            "widgets",
            path="./widgets",
            wait=True,
            timeout="1m",
            healthCheckExprs=[exprs],
        ),
    )

    # Applied without the status the expressions read: the health check waits for it.
    checking = await wait_for_object(
        kube, KS, namespace, "widgets", lambda o: condition(o, "Healthy").get("status") == "Unknown"
    )
    assert not is_ready(checking)

    # Its controller says Ready: current holds, the Kustomization is Ready and Healthy.
    await kube.patch(widgets, namespace, "w", {"status": {"phase": "Ready"}}, subresource="status")
    ready = await wait_for_object(kube, KS, namespace, "widgets", applied(f"main@sha1:{commit}"))
    assert condition(ready, "Healthy")["status"] == "True"
    assert condition(ready, "Healthy")["message"].startswith("Health check passed in ")

    # It fails: failed holds, and the next run fails its health check at once, saying so.
    await kube.patch(widgets, namespace, "w", {"status": {"phase": "Failed"}}, subresource="status")
    await reconcile_now(kube, namespace, "widgets")
    failed = await wait_for_object(kube, KS, namespace, "widgets", reason_is("HealthCheckFailed"))
    message = condition(failed, "Ready")["message"]
    assert message.startswith("health check failed after ")
    assert message.endswith(
        f"failed early due to stalled resources: [Widget/{namespace}/w status: 'Failed']"
    )
    assert condition(failed, "Healthy")["status"] == "False"


async def test_a_ready_expression_gates_the_dependent(
    kube: KubeClient,
    namespace: str,
    kustomize_controller: None,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    repo = f"cel-deps-{namespace}"
    git_repos.create(repo)
    frontend_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frontend\n"
    commit = git_repos.commit(repo, {"frontend/cm.yaml": frontend_cm}, "frontend")
    await kube.create(
        GITREPO, git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"})
    )
    # The backend never becomes Ready (its path does not exist): only the expression, which
    # replaces the built-in readiness check, decides for the frontend.
    backend = kustomization(namespace, "backend", path="./missing")
    backend["metadata"]["labels"] = {"app/version": "v1"}
    await kube.create(KS, backend)
    same_version = "dep.metadata.labels['app/version'] == self.metadata.labels['app/version']"
    frontend = kustomization(
        namespace,
        "frontend",
        path="./frontend",
        dependsOn=[{"name": "backend", "readyExpr": same_version}],
    )
    frontend["metadata"]["labels"] = {"app/version": "v2"}
    await kube.create(KS, frontend)

    waiting = await wait_for_object(
        kube, KS, namespace, "frontend", reason_is("DependencyNotReady")
    )
    assert condition(waiting, "Ready")["message"] == (
        f"dependency '{namespace}/backend' is not ready according to readyExpr eval"
    )
    assert await kube.get_or_none(CONFIG_MAP, namespace, "frontend") is None

    # The backend moves to v2: the expression holds, the frontend is applied.
    labels = {"metadata": {"labels": {"app/version": "v2"}}}
    await kube.patch(KS, namespace, "backend", labels)
    await reconcile_now(kube, namespace, "frontend")
    await wait_for_object(kube, KS, namespace, "frontend", applied(f"main@sha1:{commit}"))
    assert await kube.get_or_none(CONFIG_MAP, namespace, "frontend") is not None
    assert not is_ready(await kube.get(KS, namespace, "backend"))

    # An expression that does not compile stalls it: no retry fixes the spec.
    broken = {"spec": {"dependsOn": [{"name": "backend", "readyExpr": "dep.metadata."}]}}
    await kube.patch(KS, namespace, "frontend", broken)
    stalled = await wait_for_object(
        kube, KS, namespace, "frontend", reason_is("InvalidCELExpression")
    )
    assert condition(stalled, "Stalled")["status"] == "True"
    assert condition(stalled, "Ready")["message"].startswith(
        f"{TERMINAL}terminal error: failed to evaluate dependency backend: "
        "failed to parse the CEL expression 'dep.metadata.': ERROR: <input>:1:14: Syntax error"
    )


async def test_health_check_exprs_that_do_not_compile_stall_before_the_source_is_looked_up(
    kube: KubeClient, namespace: str, kustomize_controller: None
) -> None:
    exprs = {"apiVersion": "example.com/v1", "kind": "Widget", "current": "status.phase =="}
    # Its GitRepository does not exist: Flux checks the expressions first.
    await kube.create(KS, kustomization(namespace, "broken", healthCheckExprs=[exprs]))

    stalled = await wait_for_object(
        kube, KS, namespace, "broken", reason_is("InvalidCELExpression")
    )
    assert condition(stalled, "Stalled")["status"] == "True"
    assert condition(stalled, "Ready")["message"].startswith(
        f"{TERMINAL}failed to create custom status evaluator for healthchecks[0]: "
        "failed to parse the expression Current: failed to parse the CEL expression "
        "'status.phase ==': ERROR: <input>:1:16: Syntax error"
    )
