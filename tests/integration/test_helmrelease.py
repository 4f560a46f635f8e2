"""HelmRelease end to end: the source controller and the helm controller as processes, a chart
repository built with the Go-built ``helm`` and served on loopback, the release installed,
upgraded and uninstalled by weir's Helm, and checked with the Go-built ``helm`` CLI and the
cluster's objects."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controllers.binaries import find_binary
from controllers.envtest import ControlPlane
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from helm.api_v2 import HelmRelease
from helm.chart import HELM_CHART
from helm.values import values_digest
from tests.helmcli import helm_env
from tests.integration.harness import wait_for_deletion
from tests.integration.kinds import DEPLOYMENT, NAMESPACE
from tests.integration.processes import Controllers, helm_controller, source_controller
from tests.integration.test_helmchart import refetch_index
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

HR = HelmRelease.info
# The fixtures this module shares with the HelmRepository tests.
__all__ = ["charts", "plain"]


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Controllers]:
    """The source controller and the helm controller, as processes watching ``namespace``;
    both must exit 0 on SIGTERM."""
    both = Controllers(
        source_controller(control_plane, namespace, tmp_path / "source"),
        helm_controller(control_plane, namespace, tmp_path / "helm"),
    )
    try:
        for process in both.processes:
            await process.start()
        yield both
    finally:
        codes = {p.name: await p.stop() for p in both.processes if p.process is not None}
        print(both.logs())
    assert codes == {p.name: 0 for p in both.processes}


def helmrelease(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": HR.api_version,
        "kind": HR.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "timeout": "2m",
            "chart": {
                "spec": {
                    "chart": "podinfo",
                    "version": "1.x",
                    "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                }
            },
            **spec,
        },
    }


def helm_cli(control_plane: ControlPlane, home: Path, *args: str) -> Any:
    """The Go-built ``helm`` on the test's control plane; its JSON output."""
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    env = helm_env(home, inherit=False)
    done = subprocess.run(
        [str(binary), f"--kubeconfig={control_plane.admin_kubeconfig}", *args, "-o=json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def released(message: str) -> Callable[[dict[str, Any]], bool]:
    """Ready, with ``message`` (Ready carries the Released condition's message)."""

    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready") or {}
        status = obj.get("status") or {}
        return (
            ready.get("status") == "True"
            and ready.get("message") == message
            and status.get("observedGeneration") == obj["metadata"]["generation"]
        )

    return check


def stalled(obj: dict[str, Any]) -> bool:
    found = condition(obj, "Stalled")
    return found is not None and found["status"] == "True"


async def test_a_release_is_installed_upgraded_and_uninstalled(
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
    values = {"replicaCount": 1, "podAnnotations": {"weir.test/round": "one"}}
    await kube.create(HR, helmrelease("app", namespace, values=values))

    # Installed: status as Flux writes it, the release as Helm sees it, the objects applied by
    # helm-controller, the HelmChart made from the template and owned through labels.
    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.0"),
        "installed",
        timeout=150,
    )
    status = obj["status"]
    assert status["helmChart"] == f"{namespace}/{namespace}-app"
    assert status["storageNamespace"] == namespace
    assert status["lastAttemptedRevision"] == "1.0.0"
    assert status["lastAttemptedConfigDigest"] == values_digest(values)
    assert status["lastAttemptedGeneration"] == 1
    assert status["lastAttemptedReleaseAction"] == "install"
    assert "lastAttemptedValuesChecksum" not in status
    assert "installFailures" not in status
    [snapshot] = status["history"]
    assert {
        k: v for k, v in snapshot.items() if k not in ("digest", "firstDeployed", "lastDeployed")
    } == {
        "apiVersion": "v2",
        "name": "app",
        "namespace": namespace,
        "version": 1,
        "status": "deployed",
        "action": "install",
        "chartName": "podinfo",
        "chartVersion": "1.0.0",
        "appVersion": "1.16.0",
        "configDigest": values_digest(values),
    }
    assert snapshot["digest"].startswith("sha256:")
    released_condition = condition(obj, "Released")
    assert released_condition is not None
    assert (released_condition["status"], released_condition["reason"]) == (
        "True",
        "InstallSucceeded",
    )
    listed = helm_cli(control_plane, home, "list", f"--namespace={namespace}")
    assert [(r["name"], r["revision"], r["status"], r["chart"]) for r in listed] == [
        ("app", "1", "deployed", "podinfo-1.0.0")
    ]
    deployment = await kube.get(DEPLOYMENT, namespace, "app-podinfo")
    managers = {entry["manager"] for entry in deployment["metadata"]["managedFields"]}
    assert "helm-controller" in managers
    chart = await kube.get(HELM_CHART, namespace, f"{namespace}-app")
    assert chart["metadata"]["labels"] == {
        "helm.toolkit.fluxcd.io/name": "app",
        "helm.toolkit.fluxcd.io/namespace": namespace,
    }
    assert chart["spec"]["version"] == "1.x"
    await reasons_once(kube, namespace, "app", "InstallSucceeded", 1)

    # New values: an upgrade to revision 2.
    values = {"replicaCount": 2, "podAnnotations": {"weir.test/round": "two"}}
    await kube.patch(HR, namespace, "app", {"spec": {"values": values}})
    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm upgrade succeeded for release {namespace}/app.v2 with chart podinfo@1.0.0"),
        "upgraded with new values",
        timeout=150,
    )
    assert [(s["version"], s["status"]) for s in obj["status"]["history"]] == [
        (2, "deployed"),
        (1, "superseded"),
    ]
    assert obj["status"]["lastAttemptedConfigDigest"] == values_digest(values)
    deployment = await kube.get(DEPLOYMENT, namespace, "app-podinfo")
    assert deployment["spec"]["replicas"] == 2

    # A new chart version in range: the HelmChart moves, and the release follows.
    charts.add("podinfo", "1.1.0")
    await refetch_index(kube, namespace, "new-chart")
    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm upgrade succeeded for release {namespace}/app.v3 with chart podinfo@1.1.0"),
        "upgraded to the new chart",
        timeout=150,
    )
    assert obj["status"]["lastAttemptedRevision"] == "1.1.0"
    history = helm_cli(control_plane, home, "history", "app", f"--namespace={namespace}")
    assert [(h["revision"], h["status"], h["chart"]) for h in history] == [
        (1, "superseded", "podinfo-1.0.0"),
        (2, "superseded", "podinfo-1.0.0"),
        (3, "deployed", "podinfo-1.1.0"),
    ]

    # Nothing changed: reconciled again, no new revision.
    await kube.patch(HR, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: "again"}}})
    again = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "again",
        "reconciled again",
    )
    assert again["status"]["history"] == obj["status"]["history"]
    history = helm_cli(control_plane, home, "history", "app", f"--namespace={namespace}")
    assert len(history) == 3

    # Deleted: uninstalled (no history kept), its objects and its HelmChart gone.
    await kube.delete(HR, namespace, "app")
    await wait_for_deletion(kube, HR, namespace, "app", timeout=120)
    assert helm_cli(control_plane, home, "list", f"--namespace={namespace}") == []
    secrets = (await kube.list(SECRET, namespace))["items"]
    assert not [s for s in secrets if s["type"] == "helm.sh/release.v1"]  # no history kept
    assert await kube.get_or_none(HELM_CHART, namespace, f"{namespace}-app") is None
    assert await kube.get_or_none(DEPLOYMENT, namespace, "app-podinfo") is None


async def test_settings_weir_does_not_implement_stall(
    kube: KubeClient, namespace: str, controllers: Controllers
) -> None:
    await kube.create(
        HR,
        helmrelease(
            "later",
            namespace,
            install={"crds": "CreateReplace"},
            upgrade={"crds": "CreateReplace"},
        ),
    )
    obj = await controllers.wait_for(kube, HR, namespace, "later", stalled, "stalled")
    ready = condition(obj, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "UnsupportedConfiguration")
    assert ready["message"] == "spec.install.crds, spec.upgrade.crds: not supported by weir yet"
    # Nothing was made for it.
    assert await kube.get_or_none(HELM_CHART, namespace, f"{namespace}-later") is None


async def test_a_failed_install_stalls_until_the_values_change(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """chartRef to a HelmChart, a targetNamespace the install creates (the release stored
    there too), values the API server refuses: the install fails once and is not retried
    (remediation is off) until the values change, which upgrades the failed release."""
    target = f"{namespace}-target"
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(
        HELM_CHART,
        {
            "apiVersion": HELM_CHART.api_version,
            "kind": HELM_CHART.kind,
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "chart": "podinfo",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                "interval": "10m",
            },
        },
    )
    obj = helmrelease(
        "app",
        namespace,
        targetNamespace=target,
        storageNamespace=target,
        install={"createNamespace": True},
        values={"replicaCount": "many"},
    )
    del obj["spec"]["chart"]
    obj["spec"]["chartRef"] = {"kind": "HelmChart", "name": "podinfo"}
    await kube.create(HR, obj)

    failed = await controllers.wait_for(kube, HR, namespace, "app", stalled, "stalled", 150)
    ready = condition(failed, "Ready")
    assert ready is not None
    assert (ready["reason"], ready["message"]) == (
        "RetriesExceeded",
        "Failed to install after 1 attempt(s)",
    )
    released_condition = condition(failed, "Released")
    assert released_condition is not None
    assert released_condition["reason"] == "InstallFailed"
    assert released_condition["message"].startswith(
        f"Helm install failed for release {target}/{target}-app with chart podinfo@1.0.0: "
    )
    status = failed["status"]
    assert (status["installFailures"], status["failures"]) == (1, 1)
    assert "helmChart" not in status
    assert [(s["version"], s["status"]) for s in status["history"]] == [(1, "failed")]
    await reasons_once(kube, namespace, "app", "InstallFailed", 1)

    await kube.patch(HR, namespace, "app", {"spec": {"values": {"replicaCount": 1}}})
    fixed = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(
            f"Helm upgrade succeeded for release {target}/{target}-app.v2 with chart podinfo@1.0.0"
        ),
        "upgraded",
        timeout=150,
    )
    assert "installFailures" not in fixed["status"]
    assert fixed["status"]["storageNamespace"] == target
    history = helm_cli(control_plane, tmp_path / "home", "history", f"{target}-app", f"-n={target}")
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
    assert await kube.get_or_none(DEPLOYMENT, target, f"{target}-app-podinfo") is not None
    await kube.delete(HR, namespace, "app")
    await wait_for_deletion(kube, HR, namespace, "app", timeout=120)
    # A HelmChart the release only referred to is not the controller's to delete.
    assert await kube.get_or_none(HELM_CHART, namespace, "podinfo") is not None
    await kube.delete(NAMESPACE, None, target)
