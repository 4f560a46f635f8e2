"""Acceptance 4, end to end: commit statuses on Gitea set by the real controllers.

The source, kustomize and notification controllers run as processes; a Kustomization applies a
repository on Gitea, and an Alert sends its events to a ``gitea`` Provider. Each commit's
statuses are read back through Gitea's API: ``success`` on a commit that was applied,
``failure`` on one whose build failed, and nothing added to a commit once it is no longer the
one being applied. This covers the kustomize controller's events (``commit_status: update`` on
success, the attempted revision on failure), the event server, Alert matching, dispatch and the
gitea provider together.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from notification.api_v1beta3 import Alert, Provider
from tests.gitea import GiteaServer
from tests.integration.harness import is_ready
from tests.integration.kinds import GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers, running_controllers

pytestmark = pytest.mark.integration

ALERT = Alert.info
PROVIDER = Provider.info
STATUS_WAIT_SECONDS = 30.0
# A status as the test compares it: (state, context, description).
Status = tuple[str, str, str]


# Git, as a user runs it


def git(cwd: Path, *args: str) -> str:
    # The caller's ~/.gitconfig and /etc/gitconfig must not change what is committed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Weir Test",
        "GIT_AUTHOR_EMAIL": "test@weir.invalid",
        "GIT_COMMITTER_NAME": "Weir Test",
        "GIT_COMMITTER_EMAIL": "test@weir.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def push(workdir: Path, remote: str, files: dict[str, str], message: str) -> str:
    """Write ``files`` (paths relative to the work tree), commit everything and push ``main``
    to ``remote``; the commit's SHA."""
    if not (workdir / ".git").exists():
        workdir.mkdir(parents=True)
        git(workdir, "init", "--quiet", "--initial-branch=main")
    for path, content in files.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(content)
    git(workdir, "add", "--all")
    git(workdir, "commit", "--quiet", "-m", message)
    git(workdir, "push", "--quiet", remote, "main")
    return git(workdir, "rev-parse", "HEAD")


def config_map(greeting: str) -> str:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "greeting"},
        "data": {"greeting": greeting},
    }
    return yaml.safe_dump(obj)


def kustomization_file(*resources: str) -> str:
    return yaml.safe_dump({"resources": list(resources)})


# Objects


def provider(name: str, namespace: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": PROVIDER.api_version,
        "kind": PROVIDER.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "gitea", "address": address, "secretRef": {"name": "gitea-token"}},
    }


def alert(name: str, namespace: str, provider_name: str) -> dict[str, Any]:
    return {
        "apiVersion": ALERT.api_version,
        "kind": ALERT.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "providerRef": {"name": provider_name},
            "eventSeverity": "info",
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
        },
    }


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastAppliedRevision") == revision and is_ready(obj)

    return check


def failed_at(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        conditions = status.get("conditions") or []
        ready = [c.get("status") for c in conditions if c.get("type") == "Ready"]
        return status.get("lastAttemptedRevision") == revision and ready == ["False"]

    return check


# Gitea, read back


class Statuses:
    """A repository's commit statuses as Gitea's API lists them, oldest first."""

    def __init__(self, gitea: GiteaServer, repo: str, logs: Callable[[], str]) -> None:
        self.gitea = gitea
        self.repo = repo
        self.logs = logs

    async def of(self, sha: str) -> list[Status]:
        found = await asyncio.to_thread(self.gitea.commit_statuses, self.repo, sha)
        ordered = sorted(found, key=lambda s: s["id"])
        return [(s["status"], s["context"], s["description"]) for s in ordered]

    async def wait(self, sha: str, state: str, context: str) -> list[Status]:
        """The commit's statuses once the newest with ``context`` is ``state``; polled, since
        Gitea has no way to wait for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STATUS_WAIT_SECONDS
        while True:
            statuses = await self.of(sha)
            newest = [s for s in statuses if s[1] == context][-1:]
            if newest and newest[0][0] == state:
                return statuses
            if loop.time() > deadline:
                raise AssertionError(
                    f"no {state} status {context!r} on {sha} after {STATUS_WAIT_SECONDS:.0f}s; "
                    f"statuses: {json.dumps(statuses)}\n{self.logs()}"
                )
            await asyncio.sleep(0.2)


async def trigger(kube: KubeClient, namespace: str, token: str) -> None:
    """Ask the GitRepository to fetch now, as ``weir reconcile source git`` does."""
    patch = {"metadata": {"annotations": {REQUESTED_AT: token}}}
    await kube.patch(GITREPO, namespace, "app", patch)


async def wait_ks(
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    return await controllers.wait_for(kube, KS, namespace, "app", predicate, what)


async def test_gitea_commit_statuses_follow_the_kustomization_through_the_controllers(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    gitea: GiteaServer,
    tmp_path: Path,
) -> None:
    repo = f"status-e2e-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    remote = gitea.clone_url(repo)
    await asyncio.to_thread(gitea.create_repository, repo)
    first = await asyncio.to_thread(
        push, work, remote, {"app/configmap.yaml": config_map("one")}, "one ConfigMap"
    )
    await asyncio.to_thread(gitea.wait_for_push, repo, first)

    # Before the controllers start: their very first events are matched against these.
    await kube.create(
        SECRET,
        {
            "metadata": {"name": "gitea-token", "namespace": namespace},
            "stringData": {"token": gitea.token},
        },
    )
    await kube.create(PROVIDER, provider("gitea", namespace, f"{gitea.url}/{gitea.owner}/{repo}"))
    await kube.create(ALERT, alert("statuses", namespace, "gitea"))
    uid = (await kube.get(PROVIDER, namespace, "gitea"))["metadata"]["uid"]
    context = f"kustomization/app/{uid.split('-')[0]}"
    success: Status = ("success", context, "reconciliation succeeded")

    async with running_controllers(
        control_plane, namespace, tmp_path, notification=True
    ) as controllers:
        statuses = Statuses(gitea, repo, controllers.logs)
        # Anonymous HTTP clone: the repository is public, no credentials in the URL.
        url = f"{gitea.url}/{gitea.owner}/{repo}.git"
        await kube.create(
            GITREPO,
            git_repository("app", namespace, url=url, interval="1h", ref={"branch": "main"}),
        )
        await kube.create(
            KS, kustomization("app", namespace, "./app", interval="1h", targetNamespace=namespace)
        )

        # 1. Applied: success on the first commit.
        await wait_ks(controllers, kube, namespace, applied(f"main@sha1:{first}"), "applied")
        first_statuses = await statuses.wait(first, "success", context)

        # 2. A build that fails: failure on the second commit, the first one left alone.
        broken = {"app/kustomization.yaml": kustomization_file("configmap.yaml", "missing.yaml")}
        second = await asyncio.to_thread(push, work, remote, broken, "name a missing file")
        await asyncio.to_thread(gitea.wait_for_push, repo, second)
        await trigger(kube, namespace, "second")
        await wait_ks(controllers, kube, namespace, failed_at(f"main@sha1:{second}"), "failed")
        second_statuses = await statuses.wait(second, "failure", context)
        first_after_failure = await statuses.of(first)

        # 3. Fixed: success on the third commit.
        fixed = {
            "app/kustomization.yaml": kustomization_file("configmap.yaml"),
            "app/configmap.yaml": config_map("three"),
        }
        third = await asyncio.to_thread(push, work, remote, fixed, "fix the build")
        await asyncio.to_thread(gitea.wait_for_push, repo, third)
        await trigger(kube, namespace, "third")
        ks = await wait_ks(controllers, kube, namespace, applied(f"main@sha1:{third}"), "fixed")
        third_statuses = await statuses.wait(third, "success", context)
        final = {sha: await statuses.of(sha) for sha in (first, second)}
        applied_config = await kube.get(CONFIG_MAP, namespace, "greeting")

    assert first_statuses == [success]
    assert second_statuses == [("failure", context, "build failed")]
    assert first_after_failure == first_statuses
    assert third_statuses == [success]
    # Nothing was added to an older commit once a newer one was being applied.
    assert final == {first: first_statuses, second: second_statuses}
    assert applied_config["data"] == {"greeting": "three"}
    assert ks["spec"]["interval"] == "1h"
