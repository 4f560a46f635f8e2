"""``weir install``, ``weir check`` and ``weir uninstall`` as a user runs them, against the real
API server; kwok plays the node, so Deployments become Available with no container running.

Installs go into the test's namespace on the shared control plane. ``uninstall`` deletes CRDs,
which are cluster-wide, so its test, and the one that deletes a CRD, run on a control plane of
their own (``own_plane``, started once for this module).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.discovery import RestMapper
from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP, NAMESPACE
from controllers.kube import KubeClient, NotFound
from controllers.reconcile import FINALIZER
from tests.integration.cli import Result, run_weir
from tests.integration.harness import dry_run_apply, wait_for_deletion
from tests.integration.kinds import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    CRD,
    DEPLOYMENT,
    GITREPO,
    KS,
    git_repository,
    kustomization,
)
from weir.bundle import INSTANCE_LABEL, PART_OF, PART_OF_LABEL, BundleOptions, render

pytestmark = pytest.mark.integration


async def weir(kubeconfig: Path, *args: str) -> Result:
    return await run_weir(*args, f"--kubeconfig={kubeconfig}")


async def resource_versions(
    kube: KubeClient, objects: list[dict[str, Any]]
) -> dict[tuple[str, str], str]:
    mapper = RestMapper(kube)
    versions = {}
    for obj in objects:
        info = await mapper.resource_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        found = await kube.get(info, meta.get("namespace"), meta["name"])
        versions[obj["kind"], meta["name"]] = found["metadata"]["resourceVersion"]
    return versions


@pytest.fixture
async def cluster_rbac_cleanup(kube: KubeClient, namespace: str) -> AsyncIterator[None]:
    """Removes the cluster-wide RBAC an install into ``namespace`` made (the namespace fixture
    removes the rest)."""
    yield
    selector = f"{PART_OF_LABEL}={PART_OF},{INSTANCE_LABEL}={namespace}"
    for info in (CLUSTER_ROLE_BINDING, CLUSTER_ROLE):
        for item in (await kube.list(info, label_selector=selector))["items"]:
            await kube.delete(info, None, item["metadata"]["name"])


async def test_the_exported_bundle_passes_a_server_side_dry_run(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    exported = await weir(
        control_plane.admin_kubeconfig, "install", "--export", f"--namespace={namespace}"
    )
    assert exported.code == 0, exported.err
    objects = [doc for doc in yaml.safe_load_all(exported.out) if doc]
    assert objects == render(BundleOptions(namespace=namespace))

    await dry_run_apply(kube, objects, "weir")
    # Nothing was made.
    assert await kube.get_or_none(CLUSTER_ROLE, None, f"source-controller-{namespace}") is None
    assert (await kube.list(DEPLOYMENT, namespace))["items"] == []


@pytest.mark.usefixtures("cluster_rbac_cleanup")
async def test_install_creates_the_controllers_and_a_second_install_changes_nothing(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    kubeconfig = control_plane.admin_kubeconfig
    first = await weir(kubeconfig, "install", f"--namespace={namespace}", "--timeout=2m")
    assert first.code == 0, first.err
    assert f"✔ Deployment {namespace}/source-controller is available" in first.err
    assert f"✔ Deployment {namespace}/kustomize-controller is available" in first.err
    assert f"✔ Deployment {namespace}/notification-controller is available" in first.err
    assert first.err.strip().endswith("✔ install finished")
    objects = render(BundleOptions(namespace=namespace))
    before = await resource_versions(kube, objects)

    second = await weir(kubeconfig, "install", f"--namespace={namespace}", "--timeout=2m")
    assert second.code == 0, second.err
    applied = [line for line in second.err.splitlines() if line.startswith("  ")]
    assert len(applied) == len(objects)
    assert all(line.endswith(" unchanged") for line in applied), applied
    assert await resource_versions(kube, objects) == before

    checked = await weir(kubeconfig, "check", f"--namespace={namespace}")
    assert checked.code == 0, checked.err
    assert checked.err.strip().endswith("✔ all checks passed")
    assert "✗" not in checked.err


@pytest.fixture(scope="module")
def own_plane() -> Iterator[ControlPlane]:
    """A control plane of this module's own, without weir's CRDs: only installs make them."""
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix="weir-install-", dir=shm if shm.is_dir() else None))
    plane = ControlPlane(workdir, crd_dir=None)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def own_kube(own_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(str(own_plane.admin_kubeconfig))
    try:
        yield client
    finally:
        await client.close()


async def test_check_names_what_is_missing(own_plane: ControlPlane, own_kube: KubeClient) -> None:
    kubeconfig = own_plane.admin_kubeconfig
    pre = await weir(kubeconfig, "check", "--pre")
    assert pre.code == 0, pre.err
    assert "✔ Kubernetes v1.34.4 >=1.30" in pre.err
    installed = await weir(kubeconfig, "install", "--timeout=2m")
    assert installed.code == 0, installed.err
    passed = await weir(kubeconfig, "check")
    assert passed.code == 0, passed.err
    assert (
        "✔ CustomResourceDefinition buckets.source.toolkit.fluxcd.io is established" in passed.err
    )
    assert (
        "✔ CustomResourceDefinition receivers.notification.toolkit.fluxcd.io is established"
        in passed.err
    )
    assert "✔ Deployment flux-system/notification-controller is available (weir:" in passed.err

    await own_kube.delete(CRD, None, "buckets.source.toolkit.fluxcd.io")
    await wait_for_deletion(own_kube, CRD, "", "buckets.source.toolkit.fluxcd.io")
    failed = await weir(kubeconfig, "check")

    assert failed.code == 1
    lines = failed.err.strip().splitlines()
    assert "✗ CustomResourceDefinition buckets.source.toolkit.fluxcd.io is not installed" in lines
    assert [line for line in lines if line.startswith("✗")] == [
        "✗ CustomResourceDefinition buckets.source.toolkit.fluxcd.io is not installed",
        "✗ check failed",
    ]
    assert "✔ Deployment flux-system/source-controller is available (weir:" in failed.err
    # The commands that list every kind leave out the one the cluster no longer serves.
    listed = await weir(kubeconfig, "get", "all", "-A")
    assert listed.code == 0, listed.err
    counted = await weir(kubeconfig, "stats", "-A")
    assert counted.code == 0, counted.err
    assert [line.split()[0] for line in counted.out.splitlines()[1:]] == [
        "GitRepository",
        "OCIRepository",
        "HelmRepository",
        "HelmChart",
        "Kustomization",
        "HelmRelease",
        "Receiver",
        "Alert",
        "Provider",
    ]


async def test_uninstall_leaves_what_the_controllers_applied(
    own_plane: ControlPlane, own_kube: KubeClient
) -> None:
    kubeconfig = own_plane.admin_kubeconfig
    installed = await weir(kubeconfig, "install", "--timeout=2m")
    assert installed.code == 0, installed.err
    # What a Kustomization would have made: the Kustomization with the controller's
    # finalizer, its source, and a ConfigMap it applied into another namespace.
    await own_kube.create(NAMESPACE, {"metadata": {"name": "apps"}})
    source = git_repository("app", "flux-system")
    source["metadata"]["finalizers"] = [FINALIZER]
    await own_kube.create(GITREPO, source)
    applier = kustomization("app", "flux-system", "./deploy", targetNamespace="apps")
    applier["metadata"]["finalizers"] = [FINALIZER]
    await own_kube.create(KS, applier)
    applied_labels = {
        "kustomize.toolkit.fluxcd.io/name": "app",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    await own_kube.create(
        CONFIG_MAP,
        {
            "metadata": {"name": "settings", "namespace": "apps", "labels": applied_labels},
            "data": {"replicas": "2"},
        },
    )

    dry = await weir(kubeconfig, "uninstall", "--dry-run")
    assert dry.code == 0, dry.err
    assert "✔ Kustomization flux-system/app: finalizer removed (dry run)" in dry.err
    assert (await own_kube.get(KS, "flux-system", "app"))["metadata"]["finalizers"] == [FINALIZER]
    assert await own_kube.get_or_none(DEPLOYMENT, "flux-system", "kustomize-controller")

    done = await weir(kubeconfig, "uninstall", "--timeout=2m")

    assert done.code == 0, done.err
    assert done.err.strip().endswith("✔ uninstall finished")
    assert "✔ Kustomization flux-system/app: finalizer removed" in done.err
    settings = await own_kube.get(CONFIG_MAP, "apps", "settings")
    assert settings["data"] == {"replicas": "2"}
    weir_crds = await own_kube.list(CRD, label_selector=f"{PART_OF_LABEL}={PART_OF}")
    assert weir_crds["items"] == []
    with pytest.raises(NotFound):
        await own_kube.get(CRD, None, "kustomizations.kustomize.toolkit.fluxcd.io")
    rbac = f"{PART_OF_LABEL}={PART_OF}"
    assert (await own_kube.list(CLUSTER_ROLE, label_selector=rbac))["items"] == []
    assert (await own_kube.list(CLUSTER_ROLE_BINDING, label_selector=rbac))["items"] == []
    namespace = await own_kube.get_or_none(NAMESPACE, None, "flux-system")
    assert namespace is None or namespace["metadata"].get("deletionTimestamp")
    await wait_for_deletion(own_kube, NAMESPACE, "", "flux-system", timeout=60)
