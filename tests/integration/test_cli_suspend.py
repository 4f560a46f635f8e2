"""An audited break-glass with ``weir suspend --reason`` and ``weir resume``: the console script
against the real control plane, a real Git server and the real source and kustomize
controller processes.

The user recorded is the one the API server authenticates (a ``SelfSubjectReview``), not the
kubeconfig's name for it: the kubeconfig used here calls the admin's certificate something
else. While the Kustomization stays suspended, the controller reminds every few seconds and
exposes since when on /metrics; ``weir resume`` lists the hand changes it would revert and
refuses without ``--yes``; once the hotfix is committed, ``--with-source`` lists only what Git
does not have, and ``--yes`` resumes: the hotfix stays, the rest is reverted.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controllers.api import parse_time
from controllers.envtest import ADMIN_USER, ControlPlane, free_port
from controllers.kinds import CONFIG_MAP
from controllers.kube import KubeClient
from controllers.suspension import ANNOTATIONS, SUSPENDED_AT, SUSPENDED_BY, SUSPENDED_REASON
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.cli import Cli
from tests.integration.harness import is_ready
from tests.integration.kinds import EVENT, GITREPO, KS, git_repository, kustomization
from tests.integration.processes import running_controllers

pytestmark = pytest.mark.integration

REASON = "INC-1234: hotfix image"
HOTFIX = "nginx:1.27.1-hotfix"
DEADLINE_SECONDS = 30.0


def files(image: str = "nginx:1.27") -> dict[str, str]:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"image": image},
    }
    return {
        "deploy/kustomization.yaml": yaml.safe_dump({"resources": ["settings.yaml"]}),
        "deploy/settings.yaml": yaml.safe_dump(config),
    }


def renamed_kubeconfig(admin: Path, dest: Path) -> Path:
    """The admin kubeconfig with its user entry (and context) named otherwise."""
    config = yaml.safe_load(admin.read_text())
    for user in config["users"]:
        user["name"] = "not-the-real-name"
    for context in config["contexts"]:
        context["context"]["user"] = "not-the-real-name"
    dest.write_text(yaml.safe_dump(config))
    return dest


async def events_of(kube: KubeClient, namespace: str, reason: str) -> list[dict[str, Any]]:
    items = (await kube.list(EVENT, namespace))["items"]
    return [
        e for e in items if e["involvedObject"]["kind"] == "Kustomization" and e["reason"] == reason
    ]


async def until_event(kube: KubeClient, namespace: str, reason: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        found = await events_of(kube, namespace, reason)
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {reason} event after {DEADLINE_SECONDS:.0f}s")


async def test_suspend_with_a_reason_is_recorded_reminded_and_resumed_with_its_drift(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    kustomize_flags = [
        "--suspended-reminder-interval=2s",
        f"--metrics-addr=127.0.0.1:{metrics_port}",
    ]
    cli = Cli(control_plane.admin_kubeconfig, namespace)
    renamed = Cli(renamed_kubeconfig(control_plane.admin_kubeconfig, tmp_path / "kc"), namespace)
    repo = f"cli-suspend-{namespace}"
    git_repos.create(repo)
    revision = f"main@sha1:{git_repos.commit(repo, files(), 'settings')}"

    async with running_controllers(
        control_plane, namespace, tmp_path, kustomize_flags=kustomize_flags
    ) as controllers:
        await kube.create(
            GITREPO,
            git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"}),
        )
        await kube.create(
            KS, kustomization("app", namespace, "./deploy", targetNamespace=namespace)
        )

        def applied(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("lastAppliedRevision") == revision and is_ready(
                obj
            )

        await controllers.wait_for(kube, KS, namespace, "app", applied, "applied")

        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        suspended = await renamed("suspend", "ks", "app", "--reason", REASON)
        assert suspended.code == 0, suspended.err
        assert f"suspended by {ADMIN_USER}: {REASON}" in suspended.err
        obj = await kube.get(KS, namespace, "app")
        assert obj["spec"]["suspend"] is True
        annotations = obj["metadata"]["annotations"]
        assert (annotations[SUSPENDED_BY], annotations[SUSPENDED_REASON]) == (ADMIN_USER, REASON)
        at = parse_time(annotations[SUSPENDED_AT])
        assert at is not None
        assert before <= at <= datetime.datetime.now(datetime.UTC)
        (event,) = await events_of(kube, namespace, "Suspended")
        assert event["type"] == "Warning"
        assert event["message"] == f"reconciliation suspended by {ADMIN_USER}: {REASON}"

        listed = await cli("get", "ks")
        assert listed.code == 0, listed.err
        header, row = listed.out.splitlines()
        assert "SUSPENDED BY" in header
        assert f"{ADMIN_USER}, <1m ago: {REASON}" in row

        reminder = await until_event(kube, namespace, "StillSuspended")
        assert reminder["type"] == "Warning"
        assert reminder["message"].startswith("reconciliation suspended for ")
        assert reminder["message"].endswith(f" by {ADMIN_USER}: {REASON}")
        labels = f'kind="Kustomization",name="app",namespace="{namespace}"'
        async with httpx.AsyncClient(timeout=5) as http:
            exposed = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        series = f"weir_suspended_since_timestamp_seconds{{{labels}}} "
        (line,) = [line for line in exposed.splitlines() if line.startswith(series)]
        assert float(line.removeprefix(series)) == at.timestamp()

        # The hotfix, and a debugging knob, as kubectl edit makes them.
        await kube.patch(
            CONFIG_MAP,
            namespace,
            "settings",
            {"data": {"image": HOTFIX, "debug": "true"}},
            field_manager="kubectl-edit",
        )
        refused = await cli("resume", "ks", "app")
        assert refused.code == 1, refused.err
        assert refused.out.splitlines() == [
            f"► ConfigMap/{namespace}/settings drifted",
            f'  /data/image: "{HOTFIX}"',
            '  /data/debug: "true"',
        ]
        assert refused.err.splitlines()[-1] == (
            f"✗ Kustomization {namespace}/app: 1 object drifted while it was suspended, and "
            f"resuming reverts the drift: capture it (weir drift export ks app -n {namespace}) "
            "or resume with --yes"
        )
        still = await kube.get(KS, namespace, "app")
        assert still["spec"]["suspend"] is True
        assert still["metadata"]["annotations"][SUSPENDED_BY] == ADMIN_USER

        # The hotfix committed: listed against the new commit, only the knob is left.
        fixed = git_repos.commit(repo, files(image=HOTFIX), "hotfix: INC-1234")
        again = await cli("resume", "ks", "app", "--with-source")
        assert again.code == 1, again.err
        assert again.out.splitlines()[1:] == ['  /data/debug: "true"']

        resumed = await cli("resume", "ks", "app", "--yes")
        assert resumed.code == 0, resumed.err
        obj = await kube.get(KS, namespace, "app")
        assert obj["spec"]["suspend"] is False
        assert not set(ANNOTATIONS) & set(obj["metadata"].get("annotations") or {})
        (event,) = await events_of(kube, namespace, "Resumed")
        assert event["type"] == "Normal"
        assert event["message"].startswith(f"reconciliation resumed by {ADMIN_USER} after ")
        assert event["message"].endswith(f"(suspended by {ADMIN_USER}: {REASON})")
        assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{fixed}"
        settings = await kube.get(CONFIG_MAP, namespace, "settings")
        assert settings["data"] == {"image": HOTFIX}
        async with httpx.AsyncClient(timeout=5) as http:
            exposed = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert series not in exposed
