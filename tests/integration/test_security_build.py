"""Issue 8's findings against the real processes: what a writer of a watched repository can
make the kustomize controller read, fetch or spend. Each test failed on the code before the
build worker: files outside the artifact were read through keys spelled another way, remote
bases were fetched despite ``--no-remote-bases``, alias bombs took workers and gigabytes."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from tests.gitserver import GitDaemon, GitHTTPServer, GitRepos
from tests.integration.harness import is_ready, wait_for_deletion
from tests.integration.kinds import EVENT, GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers, kustomize_controller, running_controllers

pytestmark = pytest.mark.integration

CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
SECRET = ResourceInfo(group="", version="v1", kind="Secret", plural="secrets")
MARKER = "weir-host-secret-never-read"
# Enough '..' to reach / from wherever the controller unpacks the artifact.
UP = "../" * 40
BUILD_MEMORY_LIMIT_MIB = 256
# The kustomize controller's peak resident memory while hostile builds run: it idles near
# 115 MiB and parses nothing a bomb could expand; the builds run in their own processes.
CONTROLLER_RSS_LIMIT_MIB = 220


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Controllers]:
    """The source controller and a kustomize controller run as a locked-down cluster runs it."""
    flags = ["--no-remote-bases", f"--build-memory-limit={BUILD_MEMORY_LIMIT_MIB}Mi"]
    async with running_controllers(
        control_plane, namespace, tmp_path, kustomize_flags=flags
    ) as both:
        yield both


async def serve(
    kube: KubeClient, namespace: str, git_repos: GitRepos, git_daemon: GitDaemon, files: Any
) -> None:
    repo = f"security-{namespace}"
    git_repos.create(repo)
    git_repos.commit(repo, files, "hostile manifests")
    await kube.create(
        GITREPO,
        git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"}),
    )


def configmap(name: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}}
    )


def ready_false(reason: str, saying: str = "") -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready: dict[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
        return (
            ready.get("status") == "False"
            and ready.get("reason") == reason
            and saying in ready.get("message", "")
        )

    return check


def ready_message(obj: dict[str, Any]) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return str(next(c for c in conditions if c["type"] == "Ready")["message"])


async def names(kube: KubeClient, info: ResourceInfo, namespace: str) -> set[str]:
    return {item["metadata"]["name"] for item in (await kube.list(info, namespace))["items"]}


async def event_messages(kube: KubeClient, namespace: str) -> str:
    return "\n".join(e.get("message", "") for e in (await kube.list(EVENT, namespace))["items"])


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


# Finding 1: files outside the artifact, and finding 2: remote bases under --no-remote-bases


def leaks(secret: Path) -> dict[str, str]:
    """kustomization.yaml texts that each try to read ``secret`` (or /etc/passwd) from the
    controller's host, spelled in ways kustomize accepts."""
    up = UP + str(secret).lstrip("/")
    return {
        "files": f"configMapGenerator:\n- name: leak\n  Files: [x={secret}]\n",
        "files-upper": f"configMapGenerator:\n- name: leak\n  FILES: [x={up}]\n",
        "envs": "secretGenerator:\n- name: leak\n  ENVS: [/etc/passwd]\n",
        "env": f"secretGenerator:\n- name: leak\n  Env: {up}\n",
        "resources": f"Resources: [{secret}]\n",
        "resources-dotdot": f"resources: [{up}]\n",
        "patches": f"resources: [cm.yaml]\nPatches:\n- Path: {secret}\n",
        "patches-json6902": "resources: [cm.yaml]\npatchesJson6902:\n- target: {kind: "
        f"ConfigMap, name: cm, version: v1}}\n  PATH: {up}\n",
        "components": f"Components: [{UP}etc]\n",
        "generators": f"generators: [{secret}]\n",
        "transformers": "resources: [cm.yaml]\ntransformers:\n- |\n  apiVersion: builtin\n"
        f"  kind: PatchTransformer\n  metadata: {{name: leak}}\n  Path: {secret}\n",
        "openapi": f"resources: [cm.yaml]\nopenapi: {{path: {up}}}\n",
    }


async def test_nothing_outside_the_artifact_is_read_and_nothing_remote_fetched(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    git_https: GitHTTPServer,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "host-secret.yaml"
    secret.write_text(f"{MARKER}: {MARKER}\n")
    # A real Git host and HTTP server: under --no-remote-bases it must never be asked for it.
    base = f"remote-base-{namespace}"
    git_repos.create(base)
    git_repos.commit(base, {"base/kustomization.yaml": "resources: [cm.yaml]\n"}, "b")
    remote = {
        "remote-file": f"Resources: [{git_https.http_url(base)}/cm.yaml]\n",
        "remote-git": f"RESOURCES: [{git_https.url(base)}//base]\n",
        "remote-git-component": f"components: ['{git_https.url(base)}//base']\n",
    }
    hostile = {**leaks(secret), **remote}
    files = {"good/cm.yaml": configmap("good")}
    for name, text in hostile.items():
        files[f"{name}/kustomization.yaml"] = text
        files[f"{name}/cm.yaml"] = configmap("cm")
    await serve(kube, namespace, git_repos, git_daemon, files)
    for name in [*hostile, "good"]:
        await kube.create(KS, tenant(name, namespace, f"./{name}"))

    await controllers.wait_for(kube, KS, namespace, "good", is_ready, "Ready")
    for name in leaks(secret):
        obj = await controllers.wait_for(
            kube, KS, namespace, name, ready_false("BuildFailed"), "refused"
        )
        assert "is outside the source artifact" in ready_message(obj), name
    for name in remote:
        obj = await controllers.wait_for(
            kube, KS, namespace, name, ready_false("BuildFailed"), "refused"
        )
        assert "remote bases are not allowed (--no-remote-bases)" in ready_message(obj), name

    assert [r for r in git_https.requests if base in r.path] == []
    everything_said = await event_messages(kube, namespace) + "".join(
        [ready_message(await kube.get(KS, namespace, name)) for name in hostile]
    )
    assert MARKER not in everything_said
    assert "root:x:0:0" not in everything_said
    assert await names(kube, CONFIG_MAP, namespace) <= {"good", "kube-root-ca.crt"}
    assert not {n for n in await names(kube, SECRET, namespace) if n.startswith("leak")}


# Findings 4 and 7: alias bombs in kustomization files and in manifests


def nested_aliases(levels: int, width: int = 9) -> list[str]:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return lines


def tenant(name: str, namespace: str, path: str, **spec: Any) -> dict[str, Any]:
    """A Kustomization applying ``path`` into the test's namespace."""
    return kustomization(name, namespace, path, targetNamespace=namespace, **spec)


def kustomization_bomb() -> str:
    """About 500 bytes; ten levels of nine aliases each expand to 9^10 nodes."""
    return "\n".join(["resources: [cm.yaml]", "x:", *("  " + line for line in nested_aliases(10))])


def manifest_bomb() -> str:
    """About 400 bytes of ConfigMap that kustomize itself expands without end."""
    data = ["data:", *("  " + line for line in nested_aliases(8))]
    return "\n".join(["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: bomb", *data])


async def test_alias_bombs_fail_within_their_timeout_while_others_reconcile(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    files = {"good/cm.yaml": configmap("good"), "late/cm.yaml": configmap("late")}
    # Four of each: as many as the controller has workers, which used to wedge them all.
    bombs = [f"kustomization-bomb-{i}" for i in range(4)] + [f"manifest-bomb-{i}" for i in range(4)]
    for name in bombs:
        if name.startswith("kustomization"):
            files[f"{name}/kustomization.yaml"] = kustomization_bomb()
            files[f"{name}/cm.yaml"] = configmap("cm")
        else:
            files[f"{name}/kustomization.yaml"] = "resources: [bomb.yaml]\n"
            files[f"{name}/bomb.yaml"] = manifest_bomb()
    await serve(kube, namespace, git_repos, git_daemon, files)
    for name in bombs:
        await kube.create(KS, tenant(name, namespace, f"./{name}", timeout="60s"))
    await kube.create(KS, tenant("good", namespace, "./good"))
    await controllers.wait_for(kube, KS, namespace, "good", is_ready, "Ready")

    started = asyncio.get_running_loop().time()
    for name in bombs:
        obj = await controllers.wait_for(
            kube, KS, namespace, name, ready_false("BuildFailed"), "failed", timeout=60
        )
        message = ready_message(obj)
        if name.startswith("kustomization"):
            assert f"'{name}/kustomization.yaml'" in message
            assert "alias" in message
        else:
            assert "kustomize build ran out of memory" in message
            assert f"more than {BUILD_MEMORY_LIMIT_MIB} MiB" in message
    # The bombs took no worker for good: a Kustomization created after them, and a deletion,
    # go through at once.
    await kube.create(KS, tenant("late", namespace, "./late"))
    await controllers.wait_for(kube, KS, namespace, "late", is_ready, "Ready", timeout=30)
    await kube.delete(KS, namespace, "good")
    await wait_for_deletion(kube, KS, namespace, "good", timeout=30)
    assert asyncio.get_running_loop().time() - started < 90

    assert controllers.kustomize.process is not None
    peak = peak_rss_mib(controllers.kustomize.process.pid)
    print(f"kustomize controller peak RSS: {peak:.0f} MiB")
    assert peak < CONTROLLER_RSS_LIMIT_MIB
    assert "bomb" not in await names(kube, CONFIG_MAP, namespace)


# Finding 8: Flux's reason for a path outside the artifact; stale build directories


async def test_a_path_outside_the_artifact_is_an_artifact_failure(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    await serve(kube, namespace, git_repos, git_daemon, {"app/cm.yaml": configmap("cm")})
    await kube.create(KS, tenant("outside", namespace, "../../../etc"))

    await controllers.wait_for(
        kube,
        KS,
        namespace,
        "outside",
        ready_false("ArtifactFailed", "path '../../../etc' leaves the source artifact"),
        "refused as Flux refuses it",
    )


async def test_build_directories_of_a_killed_controller_are_removed_at_start(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()  # its pid no longer runs
    scratch = Path(tempfile.gettempdir()) / f"weir-kustomize-controller-{dead.pid}"
    (scratch / "weir-ks-left" / "source").mkdir(parents=True)
    (scratch / "weir-build-worker-left").mkdir()
    process = kustomize_controller(control_plane, namespace, tmp_path / "kustomize")

    await process.start()
    try:
        assert not scratch.exists()
    finally:
        assert await process.stop() == 0
