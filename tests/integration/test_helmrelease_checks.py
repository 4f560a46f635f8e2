"""What the helm controller does with a release in sync, end to end (issue 12, acceptance 4 and
5): drift reported (``warn``), corrected (``enabled``) or left alone (``ignore``), and
``helm test`` run after each release, its failures remediated or ignored as configured. The
source and helm controllers run as processes; kwok ends test pods (``weir.test/outcome:
failed`` makes one fail); the Go-built ``helm`` reads what weir's Helm stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import TEST_OUTCOME_ANNOTATION, ControlPlane
from controllers.kinds import EVENT
from controllers.kube import APPLY_PATCH, KubeClient, resource_path
from controllers.reconcile import REQUESTED_AT
from tests.integration.cli import Cli
from tests.integration.kinds import DEPLOYMENT
from tests.integration.processes import Controllers
from tests.integration.test_helmchart import refetch_index
from tests.integration.test_helmrelease import (
    HR,
    controllers,
    helm_cli,
    helmrelease,
    released,
    stalled,
)
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRelease and HelmRepository tests.
__all__ = ["charts", "controllers", "plain"]

INSTALLED = "Helm install succeeded for release {ns}/app.v1 with chart podinfo@1.0.0"


async def install(kube: KubeClient, namespace: str, controllers: Controllers, **spec: Any) -> None:
    await kube.create(HR, helmrelease("app", namespace, values={"replicaCount": 1}, **spec))
    await controllers.wait_for(
        kube, HR, namespace, "app", released(INSTALLED.format(ns=namespace)), "installed", 150
    )


async def scale_by_hand(kube: KubeClient, namespace: str, replicas: int) -> None:
    """``kubectl scale``, as another field manager would."""
    path = resource_path(DEPLOYMENT, namespace, "app-podinfo")
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app-podinfo", "namespace": namespace},
        "spec": {"replicas": replicas},
    }
    await kube.request(
        "PATCH",
        path,
        query={"fieldManager": "kubectl-scale", "force": "true"},
        body=body,
        content_type=APPLY_PATCH,
    )


async def replicas(kube: KubeClient, namespace: str) -> int:
    return int((await kube.get(DEPLOYMENT, namespace, "app-podinfo"))["spec"]["replicas"])


async def reconciled(
    kube: KubeClient, namespace: str, controllers: Controllers, token: str
) -> dict[str, Any]:
    """Ask for a run and wait until it is done."""
    await kube.patch(HR, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: token}}})
    return await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == token,
        f"reconciled ({token})",
        60,
    )


def drifted(obj: dict[str, Any]) -> tuple[str, str, str]:
    found = condition(obj, "Drifted")
    assert found is not None, "no Drifted condition"
    return found["status"], found["reason"], found["message"]


async def event_messages(kube: KubeClient, namespace: str, reason: str) -> list[str]:
    items = (await kube.list(EVENT, namespace))["items"]
    return [e["message"] for e in items if e["reason"] == reason]


async def test_drift_is_reported_corrected_or_ignored_as_configured(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await install(kube, namespace, controllers, driftDetection={"mode": "warn"})
    obj = await reconciled(kube, namespace, controllers, "clean")
    assert drifted(obj)[:2] == ("False", "NoDriftDetected")
    # The release's objects (the test hook left out), namespaced ones in its namespace.
    assert sorted((e["id"], e["v"]) for e in obj["status"]["inventory"]["entries"]) == [
        (f"{namespace}_app-podinfo__Service", "v1"),
        (f"{namespace}_app-podinfo__ServiceAccount", "v1"),
        (f"{namespace}_app-podinfo_apps_Deployment", "v1"),
    ]

    # warn: reported (condition naming object and field, a Warning event), not reverted.
    await scale_by_hand(kube, namespace, 3)
    obj = await reconciled(kube, namespace, controllers, "warn")
    status, reason, message = drifted(obj)
    assert (status, reason) == ("True", "DriftDetected")
    assert f"Deployment/{namespace}/app-podinfo changed" in message
    assert "/spec/replicas" in message
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
    assert await replicas(kube, namespace) == 3
    warnings = await event_messages(kube, namespace, "DriftDetected")
    assert any("/spec/replicas" in m for m in warnings)

    # enabled: corrected, and the next look finds nothing.
    await kube.patch(HR, namespace, "app", {"spec": {"driftDetection": {"mode": "enabled"}}})
    await controllers.wait_for(
        kube, HR, namespace, "app", lambda o: o["status"].get("observedGeneration") == 2, "run", 60
    )
    assert await replicas(kube, namespace) == 1
    assert await event_messages(kube, namespace, "DriftCorrected")
    obj = await reconciled(kube, namespace, controllers, "corrected")
    assert drifted(obj)[:2] == ("False", "NoDriftDetected")

    # An ignore rule for replicas (an autoscaler's field): left alone, no drift.
    ignore = [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]
    await kube.patch(
        HR,
        namespace,
        "app",
        {"spec": {"driftDetection": {"mode": "enabled", "ignore": ignore}}},
    )
    await scale_by_hand(kube, namespace, 5)
    obj = await reconciled(kube, namespace, controllers, "ignored")
    assert drifted(obj)[:2] == ("False", "NoDriftDetected")
    assert await replicas(kube, namespace) == 5


def add_failing_test(charts: ChartRepository, version: str) -> None:
    """A second test hook, one kwok makes fail, in the chart at ``version``."""
    hook = charts.work / "podinfo" / "templates" / "tests" / "test-fails.yaml"
    hook.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n"
        '  name: "{{ include "podinfo.fullname" . }}-test-fails"\n'
        "  annotations:\n"
        '    "helm.sh/hook": test\n'
        f'    "{TEST_OUTCOME_ANNOTATION}": failed\n'
        "spec:\n  restartPolicy: Never\n"
        "  containers:\n    - name: check\n      image: example.invalid/check:1\n"
    )
    charts.add("podinfo", version)


async def test_tests_run_after_each_release_and_failures_are_remediated(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    upgrade = {"remediation": {"retries": 1, "strategy": "rollback"}}
    await kube.create(
        HR,
        helmrelease(
            "app", namespace, values={"replicaCount": 1}, test={"enable": True}, upgrade=upgrade
        ),
    )

    def tested(obj: dict[str, Any]) -> bool:
        found = condition(obj, "TestSuccess")
        return found is not None and found["reason"] == "TestSucceeded"

    obj = await controllers.wait_for(kube, HR, namespace, "app", tested, "tested", 150)
    assert condition(obj, "TestSuccess")["status"] == "True"  # type: ignore[index]
    hooks = obj["status"]["history"][0]["testHooks"]
    assert {name: hook["phase"] for name, hook in hooks.items()} == {
        "app-podinfo-test-connection": "Succeeded"
    }
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]

    # 1.1.0 adds a test that fails: the upgrade is rolled back, tried once more, rolled back
    # again (remediateLastFailure), then RetriesExceeded.
    add_failing_test(charts, "1.1.0")
    await refetch_index(kube, namespace, "1.1.0")
    obj = await controllers.wait_for(kube, HR, namespace, "app", stalled, "stalled", 240)
    assert condition(obj, "Ready")["reason"] == "RetriesExceeded"  # type: ignore[index]
    assert condition(obj, "Remediated")["reason"] == "RollbackSucceeded"  # type: ignore[index]
    failed = await event_messages(kube, namespace, "TestFailed")
    assert failed
    assert all("Helm test failed for release" in m for m in failed)
    history = helm_cli(control_plane, tmp_path / "cli", "history", "app", f"-n={namespace}")
    charts_by_revision = [(h["revision"], h["chart"], h["status"]) for h in history]
    assert charts_by_revision[-1] == (5, "podinfo-1.0.0", "deployed")
    assert [c for _, c, _ in charts_by_revision] == [
        "podinfo-1.0.0",
        "podinfo-1.1.0",
        "podinfo-1.0.0",
        "podinfo-1.1.0",
        "podinfo-1.0.0",
    ]


async def test_ignored_test_failures_leave_the_release_ready(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
) -> None:
    add_failing_test(charts, "1.0.1")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(
        HR,
        helmrelease(
            "app",
            namespace,
            values={"replicaCount": 1},
            test={"enable": True, "ignoreFailures": True},
        ),
    )

    def test_failed(obj: dict[str, Any]) -> bool:
        found = condition(obj, "TestSuccess")
        return found is not None and found["reason"] == "TestFailed"

    obj = await controllers.wait_for(kube, HR, namespace, "app", test_failed, "tested", 150)
    assert condition(obj, "TestSuccess")["status"] == "False"  # type: ignore[index]
    ready = condition(obj, "Ready")
    assert ready is not None
    assert (ready["status"], ready["message"]) == (
        "True",
        f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.1",
    )
    assert not obj["status"].get("installFailures")
    # Tested once: a run later does not test again.
    obj = await reconciled(kube, namespace, controllers, "later")
    assert len(await event_messages(kube, namespace, "TestFailed")) == 1


async def test_reconcile_force_upgrades_a_release_in_sync_once(
    cli: Cli,
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await install(kube, namespace, controllers)

    forced = await cli("reconcile", "helmrelease", "app", "--force", f"-n={namespace}")
    assert forced.code == 0, forced.err
    upgraded = f"Helm upgrade succeeded for release {namespace}/app.v2 with chart podinfo@1.0.0"
    obj = await controllers.wait_for(kube, HR, namespace, "app", released(upgraded), "forced", 60)
    assert obj["status"]["lastHandledForceAt"] == obj["status"]["lastHandledReconcileAt"]

    # Handled once: a plain reconcile afterwards makes no new revision.
    await reconciled(kube, namespace, controllers, "plain")
    history = helm_cli(control_plane, tmp_path, "history", "app", f"-n={namespace}")
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
