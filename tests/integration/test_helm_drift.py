"""``helm.drift`` against the real control plane and a release Helm (in process) installed:
a Deployment's replicas edited by another field manager is found (field ``/spec/replicas``),
left alone by an ignore rule for it, and reverted by the correction; a deleted object is
found removed and created again; the opt-out annotation leaves an object out."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controllers.apitypes import Selector
from controllers.discovery import RestMapper
from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP
from controllers.kube import KubeClient
from helm.api_v2 import IgnoreRule
from helm.client import HelmClient, InstallOptions, Release
from helm.drift import (
    DRIFT_CORRECTED,
    DriftReport,
    DriftType,
    compile_ignore_rules,
    correct,
    detect,
)
from tests.integration.kinds import DEPLOYMENT

pytestmark = pytest.mark.integration

CHART_FILES = {
    "Chart.yaml": "apiVersion: v2\nname: drifty\nversion: 0.1.0\n",
    "values.yaml": "replicas: 1\n",
    "templates/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
        data:
          greeting: hello
        """,
    "templates/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-app
        spec:
          replicas: {{ .Values.replicas }}
          selector:
            matchLabels: {app: {{ .Release.Name }}}
          template:
            metadata:
              labels: {app: {{ .Release.Name }}}
            spec:
              containers:
                - name: app
                  image: example.invalid/app:1
        """,
}


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chart") / "drifty"
    for name, text in CHART_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
async def release(
    control_plane: ControlPlane, namespace: str, chart: Path
) -> AsyncIterator[Release]:
    helm = HelmClient(kubeconfig_path=control_plane.admin_kubeconfig)
    try:
        yield await helm.install(
            "web", chart, {}, namespace=namespace, options=InstallOptions(wait=False)
        )
    finally:
        helm.close()


async def drift_of(
    kube: KubeClient, release: Release, ignore: list[IgnoreRule] | None = None
) -> DriftReport:
    return await detect(
        kube,
        RestMapper(kube),
        release.manifest,
        release_name=release.name,
        release_namespace=release.namespace,
        ignore=compile_ignore_rules(ignore),
    )


def found(report: DriftReport) -> dict[str, tuple[DriftType, list[str]]]:
    return {drift.subject: (drift.type, drift.fields) for drift in report.objects}


async def scale(kube: KubeClient, namespace: str, replicas: int) -> None:
    """As ``kubectl scale`` would: another field manager changes the replicas."""
    await kube.patch(
        DEPLOYMENT,
        namespace,
        "web-app",
        {"spec": {"replicas": replicas}},
        field_manager="kubectl-edit",
    )


async def test_edited_replicas_are_reported_ignored_by_a_rule_and_reverted(
    kube: KubeClient, namespace: str, release: Release
) -> None:
    deployment, config_map = f"Deployment/{namespace}/web-app", f"ConfigMap/{namespace}/web-config"
    in_sync = await drift_of(kube, release)
    assert (in_sync.errors, in_sync.has_changes) == ([], False)
    assert found(in_sync) == {
        config_map: (DriftType.NONE, []),
        deployment: (DriftType.NONE, []),
    }

    await scale(kube, namespace, 3)
    drifted = await drift_of(kube, release)
    assert drifted.errors == []
    assert found(drifted)[deployment] == (DriftType.UPDATE, ["/spec/replicas"])
    assert found(drifted)[config_map] == (DriftType.NONE, [])
    full_name = f"{namespace}/web.v1"
    assert drifted.message(full_name) == (
        f"Cluster state of release {full_name} has drifted from the desired state:\n"
        f"{deployment} changed (0 additions, 1 changes, 0 removals): /spec/replicas"
    )

    rule = IgnoreRule(paths=["/spec/replicas"], target=Selector(kind="Deployment"))
    ignored = await drift_of(kube, release, [rule])
    assert (ignored.errors, ignored.has_changes) == ([], False)
    other_kind = IgnoreRule(paths=["/spec/replicas"], target=Selector(kind="StatefulSet"))
    assert (await drift_of(kube, release, [other_kind])).has_changes

    correction = await correct(kube, RestMapper(kube), drifted)
    assert correction.errors == []
    assert correction.event(full_name) == (
        DRIFT_CORRECTED,
        f"Cluster state of release {full_name} has been corrected:\n{deployment} configured",
    )
    live = await kube.get(DEPLOYMENT, namespace, "web-app")
    assert live["spec"]["replicas"] == 1
    assert not (await drift_of(kube, release)).has_changes


async def test_correction_leaves_ignored_fields_alone(
    kube: KubeClient, namespace: str, release: Release
) -> None:
    await scale(kube, namespace, 4)
    await kube.patch(
        DEPLOYMENT,
        namespace,
        "web-app",
        {"metadata": {"labels": {"app.kubernetes.io/managed-by": "someone"}}},
        field_manager="kubectl-edit",
    )
    rule = IgnoreRule(paths=["/spec/replicas"])
    drifted = await drift_of(kube, release, [rule])
    deployment = f"Deployment/{namespace}/web-app"
    assert found(drifted)[deployment] == (
        DriftType.UPDATE,
        ["/metadata/labels/app.kubernetes.io~1managed-by"],
    )

    correction = await correct(kube, RestMapper(kube), drifted)
    assert correction.errors == []
    live = await kube.get(DEPLOYMENT, namespace, "web-app")
    assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert live["spec"]["replicas"] == 4


async def test_a_deleted_object_is_created_again_and_an_opted_out_one_is_left_out(
    kube: KubeClient, namespace: str, release: Release
) -> None:
    await kube.delete(CONFIG_MAP, namespace, "web-config")
    await kube.patch(
        DEPLOYMENT,
        namespace,
        "web-app",
        {
            "metadata": {"annotations": {"helm.toolkit.fluxcd.io/driftDetection": "disabled"}},
            "spec": {"replicas": 2},
        },
        field_manager="kubectl-edit",
    )
    drifted = await drift_of(kube, release)
    config_map, deployment = f"ConfigMap/{namespace}/web-config", f"Deployment/{namespace}/web-app"
    assert found(drifted) == {
        config_map: (DriftType.CREATE, []),
        deployment: (DriftType.EXCLUDE, []),
    }
    assert drifted.summary() == f"{config_map} removed\n{deployment} excluded"

    correction = await correct(kube, RestMapper(kube), drifted)
    assert (correction.changes, correction.errors) == ([f"{config_map} created"], [])
    created = await kube.get(CONFIG_MAP, namespace, "web-config")
    assert created["data"] == {"greeting": "hello"}
    assert created["metadata"]["annotations"]["meta.helm.sh/release-name"] == "web"
    assert (await kube.get(DEPLOYMENT, namespace, "web-app"))["spec"]["replicas"] == 2


async def test_an_object_of_an_unknown_kind_is_an_error_and_the_others_are_compared(
    kube: KubeClient, namespace: str, release: Release
) -> None:
    manifest = release.manifest + "\n---\napiVersion: example.invalid/v1\nkind: Gadget\n"
    manifest += "metadata:\n  name: g\n"
    report = await detect(
        kube,
        RestMapper(kube),
        manifest,
        release_name=release.name,
        release_namespace=release.namespace,
    )
    assert len(report.objects) == 2
    assert len(report.errors) == 1
    assert report.errors[0].startswith("Gadget/g dry-run failed:")
    assert report.error_message().startswith("unable to determine cluster state: Gadget/g")
