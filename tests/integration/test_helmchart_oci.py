"""HelmChart from an OCI HelmRepository: charts packaged and pushed with the Go-built ``helm``
(``helm push``, Helm's own OCI layout) to Debian's ``docker-registry``, reconciled by the source
controller's reconcilers against the real API server; the artifact is compared with what was
pushed, and ``valuesFiles`` are checked with ``helm show values`` on the artifact."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.binaries import find_binary
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from tests.helmcli import helm_env
from tests.integration.harness import wait_for_object
from tests.integration.test_helmchart import (
    CHART,
    Sources,
    artifact_bytes,
    at_version,
    helmchart,
    sources,
    stalled,
)
from tests.integration.test_helmrepository import HELMREPO, condition, helmrepository, secret
from tests.registry import OCIRegistries, RegistryServer

pytestmark = pytest.mark.integration

__all__ = ["sources"]


class ChartPusher:
    """Charts made with ``helm create``/``helm package`` and pushed with ``helm push``."""

    def __init__(self, home: Path, registries: OCIRegistries) -> None:
        self.home = home
        self.registries = registries
        self.work = home / "work"
        self.work.mkdir(parents=True)
        self.env = helm_env(home, inherit=False)

    def helm(self, *args: str) -> str:
        binary = find_binary("helm")
        assert binary is not None, "helm is built before the first integration test"
        done = subprocess.run(
            [str(binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.work,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def package(self, version: str, files: dict[str, str] | None = None) -> Path:
        """``podinfo`` at ``version`` (with extra ``files`` in the chart), packaged."""
        chart = self.work / "podinfo"
        if not chart.exists():
            self.helm("create", "podinfo")
        for name, text in (files or {}).items():
            (chart / name).write_text(text)
        out = self.work / "out"
        self.helm("package", "podinfo", "--version", version, "--destination", str(out))
        return out / f"podinfo-{version}.tgz"

    def push(self, registry: RegistryServer, path: str, archive: Path) -> None:
        """``helm push`` the archive to ``oci://<registry>/<path>``."""
        flags = (
            ["--plain-http"] if registry.insecure else ["--ca-file", str(self.registries.tls.ca)]
        )
        if registry.htpasswd is not None:
            flags += ["--username", registry.htpasswd[0], "--password", registry.htpasswd[1]]
        self.helm("push", str(archive), f"oci://{registry.host}/{path}", *flags)


@pytest.fixture
def pusher(tmp_path: Path, oci_registry: OCIRegistries) -> ChartPusher:
    return ChartPusher(tmp_path / "helm", oci_registry)


def oci_repository(namespace: str, registry: RegistryServer, **spec: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"type": "oci", **spec}
    if registry.insecure:
        extra["insecure"] = True
    return helmrepository("charts", namespace, f"oci://{registry.host}/{namespace}", **extra)


async def request_reconcile(kube: KubeClient, namespace: str, name: str, token: str) -> None:
    await kube.patch(CHART, namespace, name, {"metadata": {"annotations": {REQUESTED_AT: token}}})
    await wait_for_object(
        kube,
        CHART,
        namespace,
        name,
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == token,
    )


async def test_the_highest_pushed_version_in_range_is_pulled_and_followed(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
) -> None:
    registry = oci_registry.plain
    first = pusher.package("1.1.0")
    pusher.push(registry, namespace, first)
    pusher.push(registry, namespace, pusher.package("2.0.0"))
    await kube.create(HELMREPO, oci_repository(namespace, registry))
    await kube.create(CHART, helmchart("ranged", namespace, version="1.x"))
    obj = await wait_for_object(kube, CHART, namespace, "ranged", at_version("1.1.0"))
    assert await artifact_bytes(obj) == first.read_bytes()
    assert obj["status"]["artifact"]["path"].endswith("/podinfo-1.1.0.tgz")
    assert obj["status"]["observedChartName"] == "podinfo"
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["message"] == "pulled 'podinfo' chart with version '1.1.0'"

    # A version with build metadata is pushed as tag 1.2.0_build.7; it is read back with '+'.
    newer = pusher.package("1.2.0+build.7")
    pusher.push(registry, namespace, newer)
    await request_reconcile(kube, namespace, "ranged", "one")
    obj = await wait_for_object(kube, CHART, namespace, "ranged", at_version("1.2.0+build.7"))
    assert await artifact_bytes(obj) == newer.read_bytes()
    assert obj["status"]["artifact"]["path"].endswith("/podinfo-1.2.0+build.7.tgz")

    # An exact version is pulled by its tag.
    await kube.patch(CHART, namespace, "ranged", {"spec": {"version": "2.0.0"}})
    await wait_for_object(kube, CHART, namespace, "ranged", at_version("2.0.0"))
    assert sources.charts.stats["downloads"] == 3


async def test_a_range_no_tag_satisfies_fails_until_the_version_is_pushed(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
) -> None:
    registry = oci_registry.plain
    pusher.push(registry, namespace, pusher.package("1.0.0"))
    await kube.create(HELMREPO, oci_repository(namespace, registry))
    await kube.create(CHART, helmchart("later", namespace, version=">=3.0.0"))
    obj = await wait_for_object(
        kube, CHART, namespace, "later", lambda o: condition(o, "FetchFailed") is not None
    )
    failed = condition(obj, "FetchFailed")
    assert failed is not None
    assert failed["reason"] == "ChartPullError"
    assert (
        "could not locate a version matching provided version string >=3.0.0" in (failed["message"])
    )
    assert not stalled(obj)
    pusher.push(registry, namespace, pusher.package("3.1.0"))
    await request_reconcile(kube, namespace, "later", "pushed")
    await wait_for_object(kube, CHART, namespace, "later", at_version("3.1.0"))


async def test_a_private_registry_over_https_is_read_with_a_docker_config_and_ca(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
) -> None:
    registry = oci_registry.basic
    archive = pusher.package("1.0.0")
    pusher.push(registry, namespace, archive)
    username, password = oci_registry.username, oci_registry.password
    config = {"auths": {registry.host: {"username": username, "password": password}}}
    await secret(kube, namespace, "ca", oci_registry.tls.secret_data())
    await secret(kube, namespace, "creds", {".dockerconfigjson": json.dumps(config)})
    await kube.create(
        HELMREPO,
        oci_repository(
            namespace, registry, secretRef={"name": "creds"}, certSecretRef={"name": "ca"}
        ),
    )
    await kube.create(CHART, helmchart("private", namespace, version="1.0.0"))
    obj = await wait_for_object(kube, CHART, namespace, "private", at_version("1.0.0"))
    assert await artifact_bytes(obj) == archive.read_bytes()

    # Without credentials the registry refuses, and the condition says so without secrets.
    # (The repository first: a chart pulled once is not pulled again for the same version.)
    await kube.patch(HELMREPO, namespace, "charts", {"spec": {"secretRef": None}})
    await kube.create(CHART, helmchart("anonymous", namespace, version="1.0.0"))
    obj = await wait_for_object(
        kube, CHART, namespace, "anonymous", lambda o: condition(o, "FetchFailed") is not None
    )
    failed = condition(obj, "FetchFailed")
    assert failed is not None
    assert failed["reason"] == "AuthenticationFailed"
    for found in obj["status"]["conditions"]:
        assert password not in found["message"]


VALUES_PROD = "replicaCount: 3\nimage:\n  tag: prod\nextra:\n  enabled: true\n"


async def test_values_files_are_merged_into_the_packaged_chart(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    registry = oci_registry.plain
    pusher.push(registry, namespace, pusher.package("1.0.0", {"values-prod.yaml": VALUES_PROD}))
    await kube.create(HELMREPO, oci_repository(namespace, registry))
    await kube.create(
        CHART,
        helmchart(
            "merged", namespace, version="1.0.0", valuesFiles=["values.yaml", "values-prod.yaml"]
        ),
    )
    # Flux's version metadata for values files: the HelmChart's generation.
    obj = await wait_for_object(kube, CHART, namespace, "merged", at_version("1.0.0+1"))
    assert obj["status"]["artifact"]["path"].endswith("/podinfo-1.0.0+1.tgz")
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["message"] == (
        "packaged 'podinfo' chart with version '1.0.0+1' and merged values files "
        "[values.yaml values-prod.yaml]"
    )
    stored = tmp_path / "merged.tgz"
    stored.write_bytes(await artifact_bytes(obj))
    # Helm itself reads the artifact: the prod values win, the chart's own are kept.
    shown = _yaml(pusher.helm("show", "values", str(stored)))
    assert shown["replicaCount"] == 3
    assert shown["image"]["tag"] == "prod"
    assert shown["image"]["repository"] == "nginx"
    assert shown["extra"] == {"enabled": True}
    chart = _yaml(pusher.helm("show", "chart", str(stored)))
    assert chart["version"] == "1.0.0+1"

    # A missing values file stalls the chart ...
    await kube.patch(
        CHART, namespace, "merged", {"spec": {"valuesFiles": ["values.yaml", "values-stage.yaml"]}}
    )
    obj = await wait_for_object(kube, CHART, namespace, "merged", stalled)
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["reason"] == "ValuesFilesError"
    assert "no values file found at path 'values-stage.yaml'" in ready["message"]

    # ... unless missing files are to be ignored; only the merged ones are recorded.
    await kube.patch(CHART, namespace, "merged", {"spec": {"ignoreMissingValuesFiles": True}})
    obj = await wait_for_object(kube, CHART, namespace, "merged", at_version("1.0.0+3"))
    assert obj["status"]["observedValuesFiles"] == ["values.yaml"]
    stored.write_bytes(await artifact_bytes(obj))
    shown = _yaml(pusher.helm("show", "values", str(stored)))
    assert shown["replicaCount"] == 1
    assert "extra" not in shown


async def test_only_the_listed_values_files_make_the_values(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    pusher: ChartPusher,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    """As in Flux, the chart's own values.yaml counts only when it is listed."""
    registry = oci_registry.plain
    pusher.push(registry, namespace, pusher.package("1.0.0", {"values-prod.yaml": VALUES_PROD}))
    await kube.create(HELMREPO, oci_repository(namespace, registry))
    await kube.create(
        CHART, helmchart("prod", namespace, version="1.x", valuesFiles=["values-prod.yaml"])
    )
    obj = await wait_for_object(kube, CHART, namespace, "prod", at_version("1.0.0+1"))
    stored = tmp_path / "prod.tgz"
    stored.write_bytes(await artifact_bytes(obj))
    shown = _yaml(pusher.helm("show", "values", str(stored)))
    assert shown == {"replicaCount": 3, "image": {"tag": "prod"}, "extra": {"enabled": True}}
    assert hashlib.sha256(stored.read_bytes()).hexdigest() in obj["status"]["artifact"]["digest"]


def _yaml(text: str) -> Any:
    return yaml.safe_load(text)
