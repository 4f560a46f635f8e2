"""HelmChart from a real Helm repository: charts packaged and indexed with the Go-built
``helm`` and served on loopback (plain, and HTTPS with basic auth), a HelmRepository and
HelmCharts reconciled by the source controller's reconcilers against the real API server,
the chart artifact downloaded from the real artifact server and compared with the package."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from controllers.envtest import ControlPlane, free_port
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from source.api_v1 import HelmChart
from source.helmchart import HelmChartReconciler
from source.helmrepository import HelmRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.integration.test_helmrepository import (
    HELMREPO,
    PASSWORD,
    USER,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
    reasons_once,
    secret,
    secured,
)
from tests.testpki import TLSFiles

pytestmark = pytest.mark.integration

CHART = HelmChart.info
# The fixtures this module shares with the HelmRepository tests.
__all__ = ["charts", "plain", "secured"]


@dataclass
class Sources:
    charts: HelmChartReconciler
    storage: ArtifactStorage


@pytest.fixture
async def sources(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Sources]:
    """The HelmRepository and HelmChart reconcilers in one manager, as in the source
    controller, and their artifact server."""
    port = free_port()
    root = tmp_path / "storage"
    storage = ArtifactStorage(root, f"127.0.0.1:{port}")
    server = await start_artifact_server(root, "127.0.0.1", port)
    # A small cap, so that a chart past it is cheap to make.
    reconciler = HelmChartReconciler(storage, max_chart_size=MAX_TEST_CHART)
    try:
        async with running(
            options(control_plane, namespace, name="source-controller"),
            [HelmRepositoryReconciler(storage), reconciler],
        ):
            yield Sources(reconciler, storage)
    finally:
        await server.cleanup()


MAX_TEST_CHART = 256 * 1024


def helmchart(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": CHART.api_version,
        "kind": CHART.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "chart": "podinfo",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            "interval": "10m",
            **spec,
        },
    }


def at_version(version: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        artifact = (obj.get("status") or {}).get("artifact") or {}
        return is_ready(obj) and artifact.get("revision") == version

    return check


def stalled(obj: dict[str, Any]) -> bool:
    found = condition(obj, "Stalled")
    return found is not None and found["status"] == "True"


async def artifact_bytes(obj: dict[str, Any]) -> bytes:
    """The artifact of ``obj`` from the artifact server, its digest and size checked."""
    artifact = obj["status"]["artifact"]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(artifact["url"])
    assert response.status_code == 200
    assert f"sha256:{hashlib.sha256(response.content).hexdigest()}" == artifact["digest"]
    assert len(response.content) == artifact["size"]
    return response.content


async def refetch_index(kube: KubeClient, namespace: str, token: str) -> None:
    """Ask the HelmRepository for a new fetch and wait until it ran."""
    await kube.patch(
        HELMREPO, namespace, "charts", {"metadata": {"annotations": {REQUESTED_AT: token}}}
    )
    await wait_for_object(
        kube,
        HELMREPO,
        namespace,
        "charts",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == token,
    )


async def test_the_highest_version_in_range_is_pulled_and_follows_the_index(
    kube: KubeClient, namespace: str, sources: Sources, charts: ChartRepository, plain: str
) -> None:
    charts.add("podinfo", "1.1.0")
    charts.add("podinfo", "2.0.0")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(CHART, helmchart("podinfo", namespace, version="1.x"))

    obj = await wait_for_object(kube, CHART, namespace, "podinfo", at_version("1.1.0"))
    status = obj["status"]
    repo = await kube.get(HELMREPO, namespace, "charts")
    assert status["artifact"]["path"] == f"helmchart/{namespace}/podinfo/podinfo-1.1.0.tgz"
    assert status["url"] == status["artifact"]["url"]
    assert status["observedChartName"] == "podinfo"
    assert status["observedSourceArtifactRevision"] == repo["status"]["artifact"]["revision"]
    assert await artifact_bytes(obj) == (charts.root / "podinfo-1.1.0.tgz").read_bytes()
    stored = condition(obj, "ArtifactInStorage")
    assert stored is not None
    assert (stored["reason"], stored["message"]) == (
        "ChartPullSucceeded",
        "pulled 'podinfo' chart with version '1.1.0'",
    )
    assert condition(obj, "Ready")["message"] == stored["message"]  # type: ignore[index]
    assert "ChartPullSucceeded" in await reasons_once(
        kube, namespace, "podinfo", "ChartPullSucceeded", 1
    )

    # Reconciled again with the index unchanged: the artifact holds the version, no download.
    downloads = sources.charts.stats["downloads"]
    await kube.patch(
        CHART, namespace, "podinfo", {"metadata": {"annotations": {REQUESTED_AT: "again"}}}
    )
    again = await wait_for_object(
        kube,
        CHART,
        namespace,
        "podinfo",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "again",
    )
    assert again["status"]["artifact"] == status["artifact"]
    assert sources.charts.stats["downloads"] == downloads

    # A new version in range, indexed: the new index revision moves the chart (its own
    # interval is 10m, so only the watch on the HelmRepository can).
    charts.add("podinfo", "1.2.0")
    await refetch_index(kube, namespace, "new-version")
    moved = await wait_for_object(kube, CHART, namespace, "podinfo", at_version("1.2.0"))
    assert await artifact_bytes(moved) == (charts.root / "podinfo-1.2.0.tgz").read_bytes()
    assert moved["status"]["artifact"]["path"].endswith("/podinfo-1.2.0.tgz")
    assert "ArtifactOutdated" not in {c["type"] for c in moved["status"]["conditions"]}
    await reasons_once(kube, namespace, "podinfo", "ChartPullSucceeded", 2)

    # The default range is the highest stable version.
    await kube.create(CHART, helmchart("latest", namespace))
    await wait_for_object(kube, CHART, namespace, "latest", at_version("2.0.0"))


async def test_a_version_not_in_the_index_stalls_until_it_is_published(
    kube: KubeClient, namespace: str, sources: Sources, charts: ChartRepository, plain: str
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(CHART, helmchart("future", namespace, version="9.x"))
    obj = await wait_for_object(kube, CHART, namespace, "future", stalled)
    ready = condition(obj, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "InvalidChartReference")
    assert ready["message"] == (
        "invalid chart reference: failed to get chart version for remote reference: no "
        "'podinfo' chart with version matching '9.x' found"
    )
    assert condition(obj, "FetchFailed")["reason"] == "InvalidChartReference"  # type: ignore[index]
    assert "artifact" not in obj["status"]

    charts.add("podinfo", "9.1.0")
    await refetch_index(kube, namespace, "published")
    ready_obj = await wait_for_object(kube, CHART, namespace, "future", at_version("9.1.0"))
    assert condition(ready_obj, "FetchFailed") is None
    assert condition(ready_obj, "Stalled") is None


async def test_an_unknown_chart_name_is_an_invalid_reference(
    kube: KubeClient, namespace: str, sources: Sources, plain: str
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(CHART, helmchart("missing", namespace, chart="nginx"))
    obj = await wait_for_object(kube, CHART, namespace, "missing", stalled)
    assert condition(obj, "Ready")["message"].endswith("no chart name found")  # type: ignore[index]


@pytest.mark.parametrize(
    ("spec", "repository", "words"),
    [
        pytest.param(
            {"verify": {"provider": "cosign"}},
            {},
            "weir does not verify chart signatures yet",
            id="verify",
        ),
    ],
)
async def test_what_weir_does_not_do_yet_is_refused_clearly(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    plain: str,
    spec: dict[str, Any],
    repository: dict[str, Any],
    words: str,
) -> None:
    repo = helmrepository("charts", namespace, plain)
    repo["spec"].update(repository)
    await kube.create(HELMREPO, repo)
    await kube.create(CHART, helmchart("refused", namespace, **spec))
    obj = await wait_for_object(kube, CHART, namespace, "refused", stalled)
    ready = condition(obj, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "UnsupportedConfiguration")
    assert words in ready["message"]
    assert sources.charts.stats["downloads"] == 0


async def test_a_chart_behind_basic_auth_and_tls_is_pulled_with_the_repositorys_secrets(
    kube: KubeClient, namespace: str, sources: Sources, secured: tuple[str, TLSFiles]
) -> None:
    url, files = secured
    await secret(kube, namespace, "ca", files.secret_data())
    await secret(kube, namespace, "basic", {"username": USER, "password": PASSWORD})
    await kube.create(
        HELMREPO,
        helmrepository(
            "charts", namespace, url, secretRef={"name": "basic"}, certSecretRef={"name": "ca"}
        ),
    )
    await kube.create(CHART, helmchart("private", namespace))
    obj = await wait_for_object(kube, CHART, namespace, "private", at_version("1.0.0"))
    assert obj["status"]["observedChartName"] == "podinfo"
    for cond in obj["status"]["conditions"]:
        assert PASSWORD not in cond["message"]


async def test_without_its_helmrepository_the_chart_fails_and_is_not_stalled(
    kube: KubeClient, namespace: str, sources: Sources
) -> None:
    await kube.create(CHART, helmchart("orphan", namespace))
    obj = await wait_for_object(
        kube, CHART, namespace, "orphan", lambda o: condition(o, "FetchFailed") is not None
    )
    assert condition(obj, "FetchFailed")["reason"] == "SourceUnavailable"  # type: ignore[index]
    assert not stalled(obj)


async def test_a_chart_past_the_size_cap_fails_the_fetch_and_keeps_the_last_artifact(
    kube: KubeClient, namespace: str, sources: Sources, charts: ChartRepository, plain: str
) -> None:
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(CHART, helmchart("app", namespace, version="1.x"))
    await wait_for_object(kube, CHART, namespace, "app", at_version("1.0.0"))

    # Random bytes do not compress: the package is past the cap.
    (charts.work / "podinfo" / "files").mkdir(exist_ok=True)
    (charts.work / "podinfo" / "files" / "blob.bin").write_bytes(os.urandom(2 * MAX_TEST_CHART))
    charts.add("podinfo", "1.1.0")
    await refetch_index(kube, namespace, "bigger")
    obj = await wait_for_object(
        kube, CHART, namespace, "app", lambda o: condition(o, "FetchFailed") is not None
    )
    failed = condition(obj, "FetchFailed")
    assert failed is not None
    assert f"chart exceeds the maximum chart size of {MAX_TEST_CHART} bytes" in failed["message"]
    assert obj["status"]["artifact"]["revision"] == "1.0.0"
