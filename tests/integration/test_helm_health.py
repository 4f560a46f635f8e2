"""``helm.health`` against the real control plane and a release Helm (in process) installed
with its own kstatus wait: the release's Widget, which kstatus takes as Current, is healthy
only once its ``healthCheckExprs`` say so; until then the wait runs out with Helm's words, and
a Widget that fails is reported once everything else is settled."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controllers.api import ResourceInfo
from controllers.apitypes import CustomHealthCheck
from controllers.discovery import RestMapper
from controllers.envtest import ControlPlane
from controllers.health import CustomCheck, custom_checks, wait_for
from controllers.inventory import ObjectRef
from controllers.kube import KubeClient
from helm.client import HelmClient, InstallOptions, Release
from helm.health import ReleaseObject, ReleaseUnhealthy, checked_objects, wait_for_release

pytestmark = pytest.mark.integration

CRD = ResourceInfo(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
)
CHART_FILES = {
    "Chart.yaml": "apiVersion: v2\nname: widgety\nversion: 0.1.0\n",
    "values.yaml": "group: example.com\n",
    "templates/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
        data:
          greeting: hello
        """,
    "templates/widget.yaml": """\
        apiVersion: {{ .Values.group }}/v1
        kind: Widget
        metadata:
          name: {{ .Release.Name }}-widget
        spec:
          size: 1
        """,
    "templates/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-app
        spec:
          replicas: 1
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
    root = tmp_path_factory.mktemp("chart") / "widgety"
    for name, text in CHART_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
async def widgets(kube: KubeClient) -> AsyncIterator[ResourceInfo]:
    """A Widget kind of a group of its own, with a status its controller (the test) writes."""
    group = f"{uuid.uuid4().hex[:8]}.weir.example.com"
    info = ResourceInfo(group=group, version="v1", kind="Widget", plural="widgets")
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    crd = await kube.create(
        CRD,
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": schema},
                    }
                ],
            },
        },
    )
    try:
        await wait_for(kube, RestMapper(kube), [ObjectRef.of(crd)], timeout=10)
        yield info
    finally:
        await kube.delete(CRD, None, crd["metadata"]["name"])


@pytest.fixture
async def release(
    control_plane: ControlPlane, namespace: str, chart: Path, widgets: ResourceInfo
) -> AsyncIterator[Release]:
    """Installed with Helm's kstatus wait: the Deployment became available (kwok), the
    Widget, with no status at all, passed as Current."""
    helm = HelmClient(kubeconfig_path=control_plane.admin_kubeconfig)
    try:
        yield await helm.install(
            "web",
            chart,
            {"group": widgets.group},
            namespace=namespace,
            options=InstallOptions(wait=True, timeout=60),
        )
    finally:
        helm.close()


def widget_check(widgets: ResourceInfo) -> dict[str, CustomCheck]:
    check = CustomHealthCheck.model_validate(
        {
            "apiVersion": widgets.api_version,
            "kind": "Widget",
            "current": "status.phase == 'Ready'",
            "failed": "status.phase == 'Failed'",
        }
    )
    return custom_checks([check])


async def test_only_the_kinds_with_a_check_are_waited_for(
    kube: KubeClient, namespace: str, widgets: ResourceInfo, release: Release
) -> None:
    mapper = RestMapper(kube)
    objects = await checked_objects(mapper, release.manifest, widget_check(widgets), namespace)
    # The manifest has no namespace on the Widget: Helm put it in the release's.
    assert objects == [ReleaseObject(widgets.api_version, "Widget", namespace, "web-widget")]
    assert await checked_objects(mapper, release.manifest, {}, namespace) == []


async def test_the_widget_is_healthy_once_its_expression_holds(
    kube: KubeClient, namespace: str, widgets: ResourceInfo, release: Release
) -> None:
    mapper = RestMapper(kube)
    custom = widget_check(widgets)
    objects = await checked_objects(mapper, release.manifest, custom, namespace)

    # No status yet: the expression cannot be evaluated, the wait runs out, in Helm's words.
    with pytest.raises(ReleaseUnhealthy) as timed_out:
        await wait_for_release(kube, mapper, objects, custom, timeout=1)
    first, deadline = str(timed_out.value).split("\n")
    assert first.startswith(
        f"resource Widget/{namespace}/web-widget not ready. status: Unknown, message: "
    )
    assert "status" in first.partition("message: ")[2]  # the evaluation error names the field
    assert deadline == "context deadline exceeded"

    # Its controller says Pending: in progress, no longer unknown.
    await kube.patch(
        widgets, namespace, "web-widget", {"status": {"phase": "Pending"}}, subresource="status"
    )
    with pytest.raises(ReleaseUnhealthy) as pending:
        await wait_for_release(kube, mapper, objects, custom, timeout=1)
    assert str(pending.value) == (
        f"resource Widget/{namespace}/web-widget not ready. status: InProgress, message: \n"
        "context deadline exceeded"
    )

    # It becomes Ready while the wait runs: the wait ends without error, well before its time.
    waiting = asyncio.create_task(wait_for_release(kube, mapper, objects, custom, timeout=60))
    await kube.patch(
        widgets, namespace, "web-widget", {"status": {"phase": "Ready"}}, subresource="status"
    )
    async with asyncio.timeout(30):
        await waiting


async def test_a_failed_widget_is_reported_without_waiting_out_the_timeout(
    kube: KubeClient, namespace: str, widgets: ResourceInfo, release: Release
) -> None:
    mapper = RestMapper(kube)
    custom = widget_check(widgets)
    objects = await checked_objects(mapper, release.manifest, custom, namespace)
    await kube.patch(
        widgets, namespace, "web-widget", {"status": {"phase": "Failed"}}, subresource="status"
    )
    with pytest.raises(ReleaseUnhealthy) as failed:
        async with asyncio.timeout(30):
            await wait_for_release(kube, mapper, objects, custom, timeout=300)
    assert str(failed.value) == (
        f"resource Widget/{namespace}/web-widget not ready. status: Failed, message: "
    )


async def test_a_deleted_object_is_not_found(
    kube: KubeClient, namespace: str, widgets: ResourceInfo, release: Release
) -> None:
    mapper = RestMapper(kube)
    custom = widget_check(widgets)
    objects = await checked_objects(mapper, release.manifest, custom, namespace)
    await kube.delete(widgets, namespace, "web-widget")
    with pytest.raises(ReleaseUnhealthy) as gone:
        await wait_for_release(kube, mapper, objects, custom, timeout=1)
    assert str(gone.value) == (
        f"resource Widget/{namespace}/web-widget not ready. status: NotFound, "
        "message: Resource not found\ncontext deadline exceeded"
    )
