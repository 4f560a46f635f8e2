"""``helm test`` through ``helm.client`` against the real control plane: kwok ends test pods
(``controllers.envtest``: Succeeded, or Failed when annotated ``weir.test/outcome: failed``),
the client reports each hook's phase, filters choose the hooks, and the Go-built ``helm status``
sees the same results in the release Helm stored."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controllers.binaries import find_binary
from controllers.envtest import TEST_OUTCOME_ANNOTATION, ControlPlane
from helm.api_v2 import HelmRelease
from helm.client import HelmClient, HelmError, HelmTestOptions, InstallOptions, Release
from helm.history import snapshot
from helm.tests import TEST_FAILED, outcome, snapshot_after_tests, untested_state
from tests.helmcli import helm_env

pytestmark = pytest.mark.integration


def _test_pod(name: str, weight: int, annotations: str = "") -> str:
    return f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {{{{ .Release.Name }}}}-{name}
          annotations:
            helm.sh/hook: test
            helm.sh/hook-weight: "{weight}"
            helm.sh/hook-delete-policy: before-hook-creation
            {annotations}
        spec:
          restartPolicy: Never
          containers:
            - name: check
              image: example.invalid/check:1
        """


# Helm runs test hooks by weight: the passing one first, so both run before the failure ends
# the suite.
CHART_FILES = {
    "Chart.yaml": "apiVersion: v2\nname: tested\nversion: 0.1.0\n",
    "templates/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
        data: {greeting: hello}
        """,
    "templates/test-passes.yaml": _test_pod("passes", -1),
    "templates/test-fails.yaml": _test_pod("fails", 1, f'{TEST_OUTCOME_ANNOTATION}: "failed"'),
}


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chart") / "tested"
    for name, text in CHART_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[HelmClient]:
    helm = HelmClient(kubeconfig_path=control_plane.admin_kubeconfig)
    try:
        yield helm
    finally:
        helm.close()


@pytest.fixture
async def installed(client: HelmClient, namespace: str, chart: Path) -> str:
    await client.install(
        "app",
        str(chart),
        {},
        namespace=namespace,
        storage_namespace=namespace,
        options=InstallOptions(timeout=60),
    )
    return "app"


def _phases(release: Release) -> dict[str, str]:
    return {hook.name: hook.last_run_phase for hook in release.hooks if "test" in hook.events}


def _cli_phases(
    control_plane: ControlPlane, tmp_path: Path, namespace: str, name: str
) -> dict[str, str]:
    """Test hook phases as the Go-built ``helm status`` reads them from Helm's storage."""
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    env = helm_env(tmp_path)
    done = subprocess.run(
        [
            str(binary),
            f"--kubeconfig={control_plane.admin_kubeconfig}",
            "status",
            name,
            f"--namespace={namespace}",
            "-o=json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hooks = json.loads(done.stdout).get("hooks") or []
    return {
        hook["name"]: (hook.get("last_run") or {}).get("phase", "")
        for hook in hooks
        if "test" in (hook.get("events") or [])
    }


async def test_a_failing_test_fails_the_suite_and_each_phase_is_recorded(
    client: HelmClient, control_plane: ControlPlane, namespace: str, installed: str, tmp_path: Path
) -> None:
    with pytest.raises(HelmError, match="app-fails"):
        await client.test(
            installed, storage_namespace=namespace, options=HelmTestOptions(timeout=60)
        )

    release = await client.get(installed, storage_namespace=namespace)
    expected = {"app-passes": "Succeeded", "app-fails": "Failed"}
    assert _phases(release) == expected
    assert _cli_phases(control_plane, tmp_path, namespace, installed) == expected
    hooks = {hook.name: hook for hook in release.hooks}
    assert hooks["app-fails"].last_run_started
    assert hooks["app-fails"].last_run_completed


async def test_what_a_helmrelease_records_of_a_real_run(
    client: HelmClient, namespace: str, installed: str
) -> None:
    """helm/tests.py over the release Helm stored: the snapshot's testHooks (Helm's own times)
    and a failure that counts for remediation."""
    before = await client.get(installed, storage_namespace=namespace)
    obj = HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": installed, "namespace": namespace},
            "spec": {
                "interval": "5m",
                "chartRef": {"kind": "OCIRepository", "name": "tested"},
                "test": {"enable": True},
            },
            "status": {
                "history": [snapshot(before, "install").to_dict()],
                "lastAttemptedReleaseAction": "install",
            },
        }
    )
    with pytest.raises(HelmError) as failed:
        await client.test(
            installed, storage_namespace=namespace, options=HelmTestOptions(timeout=60)
        )
    after = await client.get(installed, storage_namespace=namespace)

    tested = snapshot_after_tests(obj, after)

    assert tested is not None
    hooks = tested.test_hooks or {}
    assert {name: hook.phase for name, hook in hooks.items()} == {
        "app-passes": "Succeeded",
        "app-fails": "Failed",
    }
    assert all(hook.last_started and hook.last_completed for hook in hooks.values())
    got = outcome(obj, tested, str(failed.value))
    assert (got.reason, got.count_remediation_failure, got.retry) == (TEST_FAILED, True, False)
    assert untested_state(obj, tested) == "failed"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(HelmTestOptions(timeout=60, exclude=("app-fails",)), id="exclude"),
        pytest.param(HelmTestOptions(timeout=60, filters=("app-passes",)), id="include"),
    ],
)
async def test_filters_choose_the_hooks_that_run(
    client: HelmClient,
    control_plane: ControlPlane,
    namespace: str,
    installed: str,
    tmp_path: Path,
    options: HelmTestOptions,
) -> None:
    result = await client.test(installed, storage_namespace=namespace, options=options)

    expected = {"app-passes": "Succeeded", "app-fails": ""}
    assert _phases(result.release) == expected
    assert _cli_phases(control_plane, tmp_path, namespace, installed) == expected
