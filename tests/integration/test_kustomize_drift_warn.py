"""``spec.driftDetection.mode: warn`` (a weir extension) against the real API server and Git
server: a manual scale is reported (the ``Drifted`` condition and one ``DriftDetected``
Warning event naming ``Deployment/<ns>/web`` and ``/spec/replicas``) and left in place;
switching to ``enabled`` reverts it on the next run (issue 14, acceptance 2)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controllers.kinds import EVENT
from controllers.kube import KubeClient
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.harness import is_ready, wait_for_object
from tests.integration.kinds import GITREPO
from tests.integration.test_kustomize_ignore import (
    DEPLOYMENT,
    KS,
    applied,
    controllers,
    deployment,
    handled,
    our_entry,
    reconcile_now,
)

pytestmark = pytest.mark.integration

__all__ = ["controllers"]  # the fixture, shared with test_kustomize_ignore


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


async def drift_events(kube: KubeClient, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await kube.list(EVENT, namespace))["items"]
    return [
        e
        for e in items
        if e["reason"] == "DriftDetected" and e["involvedObject"]["kind"] == KS.kind
    ]


async def wait_for_drift_event(kube: KubeClient, namespace: str) -> list[dict[str, Any]]:
    """The DriftDetected events about Kustomizations, once there is one, watching."""
    async with asyncio.timeout(10):
        while True:
            page = await kube.list(EVENT, namespace)
            if await drift_events(kube, namespace):
                return await drift_events(kube, namespace)
            version = page["metadata"]["resourceVersion"]
            async for event in kube.watch(EVENT, version, namespace=namespace, timeout_seconds=10):
                if event.object.get("reason") == "DriftDetected":
                    return await drift_events(kube, namespace)


async def test_warn_reports_a_manual_scale_and_enabled_reverts_it(
    kube: KubeClient,
    namespace: str,
    controllers: None,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    repo = f"warn-{namespace}"
    git_repos.create(repo)
    first = git_repos.commit(repo, {"app/web.yaml": deployment("web", "nginx:1.25")}, "web")
    revision = f"main@sha1:{first}"
    await kube.create(
        GITREPO,
        {
            "apiVersion": GITREPO.api_version,
            "kind": "GitRepository",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {"url": git_daemon.url(repo), "interval": "10m", "ref": {"branch": "main"}},
        },
    )
    await kube.create(
        KS,
        {
            "apiVersion": KS.api_version,
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "interval": "10m",
                "prune": True,
                "path": "./app",
                "targetNamespace": namespace,
                "sourceRef": {"kind": "GitRepository", "name": "app"},
                "driftDetection": {"mode": "warn"},
            },
        },
    )
    # A new revision is applied in warn mode too; nothing drifted yet.
    ks = await wait_for_object(kube, KS, namespace, "app", applied(revision), timeout=20)
    drifted = condition(ks, "Drifted")
    assert drifted is not None
    assert (drifted["status"], drifted["reason"]) == ("False", "NoDriftDetected")

    # A manual scale, as `kubectl scale` does it.
    await kube.patch(
        DEPLOYMENT,
        namespace,
        "web",
        {"spec": {"replicas": 5}},
        subresource="scale",
        field_manager="kubectl",
    )
    before = await kube.get(DEPLOYMENT, namespace, "web")

    token = await reconcile_now(kube, KS, namespace, "app")
    ks = await wait_for_object(kube, KS, namespace, "app", handled(token))
    named = f"Deployment/{namespace}/web changed: /spec/replicas"
    drifted = condition(ks, "Drifted")
    assert drifted is not None
    assert (drifted["status"], drifted["reason"]) == ("True", "DriftDetected")
    assert named in drifted["message"]
    ready = condition(ks, "Ready")
    assert ready is not None
    assert ready["message"] == f"Applied revision: {revision}"
    # Left in place: nothing was applied.
    live = await kube.get(DEPLOYMENT, namespace, "web")
    assert live["spec"]["replicas"] == 5
    assert our_entry(live) == our_entry(before)
    assert live["metadata"]["generation"] == before["metadata"]["generation"]
    events = await wait_for_drift_event(kube, namespace)
    assert [e["type"] for e in events] == ["Warning"]
    assert named in events[0]["message"]

    # The same drift found again: the condition stays as it was, no second event.
    token = await reconcile_now(kube, KS, namespace, "app")
    ks = await wait_for_object(kube, KS, namespace, "app", handled(token))
    assert condition(ks, "Drifted") == drifted
    assert (await kube.get(DEPLOYMENT, namespace, "web"))["spec"]["replicas"] == 5

    # Switching to enabled: reverted on the next run, and Drifted gone as in Flux.
    await kube.patch(KS, namespace, "app", {"spec": {"driftDetection": {"mode": "enabled"}}})
    await wait_for_object(kube, DEPLOYMENT, namespace, "web", lambda o: o["spec"]["replicas"] == 2)
    ks = await wait_for_object(
        kube, KS, namespace, "app", lambda o: is_ready(o) and condition(o, "Drifted") is None
    )
    # The runs are sequential, so any event of the second warn run is recorded by now.
    assert len(await drift_events(kube, namespace)) == 1
