"""A release survives the helm controller stopping in the middle of an upgrade (issue 12,
acceptance 6): stopped gracefully (SIGTERM), the in-flight upgrade is cancelled and Helm
records it failed; killed (SIGKILL), the release is left ``pending-upgrade`` and the next
start unlocks it as Flux does. Either way the next start upgrades to the desired chart.
And a deleted HelmRelease with ``uninstall.keepHistory`` leaves Helm's history.

The upgrade that hangs is a chart whose pre-upgrade hook Pod never ends (kwok keeps a bare
Pod running)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.kinds import EVENT, SECRET
from controllers.kube import KubeClient
from tests.integration.harness import wait_for_deletion, wait_for_object
from tests.integration.kinds import DEPLOYMENT
from tests.integration.processes import Controllers
from tests.integration.test_helmchart import refetch_index
from tests.integration.test_helmrelease import HR, controllers, helm_cli, helmrelease, released
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    helmrepository,
    plain,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRelease and HelmRepository tests.
__all__ = ["charts", "controllers", "plain"]

HOOK = """\
apiVersion: v1
kind: Pod
metadata:
  name: "{{ include "podinfo.fullname" . }}-pre-upgrade"
  annotations:
    "helm.sh/hook": pre-upgrade
    "helm.sh/hook-delete-policy": before-hook-creation
spec:
  restartPolicy: Never
  containers:
    - name: wait
      image: example.invalid/wait:1
"""


def chart_spec(version: str) -> dict[str, Any]:
    return {
        "spec": {
            "chart": "podinfo",
            "version": version,
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
        }
    }


async def stored_status(kube: KubeClient, namespace: str, version: int) -> str | None:
    """The status label of Helm's Secret for revision ``version`` of ``app``."""
    secret = await kube.get_or_none(SECRET, namespace, f"sh.helm.release.v1.app.v{version}")
    return None if secret is None else secret["metadata"]["labels"].get("status")


async def hanging_upgrade(
    kube: KubeClient, namespace: str, controllers: Controllers, charts: ChartRepository, url: str
) -> None:
    """Installed at 1.0.0, then an upgrade to 1.1.0 under way: its hook never ends."""
    await kube.create(HELMREPO, helmrepository("charts", namespace, url))
    await kube.create(
        HR, helmrelease("app", namespace, values={"replicaCount": 1}, chart=chart_spec("1.0.0"))
    )
    installed = f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.0"
    await controllers.wait_for(kube, HR, namespace, "app", released(installed), "installed", 150)
    hook = charts.work / "podinfo" / "templates" / "hang.yaml"
    hook.write_text(HOOK)
    charts.add("podinfo", "1.1.0")
    hook.unlink()
    charts.add("podinfo", "1.2.0")
    await refetch_index(kube, namespace, "more-versions")
    await kube.patch(HR, namespace, "app", {"spec": {"chart": chart_spec("1.1.0")}})
    # Helm stores revision 2 as pending-upgrade, then waits for the hook.
    await wait_for_object(
        kube,
        SECRET,
        namespace,
        "sh.helm.release.v1.app.v2",
        lambda o: o["metadata"]["labels"].get("status") == "pending-upgrade",
        60,
    )


async def recovered(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    control_plane: ControlPlane,
    home: Path,
) -> list[tuple[Any, ...]]:
    """Restarted with the spec at 1.2.0: upgraded; Helm's history of ``app``."""
    await kube.patch(HR, namespace, "app", {"spec": {"chart": chart_spec("1.2.0")}})
    await controllers.processes[1].start()
    upgraded = f"Helm upgrade succeeded for release {namespace}/app.v3 with chart podinfo@1.2.0"
    await controllers.wait_for(kube, HR, namespace, "app", released(upgraded), "upgraded", 150)
    history = helm_cli(control_plane, home, "history", "app", f"-n={namespace}")
    return [(h["revision"], h["status"], h["chart"], h["description"]) for h in history]


async def test_an_upgrade_cancelled_at_shutdown_is_recovered_on_the_next_start(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    await hanging_upgrade(kube, namespace, controllers, charts, plain)

    assert await controllers.processes[1].stop() == 0  # SIGTERM: graceful, then cancelled
    assert await stored_status(kube, namespace, 2) == "failed"

    history = await recovered(kube, namespace, controllers, control_plane, tmp_path)
    assert [h[:3] for h in history] == [
        (1, "superseded", "podinfo-1.0.0"),
        (2, "failed", "podinfo-1.1.0"),
        (3, "deployed", "podinfo-1.2.0"),
    ]


async def test_a_release_left_pending_by_a_killed_controller_is_unlocked(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    await hanging_upgrade(kube, namespace, controllers, charts, plain)
    helm = controllers.processes[1]
    assert helm.process is not None
    helm.process.send_signal(signal.SIGKILL)
    assert await helm.process.wait() == -signal.SIGKILL
    assert await stored_status(kube, namespace, 2) == "pending-upgrade"

    history = await recovered(kube, namespace, controllers, control_plane, tmp_path)
    assert history[1] == (
        2,
        "failed",
        "podinfo-1.1.0",
        "Release unlocked from stale 'pending-upgrade' state",
    )
    assert history[2][:3] == (3, "deployed", "podinfo-1.2.0")
    events = (await kube.list(EVENT, namespace))["items"]
    unlocked = [e["message"] for e in events if e["reason"] == "PendingRelease"]
    assert unlocked == [
        f"Unlocked Helm release {namespace}/app.v2 with chart podinfo@1.1.0 in "
        "pending-upgrade state"
    ]


async def test_a_deleted_release_keeps_its_history_when_asked(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(
        HR,
        helmrelease("app", namespace, values={"replicaCount": 1}, uninstall={"keepHistory": True}),
    )
    installed = f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.0"
    await controllers.wait_for(kube, HR, namespace, "app", released(installed), "installed", 150)

    await kube.delete(HR, namespace, "app")
    await wait_for_deletion(kube, HR, namespace, "app", timeout=120)

    history = helm_cli(control_plane, tmp_path, "history", "app", f"-n={namespace}")
    assert [(h["revision"], h["status"]) for h in history] == [(1, "uninstalled")]
    assert await kube.get_or_none(DEPLOYMENT, namespace, "app-podinfo") is None
