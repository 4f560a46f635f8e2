"""HelmRelease ``dependsOn`` end to end: the source controller and the helm controller as
processes; a release waits (``DependencyNotReady``) for the release it depends on, and goes on
as soon as that one is Ready, requeued by the helm controller's watch on HelmReleases rather
than by ``--requeue-dependency``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from helm.chart import HELM_CHART
from tests.integration.processes import Controllers, helm_controller, source_controller
from tests.integration.test_helmrelease import HR, helm_cli, helmrelease, released
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
    reasons_once,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRepository tests.
__all__ = ["charts", "plain"]

# Far longer than the test may take: a dependent that goes on was requeued by the watch.
REQUEUE_DEPENDENCY = "10m"


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Controllers]:
    """The source controller and the helm controller (``--requeue-dependency=10m``), as
    processes watching ``namespace``; both must exit 0 on SIGTERM."""
    both = Controllers(
        source_controller(control_plane, namespace, tmp_path / "source"),
        helm_controller(
            control_plane,
            namespace,
            tmp_path / "helm",
            f"--requeue-dependency={REQUEUE_DEPENDENCY}",
        ),
    )
    try:
        for process in both.processes:
            await process.start()
        yield both
    finally:
        codes = {p.name: await p.stop() for p in both.processes if p.process is not None}
        print(both.logs())
    assert codes == {p.name: 0 for p in both.processes}


def waiting(message: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready") or {}
        return (ready.get("status"), ready.get("reason"), ready.get("message")) == (
            "False",
            "DependencyNotReady",
            message,
        )

    return check


async def test_a_release_waits_for_its_dependency_then_installs_at_once(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    home = tmp_path / "helm-cli"
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    # frontend depends on backend, which does not exist yet.
    await kube.create(HR, helmrelease("frontend", namespace, dependsOn=[{"name": "backend"}]))

    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "frontend",
        waiting(
            f"unable to get '{namespace}/backend' dependency: "
            'helmreleases.helm.toolkit.fluxcd.io "backend" not found'
        ),
        "waiting for a missing dependency",
    )
    reconciling = condition(obj, "Reconciling")
    assert reconciling is not None
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ProgressingWithRetry")
    # Nothing was made for it: the dependencies come before the chart.
    assert await kube.get_or_none(HELM_CHART, namespace, f"{namespace}-frontend") is None
    assert helm_cli(control_plane, home, "list", f"--namespace={namespace}") == []
    # Waiting is told as information, as Flux does.
    await reasons_once(kube, namespace, "frontend", "DependencyNotReady", 1)

    # backend appears and installs; frontend follows without waiting for the 10m requeue.
    await kube.create(HR, helmrelease("backend", namespace))
    backend = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "backend",
        released(
            f"Helm install succeeded for release {namespace}/backend.v1 with chart podinfo@1.0.0"
        ),
        "backend installed",
        timeout=150,
    )
    frontend = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "frontend",
        released(
            f"Helm install succeeded for release {namespace}/frontend.v1 with chart podinfo@1.0.0"
        ),
        "frontend installed once backend is ready",
        # Far under --requeue-dependency: only the watch can have requeued it in time.
        timeout=60,
    )
    # frontend was released after backend.
    [backend_snapshot] = backend["status"]["history"]
    [frontend_snapshot] = frontend["status"]["history"]
    assert frontend_snapshot["firstDeployed"] >= backend_snapshot["lastDeployed"]
    listed = helm_cli(control_plane, home, "list", f"--namespace={namespace}")
    assert sorted((r["name"], r["status"]) for r in listed) == [
        ("backend", "deployed"),
        ("frontend", "deployed"),
    ]
