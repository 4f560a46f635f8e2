"""The README's first command (``hack/run-local.sh``, i.e. ``hack/local.py``) as a user runs it:
with no arguments the example fleet, with ``--repo`` a repository laid out as teams lay out
their Flux repositories; every Kustomization ends Ready, Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Ctrl-C stops everything"
START_TIMEOUT_SECONDS = 240


def team_repository(work: Path) -> Path:
    """clusters/dev applies infrastructure/ then apps/ (dependsOn), as Flux's example does."""

    def ks(name: str, path: str, depends_on: list[str]) -> dict[str, object]:
        spec: dict[str, object] = {
            "interval": "10m",
            "path": path,
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        }
        if depends_on:
            spec["dependsOn"] = [{"name": n} for n in depends_on]
        return {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": "flux-system"},
            "spec": spec,
        }

    files = {
        "clusters/dev/infrastructure.yaml": yaml.safe_dump(ks("infra", "./infrastructure", [])),
        "clusters/dev/apps.yaml": yaml.safe_dump(ks("apps", "./apps/dev", ["infra"])),
        "infrastructure/namespace.yaml": yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
        ),
        "apps/base/kustomization.yaml": yaml.safe_dump({"resources": ["config.yaml"]}),
        "apps/base/config.yaml": yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "shop-settings", "namespace": "shop"},
                "data": {"currency": "EUR"},
            }
        ),
        "apps/dev/kustomization.yaml": yaml.safe_dump(
            {"resources": ["../base"], "commonLabels": {"env": "dev"}}
        ),
    }
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "fleet"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    return work


async def run_local(directory: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """Start hack/local.py, wait until it says it is up, read every Kustomization, Ctrl-C it;
    its output and the Kustomizations."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "hack" / "local.py"),
        f"--dir={directory}",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while STARTED not in output:
                line = await process.stdout.readline()
                assert line, f"hack/local.py ended early:\n{output}"
                output += line.decode()
        client = await KubeClient.connect(str(directory / "cluster" / "admin.kubeconfig"))
        try:
            items = (await client.list(Kustomization.info))["items"]
        finally:
            await client.close()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        output += rest.decode()
    assert process.returncode == 0, output
    return output, items


def ready(ks: dict[str, Any]) -> bool:
    conditions = (ks.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def commits(repo: Path) -> int:
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=repo, capture_output=True, text=True, check=True
    )
    return len(log.stdout.splitlines())


async def test_with_no_arguments_the_example_fleet_is_bootstrapped_and_ready(
    tmp_path: Path,
) -> None:
    output, items = await run_local(tmp_path / "weir")
    names = sorted(ks["metadata"]["name"] for ks in items)
    assert names == ["apps", "flux-system"]
    assert all(ready(ks) for ks in items), output
    assert "weir bootstrap git --url=git://127.0.0.1:" in output
    assert "kustomization/apps" in output
    assert "kubectl" not in output  # only tools the set-up installed
    assert "stopping" in output


async def test_a_teams_repository_with_dependencies_reaches_ready(tmp_path: Path) -> None:
    repo = team_repository(tmp_path / "fleet")
    output, items = await run_local(tmp_path / "weir", f"--repo={repo}", "--path=clusters/dev")
    assert sorted(ks["metadata"]["name"] for ks in items) == ["apps", "flux-system", "infra"]
    assert all(ready(ks) for ks in items), output
    # weir follows a copy: the team's repository itself is untouched.
    assert commits(repo) == 1
