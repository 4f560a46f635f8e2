"""Issue 8, YAML aliases from Git.

Finding 3, against the real ``python -m source`` and ``python -m kustomize`` processes and a
real Git server: a substitution value of about 300 bytes whose aliases expand to 387 million
nodes, used as ``x: ${BOMB}``, took the kustomize controller past 3.3 GB within seconds (the
substituted text was read back with PyYAML and round-tripped through JSON, which expands every
alias). Now the Kustomization fails its build with a message naming the limit, its neighbour is
applied as usual, and the controller's memory stays near its normal figure.

Finding 4, the part the SOPS pass plays: it reads kustomization files too, and one whose lists
are ten levels of aliases is refused before anything walks it.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.kube import KubeClient
from kustomize.decrypt import DecryptionError, DecryptionKeys, decrypt_tree
from tests.fuzz.bombs import SUBSTITUTION_BOMB, kustomization_bomb
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.harness import is_ready
from tests.integration.kinds import GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers

pytestmark = pytest.mark.integration

CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
MIB = 1024 * 1024
# The kustomize controller's peak RSS (VmHWM) after applying one small Kustomization is about
# 118 MiB on the CI machine (measured with and without the bomb: 118.2 and 118.7 MiB).
PEAK_RSS_BOUND = 160 * MIB
# A cap on the controller's address space, so that a regression fails this test instead of
# exhausting the machine: far above the bound, far below what the bomb would take.
ADDRESS_SPACE_HEADROOM = 2048 * MIB
BUILD_TIMEOUT_SECONDS = 30


def proc_status(pid: int) -> dict[str, int]:
    """The memory fields of /proc/<pid>/status, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def cap_address_space(pid: int) -> None:
    size = proc_status(pid)["VmSize"] + ADDRESS_SPACE_HEADROOM
    resource.prlimit(pid, resource.RLIMIT_AS, (size, size))


def config_map(name: str, data: dict[str, str]) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


def tenant(name: str, namespace: str, path: str, **spec: Any) -> dict[str, Any]:
    """A Kustomization applying ``path`` into the test's namespace, with a short timeout."""
    spec = {"targetNamespace": namespace, "timeout": f"{BUILD_TIMEOUT_SECONDS}s", **spec}
    return kustomization(name, namespace, path, **spec)


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def test_an_alias_bomb_in_a_substitution_value_fails_the_build_not_the_controller(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    assert 300 <= len(SUBSTITUTION_BOMB) <= 330
    assert controllers.kustomize.process is not None
    pid = controllers.kustomize.process.pid
    cap_address_space(pid)
    repo = f"bomb-{namespace}"
    git_repos.create(repo)
    commit = git_repos.commit(
        repo,
        {
            # Written as the attacker would: ${BOMB} is a plain scalar the bomb replaces.
            "bomb/configmap.yaml": config_map("bomb", {"x": "placeholder"}).replace(
                "x: placeholder", "x: ${BOMB}"
            ),
            "app/configmap.yaml": config_map("app", {"greeting": "${GREETING}"}),
        },
        "an alias bomb beside a normal app",
    )
    revision = f"main@sha1:{commit}"
    await kube.create(
        GITREPO,
        git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"}),
    )
    await kube.create(
        KS,
        tenant("bomb", namespace, "./bomb", postBuild={"substitute": {"BOMB": SUBSTITUTION_BOMB}}),
    )
    await kube.create(
        KS,
        tenant("app", namespace, "./app", postBuild={"substitute": {"GREETING": "hi"}}),
    )

    failed = await controllers.wait_for(
        kube,
        KS,
        namespace,
        "bomb",
        lambda o: (
            (o.get("status") or {}).get("lastAttemptedRevision") == revision
            and ready(o).get("status") == "False"
        ),
        "failed to build",
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    applied = await controllers.wait_for(
        kube,
        KS,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastAppliedRevision") == revision and is_ready(o),
        "applied",
    )

    peak = proc_status(pid)["VmHWM"]
    print(f"kustomize controller peak RSS: {peak / MIB:.1f} MiB")
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / MIB:.0f} MiB"
    condition = ready(failed)
    assert condition["reason"] == "BuildFailed"
    assert condition["message"] == (
        f"ConfigMap/{namespace}/bomb: after substitution, YAML aliases expanding past the "
        "limit of 100000 nodes (line 3 of the object)"
    )
    assert ready(applied)["message"] == f"Applied revision: {revision}"
    assert (await kube.get(CONFIG_MAP, namespace, "app"))["data"] == {"greeting": "hi"}
    assert await kube.get_or_none(CONFIG_MAP, namespace, "bomb") is None


async def test_an_alias_bomb_in_a_kustomization_file_is_refused_by_the_sops_pass(
    tmp_path: Path,
) -> None:
    bomb = kustomization_bomb(10, 4)  # 394 bytes listing 2 * 4 ** 9 = 524,288 files, thrice
    assert len(bomb) < 520
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "kustomization.yaml").write_text(bomb)

    with pytest.raises(DecryptionError) as caught:
        await asyncio.wait_for(decrypt_tree(tmp_path, DecryptionKeys(), "app"), timeout=10)

    assert str(caught.value) == (
        "cannot parse 'app/kustomization.yaml': YAML aliases expanding past the limit of "
        "100000 nodes (line 11)"
    )
