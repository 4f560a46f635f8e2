"""HelmRelease values from watched ConfigMaps and Secrets, end to end: a change to one labelled
``reconcile.fluxcd.io/watch: Enabled`` reconciles the release at once (its interval is ten
minutes), and upgrades it only when the merged values really changed."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from tests.integration.kinds import DEPLOYMENT
from tests.integration.processes import Controllers
from tests.integration.test_helmrelease import (
    HR,
    controllers,
    helm_cli,
    helmrelease,
    released,
)
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

WATCHED = {"reconcile.fluxcd.io/watch": "Enabled"}


async def pod_annotations(kube: KubeClient, namespace: str) -> dict[str, str]:
    deployment = await kube.get(DEPLOYMENT, namespace, "app-podinfo")
    return dict(deployment["spec"]["template"]["metadata"].get("annotations") or {})


async def test_a_watched_configmap_or_secret_change_upgrades_only_when_values_change(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    settings = "replicaCount: 1\npodAnnotations:\n  weir.test/round: one\n"
    await kube.create(
        CONFIG_MAP,
        {
            "metadata": {"name": "settings", "namespace": namespace, "labels": WATCHED},
            "data": {"values.yaml": settings},
        },
    )
    await kube.create(
        SECRET,
        {
            "metadata": {"name": "creds", "namespace": namespace, "labels": WATCHED},
            "data": {"token": base64.b64encode(b"first").decode()},
        },
    )
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    values_from = [
        {"kind": "ConfigMap", "name": "settings"},
        {
            "kind": "Secret",
            "name": "creds",
            "valuesKey": "token",
            "targetPath": "podAnnotations.token",
        },
    ]
    await kube.create(HR, helmrelease("app", namespace, valuesFrom=values_from))
    first = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.0"),
        "installed",
        timeout=150,
    )
    assert await pod_annotations(kube, namespace) == {"weir.test/round": "one", "token": "first"}

    # A change in the ConfigMap: an upgrade long before the ten-minute interval.
    changed = "replicaCount: 1\npodAnnotations:\n  weir.test/round: two\n"
    await kube.patch(CONFIG_MAP, namespace, "settings", {"data": {"values.yaml": changed}})
    upgraded = f"Helm upgrade succeeded for release {namespace}/app.v2 with chart podinfo@1.0.0"
    second = await controllers.wait_for(
        kube, HR, namespace, "app", released(upgraded), "upgraded", 60
    )
    assert await pod_annotations(kube, namespace) == {"weir.test/round": "two", "token": "first"}
    digest = second["status"]["lastAttemptedConfigDigest"]
    assert digest != first["status"]["lastAttemptedConfigDigest"]

    # The same values written another way: a run after the edit leaves the release as it is.
    same = "# reordered\npodAnnotations: {weir.test/round: two}\nreplicaCount: 1\n"
    await kube.patch(CONFIG_MAP, namespace, "settings", {"data": {"values.yaml": same}})
    await kube.patch(HR, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: "same"}}})
    handled = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "same",
        "reconciled after the edit",
        60,
    )
    assert handled["status"]["lastAttemptedConfigDigest"] == digest
    home = tmp_path / "helm-cli"
    history = helm_cli(control_plane, home, "history", "app", f"-n={namespace}")
    assert [h["revision"] for h in history] == [1, 2]

    # A change in the Secret: the next upgrade.
    token = base64.b64encode(b"second").decode()
    await kube.patch(SECRET, namespace, "creds", {"data": {"token": token}})
    again = f"Helm upgrade succeeded for release {namespace}/app.v3 with chart podinfo@1.0.0"
    await controllers.wait_for(kube, HR, namespace, "app", released(again), "upgraded again", 60)
    assert await pod_annotations(kube, namespace) == {"weir.test/round": "two", "token": "second"}
    history = helm_cli(control_plane, home, "history", "app", f"-n={namespace}")
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
