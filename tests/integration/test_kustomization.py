"""Kustomization reconciler in-process against the real control plane: dependsOn, history,
deletionPolicy. The acceptance tests with controller processes are in test_kustomize_e2e.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controllers.api import ResourceInfo
from controllers.envtest import ControlPlane, free_port
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from kustomize.kustomization import KustomizationReconciler
from source.gitrepository import GitRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.harness import (
    is_ready,
    options,
    running,
    wait_for_deletion,
    wait_for_object,
)
from tests.integration.kinds import GITREPO

pytestmark = pytest.mark.integration

KS = Kustomization.info
CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[None]:
    """The source and kustomize reconcilers, as two managers, and the artifact server."""
    port = free_port()
    storage = ArtifactStorage(tmp_path / "storage", f"127.0.0.1:{port}")
    server = await start_artifact_server(tmp_path / "storage", "127.0.0.1", port)
    source = options(control_plane, namespace, name="source-controller")
    applier = options(control_plane, namespace, name="kustomize-controller")
    try:
        async with (
            running(source, [GitRepositoryReconciler(storage)]),
            running(applier, [KustomizationReconciler()]),
        ):
            yield
    finally:
        await server.cleanup()


def git_repository(namespace: str, url: str) -> dict[str, Any]:
    """The GitRepository ``app`` every test here applies from."""
    return {
        "apiVersion": GITREPO.api_version,
        "kind": "GitRepository",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"url": url, "interval": "10m", "ref": {"branch": "main"}},
    }


def config_map(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value}\n"


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(status.get("lastAppliedRevision") == revision and is_ready(obj))

    return check


def ready_reason(obj: dict[str, Any]) -> str | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c.get("reason") for c in conditions if c["type"] == "Ready"), None)


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


async def test_depends_on_history_and_deletion_policies(
    kube: KubeClient,
    namespace: str,
    controllers: None,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    repo = f"deps-{namespace}"
    git_repos.create(repo)
    commit = git_repos.commit(
        repo,
        {"infra/cm.yaml": config_map("infra", "base"), "app/cm.yaml": config_map("app", "on")},
        "infra and app",
    )
    await kube.create(GITREPO, git_repository(namespace, git_daemon.url(repo)))
    # app waits for infra, which does not exist yet.
    await kube.create(
        KS,
        kustomization(
            namespace, "app", path="./app", dependsOn=[{"name": "infra"}], deletionPolicy="Orphan"
        ),
    )
    waiting = await wait_for_object(
        kube, KS, namespace, "app", lambda o: ready_reason(o) == "DependencyNotReady"
    )
    ready = next(c for c in waiting["status"]["conditions"] if c["type"] == "Ready")
    assert ready["message"] == f"dependency '{namespace}/infra' not found"
    assert await kube.get_or_none(CONFIG_MAP, namespace, "app") is None

    # Once infra is ready, app follows at once, not after --requeue-dependency (30s).
    await kube.create(
        KS,
        kustomization(namespace, "infra", path="./infra", prune=False, deletionPolicy="Delete"),
    )
    revision = f"main@sha1:{commit}"
    app = await wait_for_object(kube, KS, namespace, "app", applied(revision), timeout=20)
    infra = await kube.get(KS, namespace, "infra")
    assert (await kube.get(CONFIG_MAP, namespace, "app"))["data"] == {"value": "on"}

    snapshot = app["status"]["history"][0]
    assert snapshot["digest"].startswith("sha256:")
    assert snapshot["lastReconciledStatus"] == "ReconciliationSucceeded"
    assert snapshot["metadata"] == {"revision": revision}
    assert snapshot["totalReconciliations"] == 1
    assert infra["status"]["history"][0]["digest"] != snapshot["digest"]

    # Deleting them: infra (Delete, even with prune: false) takes its ConfigMap along, app
    # (Orphan, with prune: true) leaves its own in place.
    await kube.delete(KS, namespace, "infra")
    await kube.delete(KS, namespace, "app")
    await wait_for_deletion(kube, KS, namespace, "infra")
    await wait_for_deletion(kube, KS, namespace, "app")
    assert await kube.get_or_none(CONFIG_MAP, namespace, "infra") is None
    assert await kube.get_or_none(CONFIG_MAP, namespace, "app") is not None


async def test_no_cross_namespace_refs_stalls_references_to_other_namespaces(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    """With --no-cross-namespace-refs a tenant cannot reach another namespace's source or
    Kustomization; it is told so and not retried until its spec changes."""
    applier = options(control_plane, namespace, name="kustomize-controller")
    reconciler = KustomizationReconciler(no_cross_namespace_refs=True)
    source_ref = {"kind": "GitRepository", "name": "shared", "namespace": "flux-system"}
    depends_on = [{"name": "infra", "namespace": "flux-system"}]
    async with running(applier, [reconciler]):
        await kube.create(KS, kustomization(namespace, "source", path="./", sourceRef=source_ref))
        await kube.create(KS, kustomization(namespace, "deps", path="./", dependsOn=depends_on))
        for name, what in (
            ("source", "GitRepository/flux-system/shared"),
            ("deps", "Kustomization/flux-system/infra"),
        ):
            obj = await wait_for_object(
                kube, KS, namespace, name, lambda o: ready_reason(o) == "AccessDenied"
            )
            stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
            assert stalled["message"] == (
                f"can't access '{what}', cross-namespace references have been blocked"
            )


async def test_wait_for_termination_holds_the_kustomization_until_its_objects_are_gone(
    kube: KubeClient,
    namespace: str,
    controllers: None,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    repo = f"terminate-{namespace}"
    git_repos.create(repo)
    held = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n"
        "  finalizers: [weir.test/hold]\ndata: {value: x}\n"
    )
    commit = git_repos.commit(repo, {"app/cm.yaml": held}, "an object that is slow to go")
    await kube.create(GITREPO, git_repository(namespace, git_daemon.url(repo)))
    await kube.create(
        KS, kustomization(namespace, "app", path="./app", deletionPolicy="WaitForTermination")
    )
    await wait_for_object(kube, KS, namespace, "app", applied(f"main@sha1:{commit}"))

    await kube.delete(KS, namespace, "app")
    await wait_for_object(
        kube, CONFIG_MAP, namespace, "held", lambda o: bool(o["metadata"].get("deletionTimestamp"))
    )
    # The ConfigMap is terminating but not gone: the Kustomization waits for it (up to its
    # timeout, 30s), where the other policies let go at once.
    with pytest.raises(TimeoutError):
        await wait_for_deletion(kube, KS, namespace, "app", timeout=3)

    await kube.patch(CONFIG_MAP, namespace, "held", {"metadata": {"finalizers": None}})
    await wait_for_deletion(kube, KS, namespace, "app", timeout=10)
    assert await kube.get_or_none(CONFIG_MAP, namespace, "held") is None
