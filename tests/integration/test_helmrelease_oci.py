"""HelmRelease from an OCI Helm repository, end to end: the chart pushed with the Go-built
``helm push`` to Debian's ``docker-registry``, the source controller and the helm controller as
processes, and the release checked with the Go-built ``helm history``."""

from __future__ import annotations

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from helm.chart import HELM_CHART
from tests.integration.processes import Controllers
from tests.integration.test_helmchart_oci import ChartPusher, oci_repository, pusher
from tests.integration.test_helmrelease import (
    HR,
    controllers,
    helm_cli,
    helmrelease,
    released,
)
from tests.integration.test_helmrepository import HELMREPO
from tests.registry import OCIRegistries

pytestmark = pytest.mark.integration

__all__ = ["controllers", "pusher"]


async def test_a_chart_pushed_to_an_oci_registry_is_installed(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
    control_plane: ControlPlane,
) -> None:
    registry = oci_registry.plain
    pusher.push(registry, namespace, pusher.package("1.0.0"))
    pusher.push(registry, namespace, pusher.package("1.1.0"))
    await kube.create(HELMREPO, oci_repository(namespace, registry))
    await kube.create(HR, helmrelease("app", namespace, values={"replicaCount": 1}))

    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.1.0"),
        "installed from the registry",
        timeout=150,
    )
    assert obj["status"]["lastAttemptedRevision"] == "1.1.0"
    chart = await kube.get(HELM_CHART, namespace, f"{namespace}-app")
    assert chart["status"]["artifact"]["revision"] == "1.1.0"
    history = helm_cli(
        control_plane, pusher.home / "cli", "history", "app", f"--namespace={namespace}"
    )
    assert [(r["revision"], r["status"], r["chart"]) for r in history] == [
        (1, "deployed", "podinfo-1.1.0")
    ]
