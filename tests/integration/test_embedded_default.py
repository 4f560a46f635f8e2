"""The README's first command (``hack/run-local.sh``, i.e. ``hack/local.py``) as a user runs it:
with no arguments the example fleet, with ``--repo`` a repository laid out as teams lay out
their Flux repositories; every Kustomization ends Ready, Ctrl-C stops everything. The
notification controller runs too: a Receiver made with the commands it prints is triggered at
the receiver address it prints, and the source is fetched at the webhook's request. The example's
HelmRelease (a chart kept in the fleet repository, its values in a watched ConfigMap) is
installed, and a pushed change of its values upgrades it, as the Go-built ``helm history`` the
output suggests shows."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from helm.api_v2 import HelmRelease
from kustomize.api_v1 import Kustomization
from source.api_v1 import GitRepository
from tests.helmcli import helm_env
from tests.integration.cli import run_weir
from tests.integration.harness import is_ready, wait_for_object
from tests.integration.kinds import DEPLOYMENT

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Ctrl-C stops everything"
START_TIMEOUT_SECONDS = 240
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


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
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "fleet"]):
        subprocess.run(["git", *args], cwd=work, env=GIT_ENV, check=True)
    return work


WhileUp = Callable[[Path, KubeClient, str], Awaitable[None]]


async def run_local(
    directory: Path, *args: str, while_up: WhileUp | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Start hack/local.py, wait until it says it is up, read every Kustomization (and run
    ``while_up`` with the kubeconfig, a client and the output so far), Ctrl-C it; its output
    and the Kustomizations."""
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
        kubeconfig = directory / "cluster" / "admin.kubeconfig"
        client = await KubeClient.connect(str(kubeconfig))
        try:
            items = (await client.list(Kustomization.info))["items"]
            if while_up is not None:
                await while_up(kubeconfig, client, output)
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


async def trigger_the_printed_receiver(kubeconfig: Path, client: KubeClient, output: str) -> None:
    """The commands the output suggests, as a user types them: a Receiver of the fleet's
    GitRepository, triggered at the printed address."""
    found = re.search(r"webhook receiver at (http://127\.0\.0\.1:\d+)", output)
    assert found, output
    cluster = (f"--kubeconfig={kubeconfig}", "--namespace=flux-system")
    steps = [
        ("create", "secret", "receiver", "webhook-token"),
        (
            "create",
            "receiver",
            "fleet",
            "--type=generic",
            "--secret-ref=webhook-token",
            "--resource=GitRepository/flux-system",
        ),
        # Until the receiver server has seen the new Receiver it answers 404.
        ("trigger", "receiver", "fleet", f"--url={found[1]}", "--retry-delay=500ms"),
    ]
    for step in steps:
        done = await run_weir(*step, *cluster)
        assert done.code == 0, f"weir {' '.join(step)}: {done.err}"
    await wait_for_object(
        client,
        GitRepository.info,
        "flux-system",
        "flux-system",
        lambda o: (
            bool((o["metadata"].get("annotations") or {}).get(REQUESTED_AT))
            and o["status"].get("lastHandledReconcileAt")
            == o["metadata"]["annotations"][REQUESTED_AT]
        ),
        timeout=60,
    )


def greeting(deployment: dict[str, Any]) -> str:
    """The message the hello chart's Deployment shows (its ``message`` value)."""
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    value: str = next(e["value"] for e in env if e["name"] == "PODINFO_UI_MESSAGE")
    return value


def helm_history(kubeconfig: Path, output: str) -> list[tuple[int, str, str]]:
    """The printed ``helm history`` command, as a user runs it: (revision, status,
    description) of each of the release's revisions."""
    found = re.search(r"^  (\S+/helm) (history hello -n staging)", output, re.MULTILINE)
    assert found, output
    home = kubeconfig.parent.parent / "helm-home"  # Helm's own directories: not the user's
    env = {**helm_env(home), "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(
        [found[1], *found[2].split(), "-o=json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [(e["revision"], e["status"], e["description"]) for e in json.loads(done.stdout)]


def push_new_greeting(directory: Path) -> None:
    """Clone the fleet repository that ``hack/local.py --dir=directory`` serves, change the
    hello release's message in its values ConfigMap, commit and push."""
    clone = directory / "clone"
    bare = directory / "git" / "fleet.git"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    values = clone / "apps" / "base" / "hello-values.yaml"
    values.write_text(values.read_text().replace("through Helm", "upgraded by a push"))
    for args in (["commit", "-qam", "hello: a new message"], ["push", "-q"]):
        subprocess.run(["git", *args], cwd=clone, env=GIT_ENV, check=True)


async def the_helm_release_follows_a_push(
    kubeconfig: Path, client: KubeClient, output: str
) -> None:
    """The example's HelmRelease is Ready with its Deployment; a pushed change of its values
    (the ConfigMap ``hello-values``) upgrades the release, through the whole loop."""
    # The image automation's commit is a new chart version (reconcileStrategy Revision): wait
    # until the release has caught up with the HelmChart's artifact and is deployed.
    chart_info = ResourceInfo(
        group="source.toolkit.fluxcd.io", version="v1", kind="HelmChart", plural="helmcharts"
    )

    async def settled(obj: dict[str, Any]) -> bool:
        chart = await client.get(chart_info, "flux-system", "staging-hello")
        artifact = (chart.get("status") or {}).get("artifact") or {}
        status = obj.get("status") or {}
        latest = (status.get("history") or [{}])[0]
        return (
            is_ready(obj)
            and latest.get("status") == "deployed"
            and status.get("lastAttemptedRevision") == artifact.get("revision")
        )

    deadline = asyncio.get_running_loop().time() + 120
    release = await client.get(HelmRelease.info, "staging", "hello")
    while not await settled(release):
        assert asyncio.get_running_loop().time() < deadline, release.get("status")
        await asyncio.sleep(0.5)
        release = await client.get(HelmRelease.info, "staging", "hello")
    deployment = await client.get(DEPLOYMENT, "staging", "hello")
    assert greeting(deployment) == "hello from weir, through Helm"
    # Installed, then upgraded once per commit of the repository (the chart's reconcileStrategy
    # is Revision), the image automation's included.
    before = await asyncio.to_thread(helm_history, kubeconfig, output)
    assert before[0][2] == "Install complete", before
    assert before[-1][1] == "deployed", before

    await asyncio.to_thread(push_new_greeting, kubeconfig.parent.parent)
    cluster = (f"--kubeconfig={kubeconfig}", "--namespace=flux-system")
    done = await run_weir("reconcile", "kustomization", "apps", "--with-source", *cluster)
    assert done.code == 0, done.err

    await wait_for_object(
        client,
        DEPLOYMENT,
        "staging",
        "hello",
        lambda d: greeting(d) == "hello from weir, upgraded by a push",
        timeout=60,
    )

    # Helm applies the objects, then waits for them: the release is deployed after that.
    def upgraded(obj: dict[str, Any]) -> bool:
        latest = ((obj.get("status") or {}).get("history") or [{}])[0]
        return bool(latest.get("version", 0) > len(before) and latest.get("status") == "deployed")

    await wait_for_object(client, HelmRelease.info, "staging", "hello", upgraded, timeout=60)
    history = await asyncio.to_thread(helm_history, kubeconfig, output)
    assert history[0] == (1, "superseded", "Install complete")
    assert len(history) > len(before)
    assert history[-1][1:] == ("deployed", "Upgrade complete")


def bot_commits(bare: Path) -> list[str]:
    log = subprocess.run(
        ["git", f"--git-dir={bare}", "log", "--author=weir-bot", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    )
    return log.stdout.splitlines()


async def the_image_automation_commits_the_newer_build(
    kubeconfig: Path, client: KubeClient, output: str
) -> None:
    """The example's registry holds podinfo 6.7.1 and 6.7.2: the image automation commits
    6.7.2 to the staging overlay, and the staging Deployment runs it once applied."""
    found = re.search(r"image registry at (127\.0\.0\.1:\d+)", output)
    assert found, output
    image = f"{found[1]}/weir-example/podinfo"
    bare = kubeconfig.parent.parent / "git" / "fleet.git"
    deadline = asyncio.get_running_loop().time() + 120
    while not (commits := await asyncio.to_thread(bot_commits, bare)):
        assert asyncio.get_running_loop().time() < deadline, "no commit of the image automation"
        await asyncio.sleep(1)
    assert commits == ["staging: 6.7.1 -> 6.7.2"]  # newName already names the registry

    cluster = (f"--kubeconfig={kubeconfig}", "--namespace=flux-system")
    done = await run_weir("reconcile", "kustomization", "apps", "--with-source", *cluster)
    assert done.code == 0, done.err

    def runs_the_newer_build(deployment: dict[str, Any]) -> bool:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        return bool(containers[0]["image"] == f"{image}:6.7.2")

    await wait_for_object(client, DEPLOYMENT, "staging", "podinfo", runs_the_newer_build, 60)


async def the_printed_next_steps(kubeconfig: Path, client: KubeClient, output: str) -> None:
    await trigger_the_printed_receiver(kubeconfig, client, output)
    # Before the push below: the automation pushes to the same branch.
    await the_image_automation_commits_the_newer_build(kubeconfig, client, output)
    await the_helm_release_follows_a_push(kubeconfig, client, output)


async def test_with_no_arguments_the_example_fleet_is_bootstrapped_and_ready(
    tmp_path: Path,
) -> None:
    output, items = await run_local(tmp_path / "weir", while_up=the_printed_next_steps)
    names = sorted(ks["metadata"]["name"] for ks in items)
    assert names == ["apps", "flux-system"]
    assert all(ready(ks) for ks in items), output
    assert "weir bootstrap git --url=git://127.0.0.1:" in output
    assert "kustomization/apps" in output
    assert "helmrelease/hello" in output
    assert "weir trigger receiver fleet --url=http://127.0.0.1:" in output
    assert "kubectl" not in output  # only tools the set-up installed
    assert "stopping" in output


async def test_a_teams_repository_with_dependencies_reaches_ready(tmp_path: Path) -> None:
    repo = team_repository(tmp_path / "fleet")
    output, items = await run_local(tmp_path / "weir", f"--repo={repo}", "--path=clusters/dev")
    assert sorted(ks["metadata"]["name"] for ks in items) == ["apps", "flux-system", "infra"]
    assert all(ready(ks) for ks in items), output
    # weir follows a copy: the team's repository itself is untouched.
    assert commits(repo) == 1
