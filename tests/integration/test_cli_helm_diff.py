"""``weir diff helmrelease`` against the real API server, with the source and helm controllers
as processes and a chart repository built with the Go-built ``helm``: a release installed by
the controller, then suspended, its values and chart changed, and the diff of the pending
upgrade shown (Helm's dry run, server-side apply dry runs as ``helm-controller``) while nothing
in the cluster changes."""

from __future__ import annotations

import base64

import pytest

from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from helm.chart import HELM_CHART
from tests.integration.cli import Cli
from tests.integration.harness import wait_for_object
from tests.integration.kinds import DEPLOYMENT
from tests.integration.processes import Controllers
from tests.integration.test_helmchart import refetch_index
from tests.integration.test_helmrelease import HR, controllers, helmrelease, released
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    helmrepository,
    plain,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRelease tests.
__all__ = ["charts", "controllers", "plain"]

SECRET_TEMPLATE = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "podinfo.fullname" . }}-credentials
stringData:
  password: {{ .Values.password | quote }}
"""
CONFIG_MAP_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "podinfo.fullname" . }}-extra
data:
  added: "in 1.1.0"
"""
FIRST, SECOND = "first-s3cret-value", "second-s3cret-value"


def leaks(text: str) -> list[str]:
    """The passwords, plain or base64, found in ``text``."""
    secrets = [FIRST, SECOND]
    secrets += [base64.b64encode(s.encode()).decode() for s in (FIRST, SECOND)]
    return [s for s in secrets if s in text]


async def test_diff_of_a_pending_upgrade(
    cli: Cli,
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
) -> None:
    (charts.work / "podinfo" / "templates" / "secret.yaml").write_text(SECRET_TEMPLATE)
    charts.add("podinfo", "1.0.0")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    values = {"replicaCount": 1, "password": FIRST}
    await kube.create(HR, helmrelease("app", namespace, values=values))
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.0"),
        "installed",
        timeout=150,
    )
    # Suspended: the controller leaves the changes below pending.
    await kube.patch(HR, namespace, "app", {"spec": {"suspend": True}})

    # Nothing pending: no difference, exit 0.
    same = await cli("diff", "helmrelease", "app")
    assert (same.code, same.out) == (0, ""), same.err
    assert f"upgrade of release {namespace}/app from revision 1" in same.err

    # New values: the Deployment's replicas, the Secret (masked), the ServiceAccount the
    # release no longer makes.
    values = {"replicaCount": 2, "password": SECOND, "serviceAccount": {"create": False}}
    await kube.patch(HR, namespace, "app", {"spec": {"values": values}})
    changed = await cli("diff", "helmrelease", "app")
    assert changed.code == 1, changed.err
    out = changed.out
    assert f"► Deployment/{namespace}/app-podinfo drifted\n" in out
    assert "\n-  replicas: 1\n+  replicas: 2\n" in out
    assert f"► Secret/{namespace}/app-podinfo-credentials drifted\n" in out
    assert "-  password: '*** (before)'\n+  password: '*** (after)'\n" in out
    assert f"► ServiceAccount/{namespace}/app-podinfo deleted\n" in out
    assert leaks(out + changed.err) == []
    assert "identified at least one change" in changed.err

    # An ignore rule: the replicas are no change any more; the rest still is.
    ignore = [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]
    await kube.patch(HR, namespace, "app", {"spec": {"driftDetection": {"ignore": ignore}}})
    ignored = await cli("diff", "hr", "app")
    assert ignored.code == 1, ignored.err
    assert f"► Deployment/{namespace}/app-podinfo drifted\n" in ignored.out
    assert "replicas:" not in ignored.out
    assert "serviceAccountName" in ignored.out

    # A new chart version with one more object: shown as created.
    (charts.work / "podinfo" / "templates" / "extra.yaml").write_text(CONFIG_MAP_TEMPLATE)
    charts.add("podinfo", "1.1.0")
    await refetch_index(kube, namespace, "bump")
    await wait_for_object(
        kube,
        HELM_CHART,
        namespace,
        f"{namespace}-app",
        lambda o: ((o.get("status") or {}).get("artifact") or {}).get("revision") == "1.1.0",
    )
    bumped = await cli("diff", "helmrelease", "app")
    assert bumped.code == 1, bumped.err
    assert f"► ConfigMap/{namespace}/app-podinfo-extra created\n" in bumped.out
    assert "+    helm.sh/chart: podinfo-1.1.0\n" in bumped.out

    # Nothing was written: revision 1, its objects as installed.
    stored = await kube.list(SECRET, namespace, label_selector="owner=helm,name=app")
    assert [s["metadata"]["name"] for s in stored["items"]] == ["sh.helm.release.v1.app.v1"]
    deployment = await kube.get(DEPLOYMENT, namespace, "app-podinfo")
    assert deployment["spec"]["replicas"] == 1
    assert await kube.get_or_none(CONFIG_MAP, namespace, "app-podinfo-extra") is None

    # Resumed, the controller upgrades; then the cluster is what the diff said: no change.
    await kube.patch(HR, namespace, "app", {"spec": {"suspend": False}})
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm upgrade succeeded for release {namespace}/app.v2 with chart podinfo@1.1.0"),
        "upgraded",
        timeout=150,
    )
    assert await kube.get_or_none(CONFIG_MAP, namespace, "app-podinfo-extra") is not None
    after = await cli("diff", "helmrelease", "app")
    assert (after.code, after.out) == (0, ""), after.out + after.err
    assert f"upgrade of release {namespace}/app from revision 2" in after.err


async def test_what_cannot_be_compared_exits_above_one(
    cli: Cli, kube: KubeClient, namespace: str
) -> None:
    missing = await cli("diff", "helmrelease", "nothing")
    assert missing.code == 4, missing.err
    # The HelmChart exists once the controller has made it: until then there is no chart.
    await kube.create(HR, helmrelease("early", namespace, suspend=True))
    early = await cli("diff", "helmrelease", "early")
    assert early.code == 4, early.err
    assert f"HelmChart '{namespace}/{namespace}-early' not found" in early.err
