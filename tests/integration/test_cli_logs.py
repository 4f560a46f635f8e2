"""``weir logs`` reads the controllers' pods' logs through the API server (pods/log, which
the local cluster's kwok serves as a kubelet would) and shows them readable and filtered.

What the pods "print" is what the real controller processes of the test printed: their log
lines, recorded in the CRI format a container runtime writes (``ControlPlane.write_pod_log``)."""

from __future__ import annotations

import json

import pytest
import yaml

from controllers.envtest import ControlPlane
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.cli import Cli
from tests.integration.processes import Controllers

pytestmark = pytest.mark.integration


async def test_logs_show_the_controllers_lines_about_one_object(
    cli: Cli,
    control_plane: ControlPlane,
    controllers: Controllers,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    repo = f"logs-{namespace}"
    git_repos.create(repo)
    git_repos.commit(repo, {"deploy/a.yaml": yaml.safe_dump({"kind": "x"})}, "one")
    created = await cli(
        "create", "source", "git", "app", f"--url={git_daemon.url(repo)}", "--branch=main"
    )
    assert created.code == 0, created.err
    failing = await cli(
        "create", "source", "git", "gone", f"--url={git_daemon.url('none')}", "--branch=main"
    )
    assert failing.code == 1
    # The controllers' pods (kwok's) in the test's namespace, printing the processes' lines.
    installed = await cli("install", "--components=source-controller")
    assert installed.code == 0, installed.err
    printed = controllers.source.log_path.read_text().splitlines()
    control_plane.write_pod_log(printed)
    entries = [json.loads(line) for line in printed if line.startswith("{")]
    about_app = [e for e in entries if (e.get("kind"), e.get("name")) == ("GitRepository", "app")]
    assert about_app, printed

    shown = await cli(
        "logs", f"--controllers-namespace={namespace}", "--kind=GitRepository", "--name=app"
    )
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert len(lines) == len(about_app)
    assert all(f" GitRepository/{namespace}/app source-controller: " in line for line in lines)
    assert any(about_app[-1]["event"] in line for line in lines)

    errors = await cli("logs", f"--controllers-namespace={namespace}", "--level=error")
    assert errors.code == 0, errors.err
    assert errors.out
    assert all(" error " in line for line in errors.out.splitlines())
    assert f"GitRepository/{namespace}/gone" in errors.out


async def test_no_controllers_is_said_in_one_line(cli: Cli, namespace: str) -> None:
    shown = await cli("logs", f"--controllers-namespace={namespace}")
    assert shown.code == 4
    assert shown.err.strip() == f"✗ no weir controller pods in the {namespace} namespace"
