"""A HelmRelease's ``postRenderers`` and ``commonMetadata`` through Helm v4's plugin mechanism
(``helm.postrender``), installed by ``helm.client`` in a process started as the helm controller
starts (``exec_as_helm_controller``: Helm's homes, ``HELM_PLUGINS`` among them, set at exec),
against the real API server; the Go-built ``helm`` CLI reads back what Helm stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.binaries import find_binary
from controllers.envtest import REPO_ROOT, ControlPlane
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from tests.helmcli import helm_env
from tests.integration.kinds import DEPLOYMENT

pytestmark = pytest.mark.integration

CHART_FILES = {
    "Chart.yaml": """\
        apiVersion: v2
        name: patched
        version: 0.1.0
        """,
    "templates/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
          labels: {team: chart}
        data:
          greeting: hello
        """,
    "templates/secret.yaml": """\
        apiVersion: v1
        kind: Secret
        metadata:
          name: {{ .Release.Name }}-secret
        stringData:
          password: not-for-the-logs
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
    # A test hook: stored with the release, not run by an install.
    "templates/hook.yaml": """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {{ .Release.Name }}-test
          annotations:
            helm.sh/hook: test
        spec:
          containers:
            - name: test
              image: example.invalid/test:1
        """,
}

INSTALL_SCRIPT = """
import asyncio, json, sys
from helm.launch import exec_as_helm_controller
exec_as_helm_controller()
from helm.api_v2 import HelmRelease
from helm.client import HelmClient, HelmError, InstallOptions
from helm.postrender import post_render_options

async def main():
    obj = HelmRelease.model_validate(json.loads(sys.argv[3]))
    client = HelmClient(kubeconfig_path=sys.argv[1])
    try:
        with post_render_options(obj) as post_render:
            release = await client.install(
                obj.metadata.name, sys.argv[2], {}, namespace=obj.metadata.namespace,
                options=post_render.apply(InstallOptions(wait=False)),
            )
        print(json.dumps({"version": release.version, "status": release.status}))
    except HelmError as err:
        print(json.dumps({"error": type(err).__name__, "message": str(err)}))
    finally:
        client.close()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chart") / "patched"
    for name, text in CHART_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def helm_release(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "5m",
            "chart": {
                "spec": {"chart": "patched", "sourceRef": {"kind": "HelmRepository", "name": "r"}}
            },
            **spec,
        },
    }


async def install(
    control_plane: ControlPlane, chart: Path, obj: dict[str, Any], tmp_path: Path
) -> tuple[dict[str, Any], str]:
    """Install ``obj``'s release as the helm controller would; its answer, and its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            INSTALL_SCRIPT,
            str(control_plane.admin_kubeconfig),
            str(chart),
            json.dumps(obj),
        ],
        env={**env, "TMPDIR": str(tmp_path)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer, done.stderr


def helm_cli(
    control_plane: ControlPlane, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    home = tmp_path / "cli-home"
    env = helm_env(home)
    return subprocess.run(
        [str(binary), f"--kubeconfig={control_plane.admin_kubeconfig}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def by_kind_name(manifest: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(manifest) if doc
    }


ORIGIN = "helm.toolkit.fluxcd.io"


async def test_patches_images_and_common_metadata(
    kube: KubeClient, namespace: str, chart: Path, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Two kustomize post-renderers in order (the second patches what the first added), a
    JSON 6902 patch with a target, a strategic merge patch, an image; then commonMetadata and
    the origin labels on every object, hooks included; what Helm stored and what the API
    server holds agree."""
    obj = helm_release(
        namespace,
        "app",
        {
            "commonMetadata": {
                "labels": {"team": "platform", f"{ORIGIN}/name": "not-this"},
                "annotations": {"owner": "ops"},
            },
            "postRenderers": [
                {
                    "kustomize": {
                        "patches": [
                            {
                                "target": {"kind": "Deployment", "name": "app-app"},
                                "patch": "- op: replace\n  path: /spec/replicas\n  value: 3\n"
                                "- op: add\n  path: /metadata/labels\n  value: {tier: web}\n",
                            },
                        ],
                        "images": [{"name": "example.invalid/app", "newTag": "2"}],
                    }
                },
                {
                    "kustomize": {
                        "patches": [
                            {
                                "target": {"labelSelector": "tier=web"},
                                "patch": "apiVersion: apps/v1\nkind: Deployment\n"
                                "metadata: {name: ignored}\n"
                                "spec: {minReadySeconds: 7}\n",
                            },
                            {
                                "patch": "apiVersion: v1\nkind: ConfigMap\n"
                                "metadata: {name: app-config}\n"
                                "data: {greeting: patched}\n",
                            },
                        ]
                    }
                },
            ],
        },
    )
    answer, stderr = await install(control_plane, chart, obj, tmp_path)
    assert answer == {"version": 1, "status": "deployed"}
    assert "not-for-the-logs" not in stderr

    got = helm_cli(control_plane, tmp_path, "get", "manifest", "app", f"--namespace={namespace}")
    assert got.returncode == 0, got.stderr
    stored = by_kind_name(got.stdout)
    assert set(stored) == {
        ("ConfigMap", "app-config"),
        ("Secret", "app-secret"),
        ("Deployment", "app-app"),
    }
    deployment = stored["Deployment", "app-app"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["minReadySeconds"] == 7
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "example.invalid/app:2"
    )
    # Selectors and pod templates are not the objects' own metadata: left alone, as Flux does.
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "app"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "app"}
    assert stored["ConfigMap", "app-config"]["data"] == {"greeting": "patched"}
    for doc in stored.values():
        labels = doc["metadata"]["labels"]
        assert labels["team"] == "platform"
        # The origin labels win over a common label of the same key.
        assert labels[f"{ORIGIN}/name"] == "app"
        assert labels[f"{ORIGIN}/namespace"] == namespace
        assert doc["metadata"]["annotations"]["owner"] == "ops"
        # Helm's bookkeeping annotation is removed again after post-rendering.
        assert "postrenderer.helm.sh/postrender-filename" not in doc["metadata"]["annotations"]

    hooks = helm_cli(control_plane, tmp_path, "get", "hooks", "app", f"--namespace={namespace}")
    assert hooks.returncode == 0, hooks.stderr
    (hook,) = [doc for doc in yaml.safe_load_all(hooks.stdout) if doc]
    assert hook["metadata"]["name"] == "app-test"
    assert hook["metadata"]["labels"][f"{ORIGIN}/name"] == "app"

    live = await kube.get(DEPLOYMENT, namespace, "app-app")
    assert live["spec"]["replicas"] == 3
    assert live["metadata"]["labels"]["tier"] == "web"
    config_map = await kube.get(CONFIG_MAP, namespace, "app-config")
    assert config_map["data"] == {"greeting": "patched"}
    secret = await kube.get(SECRET, namespace, "app-secret")
    assert secret["metadata"]["labels"][f"{ORIGIN}/namespace"] == namespace


async def test_without_post_renderers_objects_get_origin_labels(
    kube: KubeClient, namespace: str, chart: Path, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """No postRenderers, no commonMetadata: still the origin labels (Flux 2.8+), chart labels
    kept; ``nohooks`` leaves the hooks as the chart wrote them."""
    obj = helm_release(namespace, "plain", {"postRenderStrategy": "nohooks"})
    answer, _ = await install(control_plane, chart, obj, tmp_path)
    assert answer == {"version": 1, "status": "deployed"}
    config_map = await kube.get(CONFIG_MAP, namespace, "plain-config")
    assert config_map["metadata"]["labels"] == {
        "team": "chart",
        "app.kubernetes.io/managed-by": "Helm",
        f"{ORIGIN}/name": "plain",
        f"{ORIGIN}/namespace": namespace,
    }
    hooks = helm_cli(control_plane, tmp_path, "get", "hooks", "plain", f"--namespace={namespace}")
    assert hooks.returncode == 0, hooks.stderr
    (hook,) = [doc for doc in yaml.safe_load_all(hooks.stdout) if doc]
    assert "labels" not in hook["metadata"]


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        pytest.param(
            {
                "target": {"kind": "Deployment"},
                "patch": "- op: remove\n  path: /spec/noSuchField\n",
            },
            "noSuchField",
            id="json6902-path-missing",
        ),
        pytest.param(
            {"patch": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nowhere}\n"},
            "nowhere",
            id="strategic-merge-target-missing",
        ),
    ],
)
async def test_bad_patch_fails_clearly_and_installs_nothing(
    kube: KubeClient,
    namespace: str,
    chart: Path,
    control_plane: ControlPlane,
    tmp_path: Path,
    patch: dict[str, Any],
    reason: str,
) -> None:
    obj = helm_release(
        namespace, "broken", {"postRenderers": [{"kustomize": {"patches": [patch]}}]}
    )
    answer, stderr = await install(control_plane, chart, obj, tmp_path)
    assert answer["error"] == "PostRenderError", answer
    message = answer["message"]
    assert message.startswith("error while running post render on files: kustomize: "), message
    assert reason in message
    assert "exited with error" not in message
    assert str(tmp_path) not in message  # no temporary paths
    assert "not-for-the-logs" not in message + stderr

    history = helm_cli(control_plane, tmp_path, "history", "broken", f"--namespace={namespace}")
    assert history.returncode != 0
    assert "not found" in history.stderr
    assert await kube.get_or_none(CONFIG_MAP, namespace, "broken-config") is None
    assert await kube.get_or_none(DEPLOYMENT, namespace, "broken-app") is None
    # The spec's directory and the plugin's work went with the action.
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("weir-postrender-*")))


async def test_chart_without_objects_installs(
    namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A chart that renders no object: the post-renderer has nothing to do, and Helm (which
    refuses a post-renderer's blank output) still installs it, as Flux does."""
    empty = tmp_path / "empty"
    (empty / "templates").mkdir(parents=True)
    (empty / "Chart.yaml").write_text("apiVersion: v2\nname: empty\nversion: 0.1.0\n")
    (empty / "templates" / "NOTES.txt").write_text("nothing here\n")
    obj = helm_release(namespace, "empty", {"commonMetadata": {"labels": {"team": "a"}}})
    answer, _ = await install(control_plane, empty, obj, tmp_path)
    assert answer == {"version": 1, "status": "deployed"}
