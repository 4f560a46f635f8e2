"""``weir bootstrap git`` against the suite's own Git servers (sshd, HTTPS with basic auth),
the real control plane and the real controller processes: the repository ends with the
bundle and the sync manifests, the cluster follows it to Ready, a second run changes nothing."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from controllers.envtest import ControlPlane
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from tests.gitserver import GitHTTPServer, GitRepos, GitSSHServer
from tests.integration.cli import WEIR, Cli
from tests.integration.kinds import CLUSTER_ROLE, CLUSTER_ROLE_BINDING, GITREPO, KS
from tests.integration.processes import Controllers, running_controllers
from weir.bundle import INSTANCE_LABEL

pytestmark = pytest.mark.integration

CLUSTER_SCOPED = (CLUSTER_ROLE, CLUSTER_ROLE_BINDING)


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, kube: KubeClient
) -> AsyncIterator[Controllers]:
    async with running_controllers(control_plane, namespace, tmp_path) as both:
        yield both
    # The install's cluster-wide RBAC is named after the namespace; leave none behind.
    for info in CLUSTER_SCOPED:
        for obj in (await kube.list(info, label_selector=f"{INSTANCE_LABEL}={namespace}"))["items"]:
            await kube.delete(info, None, obj["metadata"]["name"])


def show(git_repos: GitRepos, repo: str, path: str, branch: str = "main") -> str:
    """A file's content on ``branch``."""
    shown = subprocess.run(
        ["git", "show", f"{branch}:{path}"],
        cwd=git_repos.path(repo),
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout


def tree(git_repos: GitRepos, repo: str, branch: str = "main") -> list[str]:
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", branch],
        cwd=git_repos.path(repo),
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


async def bootstrap_twice(
    cli: Cli, kube: KubeClient, namespace: str, git_repos: GitRepos, repo: str, *flags: str
) -> None:
    """Bootstrap, check repository and cluster, bootstrap again and check nothing changed."""
    first = await cli("bootstrap", "git", "--branch=main", "--path=clusters/test", *flags)
    assert first.code == 0, first.err
    assert "✔ committed and pushed" in first.err
    head = git_repos.resolve(repo, "refs/heads/main")
    assert tree(git_repos, repo) == [
        "clusters/test/flux-system/gotk-components.yaml",
        "clusters/test/flux-system/gotk-sync.yaml",
        "clusters/test/flux-system/kustomization.yaml",
    ]
    ks = await kube.get(KS, namespace, "flux-system")
    ready = {c["type"]: c["status"] for c in ks["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{head}"
    # What the Kustomization applied from Git is the bundle itself.
    inventory = {entry["id"] for entry in ks["status"]["inventory"]["entries"]}
    assert f"{namespace}_source-controller_apps_Deployment" in inventory
    assert f"{namespace}_flux-system_kustomize.toolkit.fluxcd.io_Kustomization" in inventory
    versions = {
        name: (await kube.get(info, namespace, "flux-system"))["metadata"]["resourceVersion"]
        for name, info in (("repository", GITREPO), ("secret", SECRET))
    }

    second = await cli("bootstrap", "git", "--branch=main", "--path=clusters/test", *flags)
    assert second.code == 0, second.err
    assert "nothing committed" in second.err
    assert git_repos.resolve(repo, "refs/heads/main") == head
    assert versions == {
        name: (await kube.get(info, namespace, "flux-system"))["metadata"]["resourceVersion"]
        for name, info in (("repository", GITREPO), ("secret", SECRET))
    }


async def test_bootstrap_over_ssh_with_a_given_key(
    control_plane: ControlPlane,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_ssh: GitSSHServer,
) -> None:
    repo = f"fleet-ssh-{namespace}"
    git_repos.create(repo)
    cli = Cli(control_plane.admin_kubeconfig, namespace)
    await bootstrap_twice(
        cli,
        kube,
        namespace,
        git_repos,
        repo,
        f"--url={git_ssh.url(repo)}",
        f"--private-key-file={git_ssh.key().private_path}",
        f"--ssh-known-hosts={git_ssh.known_hosts_file}",
    )
    sync = yaml.safe_load_all(show(git_repos, repo, "clusters/test/flux-system/gotk-sync.yaml"))
    repository = next(doc for doc in sync if doc["kind"] == "GitRepository")
    assert repository["spec"]["url"] == git_ssh.url(repo)
    assert repository["spec"]["secretRef"] == {"name": "flux-system"}


async def test_bootstrap_over_https_with_a_token(
    control_plane: ControlPlane,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_https: GitHTTPServer,
) -> None:
    repo = f"fleet-https-{namespace}"
    git_repos.create(repo)
    cli = Cli(control_plane.admin_kubeconfig, namespace)
    await bootstrap_twice(
        cli,
        kube,
        namespace,
        git_repos,
        repo,
        f"--url={git_https.url(repo)}",
        f"--username={git_https.username}",
        f"--password={git_https.password}",
        f"--ca-file={git_https.ca_file}",
    )


async def test_a_host_key_that_does_not_match_stops_before_anything_is_pushed(
    control_plane: ControlPlane,
    namespace: str,
    git_repos: GitRepos,
    git_ssh: GitSSHServer,
    tmp_path: Path,
) -> None:
    repo = f"fleet-spoofed-{namespace}"
    git_repos.create(repo)
    other = git_ssh.known_hosts.split()
    forged = tmp_path / "known_hosts"
    # The right host with another host's key (the RSA test key's public half).
    forged.write_text(f"{other[0]} {git_ssh.key('rsa').public}\n")
    cli = Cli(control_plane.admin_kubeconfig, namespace)
    refused = await cli(
        "bootstrap",
        "git",
        f"--url={git_ssh.url(repo)}",
        "--path=clusters/test",
        f"--private-key-file={git_ssh.key().private_path}",
        f"--ssh-known-hosts={forged}",
    )
    assert refused.code == 1
    assert refused.err.splitlines()[-1].startswith("✗ git clone failed: ")
    assert git_repos.resolve(repo, "refs/heads/main") is None


async def test_a_new_deploy_key_is_shown_asked_for_and_kept_for_the_next_run(
    control_plane: ControlPlane,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_ssh: GitSSHServer,
) -> None:
    repo = f"fleet-newkey-{namespace}"
    git_repos.create(repo)
    argv = [
        *WEIR,
        "bootstrap",
        "git",
        f"--url={git_ssh.url(repo)}",
        "--path=clusters/test",
        f"--ssh-known-hosts={git_ssh.known_hosts_file}",
        f"--kubeconfig={control_plane.admin_kubeconfig}",
        f"--namespace={namespace}",
    ]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stderr is not None
    async with asyncio.timeout(30):
        line = (await process.stderr.readline()).decode()
    assert line.startswith("► deploy key: ssh-ed25519 ")
    # What a user does at the prompt: add the key to the repository, then answer yes.
    git_ssh.authorize(line.removeprefix("► deploy key: "))
    process.stdin.write(b"y\n")
    await process.stdin.drain()
    _, rest = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, rest.decode()
    assert git_repos.resolve(repo, "refs/heads/main") is not None
    stored = await kube.get(SECRET, namespace, "flux-system")
    public = base64.b64decode(stored["data"]["identity.pub"]).decode().strip()
    assert public == line.removeprefix("► deploy key: ").strip()

    # The cluster's key is used again: no new key, no question, nothing committed.
    cli = Cli(control_plane.admin_kubeconfig, namespace)
    again = await cli(*argv[len(WEIR) : -2])
    assert again.code == 0, again.err
    assert "deploy key" not in again.err
    assert "nothing committed" in again.err
