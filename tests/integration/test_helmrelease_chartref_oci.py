"""HelmRelease with ``chartRef`` of kind OCIRepository, end to end: a chart pushed with the
Go-built ``helm push`` to Debian's ``docker-registry``, an OCIRepository whose
``layerSelector`` copies the Helm chart layer (its artifact is the packaged chart), the source
controller and the helm controller as processes, and the release checked with the Go-built
``helm history``. As Flux, the chart version carries the artifact digest's first 12 hex digits,
so the same tag pushed again with other content upgrades the release."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from helm.chart import chart_metadata, oci_chart_version
from tests.integration.harness import is_ready
from tests.integration.processes import Controllers
from tests.integration.test_helmchart import artifact_bytes
from tests.integration.test_helmchart_oci import ChartPusher, pusher
from tests.integration.test_helmrelease import HR, controllers, helm_cli, released
from tests.integration.test_ocirepository import OCIREPO, ocirepository
from tests.registry import OCIRegistries, RegistryServer

pytestmark = pytest.mark.integration

__all__ = ["controllers", "pusher"]

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def chart_repository(namespace: str, registry: RegistryServer) -> dict[str, Any]:
    return ocirepository(
        "podinfo",
        namespace,
        registry,
        f"{namespace}/podinfo",
        ref={"tag": "1.0.0"},
        layerSelector={"mediaType": HELM_CHART_LAYER, "operation": "copy"},
    )


def helmrelease_from_oci(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": HR.api_version,
        "kind": HR.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "timeout": "2m",
            "chartRef": {"kind": "OCIRepository", "name": "podinfo"},
            "values": {"replicaCount": 1},
        },
    }


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def oci_chart_ready(
    kube: KubeClient, controllers: Controllers, namespace: str, previous: str | None = None
) -> dict[str, Any]:
    def has_new_artifact(obj: dict[str, Any]) -> bool:
        artifact = (obj.get("status") or {}).get("artifact") or {}
        return is_ready(obj) and bool(artifact) and artifact.get("revision") != previous

    return await controllers.wait_for(
        kube, OCIREPO, namespace, "podinfo", has_new_artifact, "ready with the chart", 90
    )


async def test_the_oci_repository_artifact_is_the_pushed_chart(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    registry = oci_registry.plain
    packaged = pusher.package("1.0.0")
    pusher.push(registry, namespace, packaged)
    await kube.create(OCIREPO, chart_repository(namespace, registry))

    repo = await oci_chart_ready(kube, controllers, namespace)
    artifact = repo["status"]["artifact"]
    # The chart layer copied as it is: the artifact is the tgz helm packaged.
    assert await artifact_bytes(repo) == packaged.read_bytes()
    tag, _, digest = artifact["revision"].partition("@")
    assert tag == "1.0.0"
    assert digest.startswith("sha256:")

    # The version the release will carry: the chart's, with the digest as build metadata.
    fetched = tmp_path / "chart.tgz"
    fetched.write_bytes(await artifact_bytes(repo))
    version = chart_metadata(fetched).version
    assert oci_chart_version(version, artifact["revision"]) == (
        f"1.0.0+{digest.partition(':')[2][:12]}",
        digest,
    )


async def test_a_release_from_an_oci_repository_follows_its_digest(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
    control_plane: ControlPlane,
) -> None:
    """Needs the reconciler's chartRef wiring (helm/helmrelease.py)."""
    registry = oci_registry.plain
    pusher.push(registry, namespace, pusher.package("1.0.0"))
    await kube.create(OCIREPO, chart_repository(namespace, registry))
    repo = await oci_chart_ready(kube, controllers, namespace)
    digest = repo["status"]["artifact"]["revision"].partition("@")[2]
    version = f"1.0.0+{digest.partition(':')[2][:12]}"
    release = f"{namespace}/app"
    await kube.create(HR, helmrelease_from_oci("app", namespace))

    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {release}.v1 with chart podinfo@{version}"),
        "installed from the OCIRepository",
        timeout=150,
    )
    assert obj["status"]["lastAttemptedRevision"] == version
    assert obj["status"]["lastAttemptedRevisionDigest"] == digest
    assert obj["status"]["history"][0]["ociDigest"] == digest
    assert obj["status"]["history"][0]["chartVersion"] == version

    # The same tag pushed again with other content: a new digest, so a new chart version, and
    # the watch on the OCIRepository upgrades the release without waiting for its interval.
    pusher.push(registry, namespace, pusher.package("1.0.0", {"NOTES.txt": "pushed again\n"}))
    await kube.patch(
        OCIREPO, namespace, "podinfo", {"metadata": {"annotations": {REQUESTED_AT: "again"}}}
    )
    previous = repo["status"]["artifact"]["revision"]
    repo = await oci_chart_ready(kube, controllers, namespace, previous=previous)
    new_digest = repo["status"]["artifact"]["revision"].partition("@")[2]
    assert new_digest != digest
    new_version = f"1.0.0+{new_digest.partition(':')[2][:12]}"
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(
            f"Helm upgrade succeeded for release {release}.v2 with chart podinfo@{new_version}"
        ),
        "upgraded to the new digest",
        timeout=150,
    )
    history = helm_cli(
        control_plane, pusher.home / "cli", "history", "app", f"--namespace={namespace}"
    )
    assert [(r["revision"], r["status"], r["chart"]) for r in history] == [
        (1, "superseded", f"podinfo-{version}"),
        (2, "deployed", f"podinfo-{new_version}"),
    ]
