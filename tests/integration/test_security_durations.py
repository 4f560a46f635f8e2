"""Issue 8, findings 5 and 6: durations an attacker with commit rights can set.

``python -m source`` and ``python -m kustomize`` run as processes against the real control
plane and a real git daemon. ``interval: 0s`` must mean "no periodic run" (not a loop without
pause), and a duration the CRD pattern admits but Go rejects must stall its object with a
message that says why, while the other objects in the namespace carry on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controllers.api import ResourceInfo
from controllers.envtest import ControlPlane, free_port
from controllers.kube import KubeClient
from controllers.reconcile import INVALID_SPEC, REQUESTED_AT
from source.api_v1 import Bucket, OCIRepository
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.harness import is_ready
from tests.integration.kinds import GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers, running_controllers

pytestmark = pytest.mark.integration

OCIREPO = OCIRepository.info
BUCKET = Bucket.info
CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
# How long a zero interval must stay quiet. The old code ran 163 reconciles in 20s, so a
# loop shows up within a fraction of this.
QUIET_SECONDS = 3.0
METRICS_TIMEOUT_SECONDS = 10.0
FOUR_HUNDRED_ONES = "1" * 400 + "s"
LIMIT = "durations are at most 2562047h47m16.854775807s"


@dataclass
class Running:
    """Both controllers as processes, with the metrics port of each."""

    controllers: Controllers
    metrics_ports: dict[str, int]

    async def reconciles(self, package: str, kind: str, namespace: str, name: str) -> int:
        """How many reconciles of the object the controller has counted
        (``gotk_reconcile_duration_seconds_count``)."""
        url = f"http://127.0.0.1:{self.metrics_ports[package]}/metrics"
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(url)).text
        labels = {"kind": kind, "namespace": namespace, "name": name}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "gotk_reconcile_duration_seconds_count" and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return int(sample.value)
        return 0

    async def wait_for_reconciles(
        self, package: str, info: ResourceInfo, namespace: str, name: str, at_least: int
    ) -> int:
        """The count once it reaches ``at_least``: it is recorded just after the status write
        a test waits for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + METRICS_TIMEOUT_SECONDS
        while (count := await self.reconciles(package, info.kind, namespace, name)) < at_least:
            if loop.time() > deadline:
                raise AssertionError(
                    f"{info.kind}/{name}: {count} reconciles, expected {at_least}\n"
                    f"{self.controllers.logs()}"
                )
            await asyncio.sleep(0.05)
        return count


@pytest.fixture
async def running(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Running]:
    """Both controllers watching only ``namespace``; each must exit 0 on SIGTERM."""
    ports = {"source": free_port(), "kustomize": free_port()}
    async with running_controllers(
        control_plane,
        namespace,
        tmp_path,
        source_flags=[f"--metrics-addr=127.0.0.1:{ports['source']}"],
        kustomize_flags=[f"--metrics-addr=127.0.0.1:{ports['kustomize']}"],
    ) as both:
        yield Running(both, ports)


def app(name: str, namespace: str, path: str = "./app", **spec: Any) -> dict[str, Any]:
    """A Kustomization of the GitRepository ``app``'s ``path``, into the test's namespace."""
    return kustomization(name, namespace, path, targetNamespace=namespace, **spec)


def git_files(name: str) -> dict[str, str | bytes]:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    return {"app/config.yaml": yaml.safe_dump(config_map)}


async def app_source(
    kube: KubeClient, namespace: str, git_repos: GitRepos, git_daemon: GitDaemon, **spec: Any
) -> str:
    """A repository with one ConfigMap, and the GitRepository ``app`` following it; its URL."""
    repo = f"durations-{namespace}"
    git_repos.create(repo)
    git_repos.commit(repo, git_files("greeting"), "manifests")
    url = git_daemon.url(repo)
    await kube.create(
        GITREPO, git_repository("app", namespace, url=url, ref={"branch": "main"}, **spec)
    )
    return url


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def handled(token: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastHandledReconcileAt") == token and is_ready(obj)

    return check


def not_ready(obj: dict[str, Any]) -> bool:
    return condition(obj, "Ready").get("status") == "False"


def stalled(obj: dict[str, Any]) -> bool:
    return condition(obj, "Stalled").get("status") == "True"


# Finding 5: interval: 0s


async def test_a_zero_interval_runs_once_and_then_only_when_requested(
    kube: KubeClient,
    namespace: str,
    running: Running,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    controllers = running.controllers
    await app_source(kube, namespace, git_repos, git_daemon, interval="0s")
    await controllers.wait_for(kube, GITREPO, namespace, "app", is_ready, "Ready")
    # Created once their source is Ready, so that no wait for its artifact is pending. The
    # failing ones must retry with the backoff: with no retryInterval it is the interval, 0s.
    started = asyncio.get_running_loop().time()
    failing: dict[str, dict[str, Any]] = {
        "no-source": {"sourceRef": {"kind": "GitRepository", "name": "absent"}},
        "broken": {"path": "./missing"},
    }
    await kube.create(KS, app("app", namespace, interval="0s"))
    for name, spec in failing.items():
        await kube.create(KS, app(name, namespace, interval="0s", **spec))
    await controllers.wait_for(kube, KS, namespace, "app", is_ready, "Ready")
    for name in failing:
        await controllers.wait_for(kube, KS, namespace, name, not_ready, "failing")
    watched = (("source", GITREPO), ("kustomize", KS))
    for package, info in watched:
        await running.wait_for_reconciles(package, info, namespace, "app", at_least=1)

    # The one wait of this test: nothing may happen for a while.
    await asyncio.sleep(QUIET_SECONDS)
    counts = {
        info.kind: await running.reconciles(package, info.kind, namespace, "app")
        for package, info in watched
    }
    assert counts == {"GitRepository": 1, "Kustomization": 1}, controllers.logs()
    most = most_runs_with_backoff(asyncio.get_running_loop().time() - started)
    for name in failing:
        count = await running.reconciles("kustomize", KS.kind, namespace, name)
        assert count <= most, f"{name}: {count} runs, backoff allows {most}"

    # A requested reconcile still runs, once.
    for package, info in watched:
        token = f"requested-{info.kind}"
        patch = {"metadata": {"annotations": {REQUESTED_AT: token}}}
        await kube.patch(info, namespace, "app", patch)
        await controllers.wait_for(kube, info, namespace, "app", handled(token), "handled")
        await running.wait_for_reconciles(package, info, namespace, "app", at_least=2)
    assert (await kube.get(CONFIG_MAP, namespace, "greeting"))["metadata"]["name"] == "greeting"


def most_runs_with_backoff(elapsed: float) -> int:
    """The most runs a failing object gets in ``elapsed`` seconds under the default per-key
    backoff (750 ms doubling): the first, one per delay that fits, and one for slack."""
    runs, waited, delay = 1, 0.0, 0.75
    while waited + delay <= elapsed:
        runs, waited, delay = runs + 1, waited + delay, delay * 2
    return runs + 1


# Finding 6: durations past Go's limit


def oci_repository(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": OCIREPO.api_version,
        "kind": OCIREPO.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": "oci://127.0.0.1:1/never/pulled", **spec},
    }


def bucket(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": BUCKET.api_version,
        "kind": BUCKET.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"bucketName": "never-fetched", "endpoint": "127.0.0.1:1", **spec},
    }


async def test_durations_go_rejects_stall_their_object_with_a_clear_message(
    kube: KubeClient,
    namespace: str,
    running: Running,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    controllers = running.controllers
    url = await app_source(kube, namespace, git_repos, git_daemon)
    overflowing = {
        (GITREPO, "source"): git_repository(
            "overflow",
            namespace,
            url=url,
            ref={"branch": "main"},
            interval="1000000000h",
            timeout=FOUR_HUNDRED_ONES,
        ),
        (OCIREPO, "source"): oci_repository(
            "overflow", namespace, interval=FOUR_HUNDRED_ONES, timeout="153722867281m"
        ),
        (BUCKET, "source"): bucket(
            "overflow", namespace, interval="1000000000h", timeout=FOUR_HUNDRED_ONES
        ),
        (KS, "kustomize"): app(
            "overflow",
            namespace,
            interval=FOUR_HUNDRED_ONES,
            retryInterval="2562048h",
            timeout="1000000000h",
        ),
    }
    for (info, _), manifest in overflowing.items():
        await kube.create(info, manifest)
    await kube.create(KS, app("app", namespace))

    # The healthy objects beside them are not held up.
    await controllers.wait_for(kube, GITREPO, namespace, "app", is_ready, "Ready")
    await controllers.wait_for(kube, KS, namespace, "app", is_ready, "Ready")

    for (info, package), manifest in overflowing.items():
        obj = await controllers.wait_for(kube, info, namespace, "overflow", stalled, "Stalled")
        ready, stall = condition(obj, "Ready"), condition(obj, "Stalled")
        assert (ready["status"], ready["reason"]) == ("False", INVALID_SPEC)
        assert (stall["reason"], stall["message"]) == (INVALID_SPEC, ready["message"])
        message = ready["message"]
        for field, value in manifest["spec"].items():
            if value in (FOUR_HUNDRED_ONES, "1000000000h", "2562048h", "153722867281m"):
                assert f"spec.{field}: time: invalid duration " in message, message
        assert f'"{"1" * 40}\u2026{"1" * 15}s" (401 characters)' in message
        assert LIMIT in message
        assert len(message) < 1000
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        # Stalled: run once, not retried in a loop. A Kustomization runs once more if its
        # source's first artifact comes after it (a new artifact requeues every user).
        count = await running.wait_for_reconciles(package, info, namespace, "overflow", 1)
        most = 2 if info == KS else 1
        assert count <= most, f"{info.kind}: {count} reconciles\n{controllers.logs()}"

    for process in controllers.processes:
        log = process.log_path.read_text()
        assert "Traceback" not in log, process.log_tail()
        assert "OverflowError" not in log, process.log_tail()

    # Fixing the spec is a change: the object reconciles again, and becomes Ready.
    fix = {"spec": {"interval": "10m", "timeout": "60s"}}
    await kube.patch(GITREPO, namespace, "overflow", fix)
    await controllers.wait_for(kube, GITREPO, namespace, "overflow", is_ready, "Ready once fixed")
