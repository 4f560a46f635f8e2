"""``helm.client`` against the real control plane, with Helm v4 in process, checked by the
Go-built ``helm`` CLI: what weir's client stores is what Helm sees.

The chart is written here: a ConfigMap from the values, a Deployment that becomes Available on
kwok's nodes (or never, with ``ready: false``: its pods select no node), a Job hook run before
upgrades and as a test (kwok completes Job pods), and an invalid ConfigMap key behind
``badKey`` that the API server rejects, to make an upgrade fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest

from controllers.binaries import find_binary
from controllers.envtest import REPO_ROOT, ControlPlane
from controllers.kinds import CONFIG_MAP, NAMESPACE, SECRET
from controllers.kube import KubeClient
from helm.client import (
    HelmCancelled,
    HelmClient,
    HelmError,
    HelmTestOptions,
    HelmTimeout,
    InstallOptions,
    ReleaseConflict,
    ReleaseNotFound,
    UninstallOptions,
)
from tests.helmcli import helm_env as helm_environment
from tests.integration.harness import wait_for_deletion, wait_for_object
from tests.integration.kinds import DEPLOYMENT

pytestmark = pytest.mark.integration

CHART_FILES = {
    "Chart.yaml": """\
        apiVersion: v2
        name: tiny
        version: 0.1.0
        appVersion: "1.0"
        """,
    "values.yaml": """\
        greeting: hello
        ready: true
        badKey: false
        """,
    "templates/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
        data:
          greeting: {{ .Values.greeting | quote }}
          {{- if .Values.badKey }}
          "not a valid key!": "x"
          {{- end }}
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
              {{- if not .Values.ready }}
              nodeSelector: {weir.test/no-such-node: "true"}
              {{- end }}
              containers:
                - name: app
                  image: example.invalid/app:1
        """,
    "templates/hook.yaml": """\
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: {{ .Release.Name }}-hook
          annotations:
            helm.sh/hook: pre-upgrade,test
            helm.sh/hook-delete-policy: before-hook-creation
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
                - name: hook
                  image: example.invalid/hook:1
        """,
    "templates/NOTES.txt": "Hello from {{ .Release.Name }}.\n",
}


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chart") / "tiny"
    for name, text in CHART_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm-home")
    return helm_environment(home)


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[HelmClient]:
    helm = HelmClient(kubeconfig_path=control_plane.admin_kubeconfig)
    try:
        yield helm
    finally:
        helm.close()


def helm_cli(
    env: Mapping[str, str], control_plane: ControlPlane, *args: str
) -> subprocess.CompletedProcess[str]:
    """The Go-built ``helm`` on the test's control plane."""
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    return subprocess.run(
        [str(binary), f"--kubeconfig={control_plane.admin_kubeconfig}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli_history(
    env: Mapping[str, str], control_plane: ControlPlane, namespace: str, name: str
) -> list[tuple[int, str]]:
    done = helm_cli(env, control_plane, "history", name, f"--namespace={namespace}", "-o=json")
    assert done.returncode == 0, done.stderr
    return [(entry["revision"], entry["status"]) for entry in json.loads(done.stdout)]


async def greeting(kube: KubeClient, namespace: str, name: str) -> str:
    config_map = await kube.get(CONFIG_MAP, namespace, f"{name}-config")
    value: str = config_map["data"]["greeting"]
    return value


async def release_secrets(kube: KubeClient, namespace: str, name: str) -> dict[str, str]:
    """Helm's release Secrets of ``name``: Secret name -> type."""
    items = (await kube.list(SECRET, namespace))["items"]
    return {
        item["metadata"]["name"]: item["type"]
        for item in items
        if item["metadata"]["name"].startswith(f"sh.helm.release.v1.{name}.")
    }


async def test_install_upgrade_rollback_as_helm_sees_them(
    client: HelmClient,
    kube: KubeClient,
    namespace: str,
    chart: Path,
    control_plane: ControlPlane,
    helm_env: dict[str, str],
) -> None:
    installed = await client.install("app", chart, {"greeting": "one"}, namespace=namespace)
    assert (installed.version, installed.status) == (1, "deployed")
    assert (installed.chart_name, installed.chart_version, installed.app_version) == (
        "tiny",
        "0.1.0",
        "1.0",
    )
    assert installed.notes == "Hello from app.\n"
    assert "name: app-config" in installed.manifest
    assert [hook.name for hook in installed.hooks] == ["app-hook"]
    assert installed.hooks[0].events == ("pre-upgrade", "test")
    assert await release_secrets(kube, namespace, "app") == {
        "sh.helm.release.v1.app.v1": "helm.sh/release.v1"
    }
    listed = helm_cli(helm_env, control_plane, "list", f"--namespace={namespace}", "-o=json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["name"], r["revision"], r["status"]) for r in json.loads(listed.stdout)] == [
        ("app", "1", "deployed")
    ]
    assert await greeting(kube, namespace, "app") == "one"

    upgraded = await client.upgrade("app", chart, {"greeting": "two"}, namespace=namespace)
    assert (upgraded.version, upgraded.status) == (2, "deployed")
    assert upgraded.values == {"greeting": "two"}
    assert upgraded.hooks[0].last_run_phase == "Succeeded"  # the pre-upgrade Job ran
    assert await greeting(kube, namespace, "app") == "two"

    rolled_back = await client.rollback("app", storage_namespace=namespace, version=1)
    assert (rolled_back.version, rolled_back.status) == (3, "deployed")
    assert rolled_back.values == {"greeting": "one"}
    assert rolled_back.description == "Rollback to 1"
    assert await greeting(kube, namespace, "app") == "one"

    history = await client.history("app", storage_namespace=namespace)
    assert [(r.version, r.status) for r in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    assert cli_history(helm_env, control_plane, namespace, "app") == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    assert (await client.get("app", storage_namespace=namespace, version=2)).values == {
        "greeting": "two"
    }

    tested = await client.test("app", storage_namespace=namespace, options=HelmTestOptions())
    assert [(hook.name, hook.last_run_phase) for hook in tested.release.hooks] == [
        ("app-hook", "Succeeded")
    ]


@pytest.mark.xfail(
    strict=True,
    raises=ReleaseNotFound,
    reason="helm-c-sdk 0.2.2 (helm-python-sdk 0.2.2) installs with a Helm configuration built "
    "for the install namespace, so the release is stored there, and it refuses an upgrade whose "
    "namespace differs from its configuration's: helm/settings.py refuses such HelmReleases",
)
async def test_release_stored_apart_from_its_objects(
    client: HelmClient,
    kube: KubeClient,
    namespace: str,
    chart: Path,
    control_plane: ControlPlane,
    helm_env: dict[str, str],
) -> None:
    """Flux's ``targetNamespace`` with a ``storageNamespace``: the chart's objects go to one
    namespace, Helm's release Secrets stay in the other (Helm's Go SDK keeps these apart:
    ``Configuration.Init``'s namespace is the storage, ``Install.Namespace`` the objects')."""
    storage = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(NAMESPACE, {"metadata": {"name": storage}})
    try:
        installed = await client.install(
            "apart", chart, {"greeting": "one"}, namespace=namespace, storage_namespace=storage
        )
        assert (installed.namespace, installed.version, installed.status) == (
            namespace,
            1,
            "deployed",
        )
        assert await release_secrets(kube, storage, "apart") == {
            "sh.helm.release.v1.apart.v1": "helm.sh/release.v1"
        }
        assert await release_secrets(kube, namespace, "apart") == {}
        assert await greeting(kube, namespace, "apart") == "one"
        for listed_namespace, names in ((storage, ["apart"]), (namespace, [])):
            listed = helm_cli(
                helm_env, control_plane, "list", f"--namespace={listed_namespace}", "-o=json"
            )
            assert listed.returncode == 0, listed.stderr
            assert [r["name"] for r in json.loads(listed.stdout)] == names

        upgraded = await client.upgrade(
            "apart", chart, {"greeting": "two"}, namespace=namespace, storage_namespace=storage
        )
        assert (upgraded.version, upgraded.status) == (2, "deployed")
        assert await greeting(kube, namespace, "apart") == "two"
        assert cli_history(helm_env, control_plane, storage, "apart") == [
            (1, "superseded"),
            (2, "deployed"),
        ]

        await client.uninstall("apart", storage_namespace=storage)
        await wait_for_deletion(kube, CONFIG_MAP, namespace, "apart-config")
        assert await release_secrets(kube, storage, "apart") == {}
    finally:
        await kube.delete(NAMESPACE, None, storage)


@pytest.mark.parametrize("keep_history", [True, False], ids=["keep-history", "no-history"])
async def test_uninstall(
    client: HelmClient,
    kube: KubeClient,
    namespace: str,
    chart: Path,
    control_plane: ControlPlane,
    helm_env: dict[str, str],
    keep_history: bool,
) -> None:
    await client.install("gone", chart, {}, namespace=namespace)
    removed = await client.uninstall(
        "gone", storage_namespace=namespace, options=UninstallOptions(keep_history=keep_history)
    )
    assert (removed.version, removed.status) == (1, "uninstalled")
    await wait_for_deletion(kube, CONFIG_MAP, namespace, "gone-config")
    await wait_for_deletion(kube, DEPLOYMENT, namespace, "gone-app")
    if keep_history:
        assert await release_secrets(kube, namespace, "gone") == {
            "sh.helm.release.v1.gone.v1": "helm.sh/release.v1"
        }
        assert cli_history(helm_env, control_plane, namespace, "gone") == [(1, "uninstalled")]
        assert [r.status for r in await client.history("gone", storage_namespace=namespace)] == [
            "uninstalled"
        ]
    else:
        assert await release_secrets(kube, namespace, "gone") == {}
        done = helm_cli(helm_env, control_plane, "history", "gone", f"--namespace={namespace}")
        assert done.returncode != 0
        assert "release: not found" in done.stderr
        with pytest.raises(ReleaseNotFound):
            await client.history("gone", storage_namespace=namespace)
        with pytest.raises(ReleaseNotFound):
            await client.uninstall("gone", storage_namespace=namespace)


async def test_failed_upgrade_is_recorded_and_the_next_one_succeeds(
    client: HelmClient,
    kube: KubeClient,
    namespace: str,
    chart: Path,
    control_plane: ControlPlane,
    helm_env: dict[str, str],
) -> None:
    await client.install("bad", chart, {}, namespace=namespace)
    with pytest.raises(HelmError) as failed:
        await client.upgrade("bad", chart, {"badKey": True}, namespace=namespace)
    assert type(failed.value) is HelmError
    assert "a valid config key must consist of alphanumeric characters" in str(failed.value)
    assert cli_history(helm_env, control_plane, namespace, "bad") == [
        (1, "deployed"),
        (2, "failed"),
    ]
    latest = await client.get("bad", storage_namespace=namespace)
    assert (latest.version, latest.status) == (2, "failed")

    fixed = await client.upgrade("bad", chart, {"greeting": "fixed"}, namespace=namespace)
    assert (fixed.version, fixed.status) == (3, "deployed")
    assert await greeting(kube, namespace, "bad") == "fixed"


async def test_errors(client: HelmClient, namespace: str, chart: Path) -> None:
    with pytest.raises(ReleaseNotFound):
        await client.get("missing", storage_namespace=namespace)
    with pytest.raises(ReleaseNotFound):
        await client.rollback("missing", storage_namespace=namespace)
    await client.install("taken", chart, {}, namespace=namespace)
    with pytest.raises(ReleaseConflict, match="cannot reuse a name that is still in use"):
        await client.install("taken", chart, {}, namespace=namespace)

    with pytest.raises(HelmTimeout, match="not ready"):
        await client.install(
            "slow", chart, {"ready": False}, namespace=namespace, options=InstallOptions(timeout=2)
        )
    assert (await client.get("slow", storage_namespace=namespace)).status == "failed"


async def test_one_action_at_a_time_per_release(
    client: HelmClient, namespace: str, chart: Path
) -> None:
    """Two upgrades at once: the second waits for the first (Helm alone would refuse it as
    'another operation is in progress', or worse)."""
    await client.install("busy", chart, {}, namespace=namespace)
    first, second = await asyncio.gather(
        client.upgrade("busy", chart, {"greeting": "a"}, namespace=namespace),
        client.upgrade("busy", chart, {"greeting": "b"}, namespace=namespace),
    )
    assert sorted([first.version, second.version]) == [2, 3]
    history = await client.history("busy", storage_namespace=namespace)
    assert [r.status for r in history] == ["superseded", "superseded", "deployed"]


async def test_cancelled_install_leaves_a_recoverable_release(
    client: HelmClient, kube: KubeClient, namespace: str, chart: Path
) -> None:
    install = asyncio.create_task(
        client.install("stuck", chart, {"ready": False}, namespace=namespace)
    )
    # Helm is waiting once the Deployment exists: it never becomes Available.
    await wait_for_object(kube, DEPLOYMENT, namespace, "stuck-app", lambda obj: True)
    install.cancel()
    async with asyncio.timeout(10):
        with pytest.raises(asyncio.CancelledError) as cancelled:
            await install
    assert isinstance(cancelled.value.__cause__, HelmCancelled)

    stuck = await client.get("stuck", storage_namespace=namespace)
    assert (stuck.version, stuck.status) == (1, "failed")
    await client.uninstall("stuck", storage_namespace=namespace)
    again = await client.install("stuck", chart, {}, namespace=namespace)
    assert (again.version, again.status) == (1, "deployed")


FIELD_MANAGER_SCRIPT = """
import asyncio, sys
from helm.launch import exec_as_helm_controller
exec_as_helm_controller()
from helm.client import HelmClient
async def main():
    client = HelmClient(kubeconfig_path=sys.argv[1])
    await client.install("managed", sys.argv[2], {}, namespace=sys.argv[3])
    client.close()
asyncio.run(main())
"""


async def test_field_manager_is_helm_controller(
    kube: KubeClient, namespace: str, chart: Path, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Run the way ``python -m helm`` runs (``exec_as_helm_controller`` first), Helm applies
    the release's objects as ``helm-controller``, Flux's field manager."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            FIELD_MANAGER_SCRIPT,
            str(control_plane.admin_kubeconfig),
            str(chart),
            namespace,
        ],
        env={**env, "TMPDIR": str(tmp_path)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for info, name in ((CONFIG_MAP, "managed-config"), (DEPLOYMENT, "managed-app")):
        obj: dict[str, Any] = await kube.get(info, namespace, name)
        managers = {
            (entry["manager"], entry["operation"]) for entry in obj["metadata"]["managedFields"]
        }
        assert ("helm-controller", "Apply") in managers, managers
        assert not {manager for manager, _ in managers} & {"python", "python3", "helm"}


def crd_chart(root: Path, group: str, *, with_resource: bool) -> Path:
    """A chart that makes a CRD from a template (not crds/), and later an object of it."""
    plural = "gadgets"
    files = {
        "Chart.yaml": "apiVersion: v2\nname: gadgets\nversion: 0.1.0\n",
        "templates/crd.yaml": f"""\
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: {plural}.{group}
            spec:
              group: {group}
              scope: Namespaced
              names: {{plural: {plural}, singular: gadget, kind: Gadget}}
              versions:
                - name: v1
                  served: true
                  storage: true
                  schema:
                    openAPIV3Schema:
                      type: object
                      x-kubernetes-preserve-unknown-fields: true
            """,
    }
    if with_resource:
        files["templates/gadget.yaml"] = f"""\
            apiVersion: {group}/v1
            kind: Gadget
            metadata:
              name: first
            """
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


async def test_without_reuse_each_action_discovers_the_kinds_anew(
    client: HelmClient, namespace: str, tmp_path: Path
) -> None:
    """``persistentClient: false``: a CRD made by one release's template is known to the next
    action, whose configuration is new; none is kept open for later, where the reusing client
    keeps one per storage namespace."""
    opened = helm_python.open_handles_count()
    fresh = client.without_reuse()
    group = f"t{uuid.uuid4().hex[:8]}.weir.test"
    chart = crd_chart(tmp_path / "gadgets", group, with_resource=False)
    await fresh.install("gadgets", chart, {}, namespace=namespace)
    crd_chart(chart, group, with_resource=True)

    upgraded = await fresh.upgrade("gadgets", chart, {}, namespace=namespace)

    assert upgraded.status == "deployed"
    assert "kind: Gadget" in upgraded.manifest
    assert helm_python.open_handles_count() == opened
    await client.get("gadgets", storage_namespace=namespace)
    assert helm_python.open_handles_count() == opened + 1
