"""The ``weir`` command as a user runs it: the installed console script, against the real
control plane, a real Git server and the real controller processes. Tables and YAML are
compared with golden files under ``tests/integration/golden/cli/`` (``WEIR_UPDATE_GOLDEN=1``
rewrites them)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from tests.gitserver import GitDaemon, GitHTTPServer, GitRepos, GitSSHServer
from tests.integration.cli import WEIR, Cli, golden
from tests.integration.kinds import KS
from tests.integration.processes import Controllers

pytestmark = pytest.mark.integration


def app_repository(git_repos: GitRepos, name: str, namespace: str) -> str:
    git_repos.create(name)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"replicas": "2"},
    }
    return git_repos.commit(name, {"deploy/settings.yaml": yaml.safe_dump(configmap)}, "app")


async def test_create_get_export_and_the_lifecycle_commands(
    cli: Cli,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    repo = f"cli-{namespace}"
    commit = app_repository(git_repos, repo, namespace)
    url = git_daemon.url(repo)

    created = await cli("create", "source", "git", "app", f"--url={url}", "--branch=main")
    assert created.code == 0, created.err
    assert f"GitRepository {namespace}/app is ready at revision main@sha1:{commit}" in created.err
    created = await cli(
        "create", "ks", "app", "--source=GitRepository/app", "--path=./deploy", "--prune"
    )
    assert created.code == 0, created.err
    settings = await kube.get(CONFIG_MAP, namespace, "settings")
    assert settings["data"] == {"replicas": "2"}

    listed = await cli("get", "kustomizations")
    assert listed.code == 0, listed.err
    golden("get-kustomizations.txt", cli.normalized(listed.out))
    everything = await cli("get", "all")
    golden("get-all.txt", cli.normalized(everything.out))
    as_yaml = await cli("get", "sources", "git", "app", "-o", "yaml")
    assert yaml.safe_load(as_yaml.out)["status"]["artifact"]["revision"] == f"main@sha1:{commit}"
    exported = await cli("export", "kustomization", "--all")
    golden("export-kustomizations.yaml", cli.normalized(exported.out))

    counted_json = json.loads((await cli("stats", "-o", "json")).out)
    assert {
        "kind": "Kustomization",
        "running": 1,
        "failing": 0,
        "suspended": 0,
        "artifactBytes": None,
    } in counted_json
    counted = await cli("stats")
    assert counted.code == 0, counted.err
    # The artifact's size depends on how the namespace's name compresses.
    golden("stats.txt", re.sub(r"\d+(\.\d)? (B|KiB)", "SIZE", cli.normalized(counted.out)))

    # get --watch prints a row when something changes: here, the suspension.
    watching = await asyncio.create_subprocess_exec(
        *WEIR,
        "get",
        "ks",
        "--watch",
        f"--kubeconfig={cli.kubeconfig}",
        f"--namespace={namespace}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert watching.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert (await watching.stdout.readline()).split()[0] == b"NAME"  # the table
            await watching.stdout.readline()
            suspended = await cli("suspend", "ks", "app")
            assert suspended.code == 0, suspended.err
            row = (await watching.stdout.readline()).decode().split()
    finally:
        watching.terminate()
        await watching.wait()
    assert row[0] == "app"
    assert row[2] == "True"  # SUSPENDED
    assert (await kube.get(KS, namespace, "app"))["spec"]["suspend"] is True
    refused = await cli("reconcile", "ks", "app")
    assert refused.code == 1
    assert (
        refused.err.strip()
        == f"✗ Kustomization {namespace}/app is suspended: resume it first (weir resume)"
    )
    resumed = await cli("resume", "ks", "app")
    assert resumed.code == 0, resumed.err
    assert (await kube.get(KS, namespace, "app"))["spec"]["suspend"] is False

    reconciled = await cli("reconcile", "kustomization", "app", "--with-source")
    assert reconciled.code == 0, reconciled.err
    assert f"GitRepository {namespace}/app is ready" in reconciled.err
    assert (
        f"Kustomization {namespace}/app is ready at revision main@sha1:{commit}" in reconciled.err
    )

    events = await cli("events", "--for", "Kustomization/app")
    assert events.code == 0, events.err
    assert "ReconciliationSucceeded" in events.out
    assert "ConfigMap/settings" not in events.out  # only the Kustomization's
    as_json = await cli("events", "--for", "Kustomization/app", "-o", "json")
    listed_events = json.loads(as_json.out)
    items = listed_events.get("items", [listed_events])
    assert {e["reason"] for e in items} >= {"ReconciliationSucceeded"}


async def test_a_failing_reconcile_exits_1_with_the_controllers_message(
    cli: Cli,
    controllers: Controllers,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    repo = f"cli-fail-{namespace}"
    app_repository(git_repos, repo, namespace)
    assert (
        await cli(
            "create", "source", "git", "app", f"--url={git_daemon.url(repo)}", "--branch=main"
        )
    ).code == 0
    created = await cli("create", "ks", "broken", "--source=app", "--path=./missing", "--prune")
    why = "kustomization path not found: './missing' is not a directory in the source artifact"
    assert created.code == 1
    assert created.err.splitlines()[-1] == f"✗ Kustomization {namespace}/broken: {why}"
    again = await cli("reconcile", "ks", "broken")
    assert again.code == 1
    assert again.err.splitlines()[-1] == f"✗ Kustomization {namespace}/broken: {why}"


async def test_errors_are_one_line_with_a_documented_exit_code(
    cli: Cli, namespace: str, tmp_path: Path
) -> None:
    missing = await cli("get", "ks", "nothing-here")
    assert missing.code == 4
    assert missing.err.strip().startswith("✗ ")
    assert len(missing.err.strip().splitlines()) == 1
    empty = await cli("get", "sources", "bucket")
    assert empty.code == 4
    assert empty.err.strip() == f"✗ no Bucket objects found in {namespace} namespace"
    bad_source = await cli("create", "ks", "x", "--source=Helm/x", "--export")
    assert bad_source.code == 2
    bad_interval = await cli(
        "create", "source", "git", "x", "--url=https://h/x", "--interval=soon", "--export"
    )
    assert bad_interval.code == 2
    assert "interval" in bad_interval.err
    config = tmp_path / "nowhere.kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: none\n")
    unusable = Cli(config, namespace)
    result = await unusable("get", "ks")
    assert result.code == 3
    assert (
        result.err.strip() == '✗ cannot use the kubeconfig: kubeconfig has no context named "none"'
    )


async def test_git_secrets_made_by_the_cli_let_a_gitrepository_fetch(
    cli: Cli,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_ssh: GitSSHServer,
    git_https: GitHTTPServer,
) -> None:
    repo = f"cli-auth-{namespace}"
    commit = app_repository(git_repos, repo, namespace)
    ssh_url = git_ssh.url(repo)
    # The host's keys come from the host itself (ssh-keyscan), as flux does.
    made = await cli(
        "create",
        "secret",
        "git",
        "ssh-auth",
        f"--url={ssh_url}",
        f"--private-key-file={git_ssh.key().private_path}",
    )
    assert made.code == 0, made.err
    stored = await kube.get(SECRET, namespace, "ssh-auth")
    assert set(stored["data"]) == {"identity", "identity.pub", "known_hosts"}
    assert (
        git_ssh.known_hosts.split()[-1] in base64.b64decode(stored["data"]["known_hosts"]).decode()
    )
    over_ssh = await cli(
        "create",
        "source",
        "git",
        "over-ssh",
        f"--url={ssh_url}",
        "--branch=main",
        "--secret-ref=ssh-auth",
    )
    assert over_ssh.code == 0, over_ssh.err
    assert f"revision main@sha1:{commit}" in over_ssh.err

    made = await cli(
        "create",
        "secret",
        "git",
        "https-auth",
        f"--url={git_https.url(repo)}",
        f"--username={git_https.username}",
        f"--password={git_https.password}",
        f"--ca-file={git_https.ca_file}",
    )
    assert made.code == 0, made.err
    over_https = await cli(
        "create",
        "source",
        "git",
        "over-https",
        f"--url={git_https.url(repo)}",
        "--branch=main",
        "--secret-ref=https-auth",
    )
    assert over_https.code == 0, over_https.err

    # A new key: its public half is shown once, as the deploy key to add to the Git host.
    generated = await cli("create", "secret", "git", "new-key", f"--url={ssh_url}", "--export")
    assert generated.code == 0, generated.err
    manifest = yaml.safe_load(generated.out)
    public = manifest["stringData"]["identity.pub"].strip()
    assert public.startswith("ssh-ed25519 ")
    assert f"► deploy key: {public}" in generated.err
