"""The Helm chart ``charts/weir``, with the real helm (v4, built from ``hack/tools/helm`` like
every other Go binary the suite runs).

``helm lint --strict`` passes; ``helm template`` renders exactly the objects ``weir install``
applies (``weir.bundle.render``) for the same settings, object by object and field by field;
what it renders passes a server-side dry run; and ``helm install --create-namespace`` installs
it into a namespace of its own, as a user runs it.

Nothing is normalised before the comparison: the chart gives its objects the labels
``weir install`` gives them (``weir check`` and ``weir uninstall`` find an install by them),
and none of Helm's own (``helm.sh/chart``). Helm adds its ownership marks when it applies them
(the ``app.kubernetes.io/managed-by: Helm`` label, the ``meta.helm.sh/release-*`` annotations),
so those are the only difference between an installed chart and an installed bundle.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.binaries import find_binary
from controllers.envtest import REPO_ROOT, ControlPlane
from controllers.kinds import NAMESPACE
from controllers.kube import KubeClient
from tests.helmcli import helm_env as helm_environment
from tests.integration.harness import dry_run_apply, wait_for_deletion
from tests.integration.kinds import CLUSTER_ROLE, CLUSTER_ROLE_BINDING, DEPLOYMENT
from weir.bundle import (
    DEFAULT_COMPONENTS,
    INSTANCE_LABEL,
    PART_OF,
    PART_OF_LABEL,
    BundleOptions,
    render,
)

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "weir"
LOCKDOWN = {"noCrossNamespaceRefs": True, "noRemoteBases": True, "defaultServiceAccount": "default"}

Key = tuple[str, str, str, str]


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment helm runs in: its cache, configuration and data in a directory of the
    test's, not the user's."""
    home = tmp_path_factory.mktemp("helm-home")
    return helm_environment(home)


def helm(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    return subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def template(
    env: Mapping[str, str], namespace: str, values: Mapping[str, Any], tmp_path: Path
) -> list[dict[str, Any]]:
    """``helm template weir charts/weir --namespace NAMESPACE`` with ``values`` as a values
    file: the objects it renders."""
    values_file = tmp_path / f"values-{uuid.uuid4().hex[:8]}.yaml"
    values_file.write_text(yaml.safe_dump(dict(values)))
    done = helm(
        env, "template", "weir", str(CHART), f"--namespace={namespace}", f"--values={values_file}"
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_identity(objects: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Each object under (apiVersion, kind, namespace, name); no identity twice."""
    keyed: dict[Key, dict[str, Any]] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in keyed, f"{key} rendered twice"
        keyed[key] = obj
    return keyed


def assert_same_objects(chart: list[dict[str, Any]], bundle: list[dict[str, Any]]) -> None:
    rendered, expected = by_identity(chart), by_identity(bundle)
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        assert rendered[key] == obj, f"{key} differs"


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param([], id="defaults"),
        pytest.param(
            [
                "--set=kustomizeController.create=false",
                "--set=helmController.create=false",
                "--set=notificationController.create=false",
                "--set=installCRDs=false",
                "--set=createNamespace=false",
                "--set=networkPolicy=false",
            ],
            id="least",
        ),
        pytest.param(["--set=imageAutomationController.create=true"], id="with-image-automation"),
    ],
)
def test_the_chart_passes_helm_lint_strict(helm_env: dict[str, str], settings: list[str]) -> None:
    done = helm(helm_env, "lint", "--strict", str(CHART), *settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("values", "options"),
    [
        pytest.param({}, BundleOptions(), id="defaults"),
        pytest.param(
            {**LOCKDOWN, "concurrent": 8},
            BundleOptions(
                namespace="tenants",
                concurrent=8,
                no_cross_namespace_refs=True,
                no_remote_bases=True,
                default_service_account="default",
            ),
            id="lockdown-concurrent-8-another-namespace",
        ),
        pytest.param(
            {
                **LOCKDOWN,
                "kustomizeController": {"create": False},
                "helmController": {"create": False},
                "notificationController": {"create": False},
                "concurrent": 8,
            },
            BundleOptions(
                namespace="gitops",
                components=("source-controller",),
                concurrent=8,
                no_cross_namespace_refs=True,
                no_remote_bases=True,
                default_service_account="default",
            ),
            id="only-source-controller",
        ),
        pytest.param(
            {
                "sourceController": {"create": False},
                "helmController": {"create": False},
                "notificationController": {"create": False},
                "noRemoteBases": True,
            },
            BundleOptions(components=("kustomize-controller",), no_remote_bases=True),
            id="only-kustomize-controller",
        ),
        pytest.param(
            {
                **LOCKDOWN,
                "sourceController": {"create": False},
                "kustomizeController": {"create": False},
                "notificationController": {"create": False},
            },
            BundleOptions(
                components=("helm-controller",),
                no_cross_namespace_refs=True,
                no_remote_bases=True,
                default_service_account="default",
            ),
            id="only-helm-controller-lockdown",
        ),
        pytest.param(
            {"notificationController": {"create": False}},
            BundleOptions(
                components=("source-controller", "kustomize-controller", "helm-controller")
            ),
            id="no-notification-controller",
        ),
        pytest.param(
            {
                "kustomizeController": {"create": False},
                "helmController": {"create": False},
                "noCrossNamespaceRefs": True,
                "clusterDomain": "cluster.example",
            },
            BundleOptions(
                namespace="alerts",
                components=("source-controller", "notification-controller"),
                no_cross_namespace_refs=True,
                cluster_domain="cluster.example",
            ),
            id="source-and-notification-lockdown-domain",
        ),
        pytest.param(
            {**LOCKDOWN, "imageAutomationController": {"create": True}},
            BundleOptions(
                namespace="images",
                components=(*DEFAULT_COMPONENTS, "image-automation-controller"),
                no_cross_namespace_refs=True,
                no_remote_bases=True,
                default_service_account="default",
            ),
            id="with-image-automation-lockdown",
        ),
        pytest.param(
            {
                "sourceController": {"create": False},
                "kustomizeController": {"create": False},
                "helmController": {"create": False},
                "notificationController": {"create": False},
                "imageAutomationController": {"create": True},
            },
            BundleOptions(components=("image-automation-controller",)),
            id="only-image-automation-controller",
        ),
        pytest.param(
            {
                "image": {"repository": "registry.example/weir", "tag": "dev"},
                "logLevel": "debug",
                "watchAllNamespaces": False,
                "networkPolicy": False,
                "clusterDomain": "cluster.example",
            },
            BundleOptions(
                namespace="weir",
                image_repository="registry.example/weir",
                image_tag="dev",
                log_level="debug",
                watch_all_namespaces=False,
                network_policy=False,
                cluster_domain="cluster.example",
            ),
            id="image-logs-one-namespace-no-policies-domain",
        ),
    ],
)
def test_the_chart_renders_what_weir_install_applies(
    helm_env: dict[str, str], tmp_path: Path, values: dict[str, Any], options: BundleOptions
) -> None:
    chart = template(helm_env, options.namespace, values, tmp_path)
    assert_same_objects(chart, render(options))


@pytest.mark.parametrize(
    ("values", "left_out"),
    [
        pytest.param({"installCRDs": False}, "CustomResourceDefinition", id="no-crds"),
        pytest.param({"createNamespace": False}, "Namespace", id="no-namespace"),
    ],
)
def test_what_the_chart_alone_can_leave_out(
    helm_env: dict[str, str], tmp_path: Path, values: dict[str, Any], left_out: str
) -> None:
    """The chart's own switches: the rest is still the bundle, to the field."""
    chart = template(helm_env, "flux-system", values, tmp_path)
    bundle = [obj for obj in render(BundleOptions()) if obj["kind"] != left_out]
    assert_same_objects(chart, bundle)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # values.schema.json
        pytest.param(
            {"logLevel": "verbose"},
            "value must be one of 'debug', 'info', 'error'",
            id="unknown-log-level",
        ),
        pytest.param({"concurrent": 0}, "minimum: got 0, want 1", id="no-workers"),
        pytest.param({"noRemoteBases": "yes"}, "/noRemoteBases", id="not-a-boolean"),
    ],
)
def test_values_the_chart_refuses(
    helm_env: dict[str, str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = helm(helm_env, "template", "weir", str(CHART), f"--values={values_file}")
    assert done.returncode != 0
    assert message in done.stderr


async def test_the_rendered_chart_passes_a_server_side_dry_run(
    helm_env: dict[str, str], kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    objects = await asyncio.to_thread(template, helm_env, namespace, {}, tmp_path)
    await dry_run_apply(kube, objects, "helm")
    # Nothing was made.
    assert await kube.get_or_none(CLUSTER_ROLE, None, f"source-controller-{namespace}") is None
    assert (await kube.list(DEPLOYMENT, namespace))["items"] == []


async def test_helm_install_creates_the_controllers_and_uninstall_removes_them(
    helm_env: dict[str, str], control_plane: ControlPlane, kube: KubeClient
) -> None:
    """As a user installs it: ``helm install --create-namespace``, the namespace not there yet.
    The suite's control plane has weir's CRDs already (not Helm's to adopt), so without them."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kubeconfig = f"--kubeconfig={control_plane.admin_kubeconfig}"
    try:
        installed = await asyncio.to_thread(
            helm,
            helm_env,
            "install",
            "weir",
            str(CHART),
            f"--namespace={namespace}",
            "--create-namespace",
            "--set=installCRDs=false",
            kubeconfig,
        )
        assert installed.returncode == 0, installed.stderr
        labels = (await kube.get(NAMESPACE, None, namespace))["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels[INSTANCE_LABEL] == namespace
        deployments = (await kube.list(DEPLOYMENT, namespace))["items"]
        assert sorted(d["metadata"]["name"] for d in deployments) == [
            "helm-controller",
            "kustomize-controller",
            "notification-controller",
            "source-controller",
        ]
        role = await kube.get(CLUSTER_ROLE, None, f"source-controller-{namespace}")
        assert role["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

        uninstalled = await asyncio.to_thread(
            helm, helm_env, "uninstall", "weir", f"--namespace={namespace}", kubeconfig
        )
        assert uninstalled.returncode == 0, uninstalled.stderr
        assert await kube.get_or_none(CLUSTER_ROLE, None, f"source-controller-{namespace}") is None
        await wait_for_deletion(kube, NAMESPACE, "", namespace, timeout=60)
    finally:
        selector = f"{PART_OF_LABEL}={PART_OF},{INSTANCE_LABEL}={namespace}"
        for info in (CLUSTER_ROLE_BINDING, CLUSTER_ROLE):
            for item in (await kube.list(info, label_selector=selector))["items"]:
                await kube.delete(info, None, item["metadata"]["name"])
        if await kube.get_or_none(NAMESPACE, None, namespace) is not None:
            await kube.delete(NAMESPACE, None, namespace)
