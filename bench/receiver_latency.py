"""Push to applied: how long from ``git push`` returning to the Kustomization being Ready at the
pushed commit, when the Git host's webhook reaches a Receiver. Prints p50, p95 and max over
``--pushes`` pushes (20 by default); the goal is p50 at most 2 s on a 2-core machine.

Everything is real and on loopback: a local control plane with weir's CRDs, Gitea (built from
its pinned module like the tests' binaries) holding the repository, and weir's source,
kustomize and notification controllers as processes. Gitea's own webhook (type ``gitea``,
signed with the Receiver's token) posts to a ``github`` Receiver whose resource is the
GitRepository. The GitRepository and the Kustomization have a 1h interval, so nothing but the
webhook can make a push show up within the run. Each push changes one ConfigMap value; the
clock stops when the Kustomization's ``lastAppliedRevision`` is the pushed commit and it is
Ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controllers.envtest import ControlPlane  # noqa: E402
from controllers.kinds import NAMESPACE, SECRET  # noqa: E402
from controllers.kube import KubeClient  # noqa: E402
from kustomize.api_v1 import Kustomization  # noqa: E402
from notification.api_v1 import Receiver  # noqa: E402
from source.api_v1 import GitRepository  # noqa: E402
from tests.gitea import GiteaServer  # noqa: E402
from tests.integration.harness import wait_for_object  # noqa: E402
from tests.integration.processes import running_controllers  # noqa: E402

GOAL_P50_SECONDS = 2.0
NAMESPACE_NAME = "bench-receiver"
REPOSITORY = "fleet"
APPLY_TIMEOUT_SECONDS = 60.0


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@weir.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@weir.invalid",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()


def write_app(work: Path, value: int) -> None:
    (work / "app").mkdir(exist_ok=True)
    (work / "app" / "configmap.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pushed\ndata:\n  value: '{value}'\n"
    )


def commit_and_push(work: Path, push_url: str, value: int) -> str:
    write_app(work, value)
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", f"value {value}")
    git(work, "push", "--quiet", push_url, "main")
    return git(work, "rev-parse", "HEAD")


def applied(sha: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        ready = [c for c in status.get("conditions") or () if c["type"] == "Ready"]
        return bool(
            str(status.get("lastAppliedRevision", "")).endswith(sha)
            and ready
            and ready[0]["status"] == "True"
        )

    return check


async def setup(kube: KubeClient, gitea: GiteaServer, token: str, work: Path) -> str:
    """The repository, its first commit, and the objects; returns the first commit."""
    await kube.create(NAMESPACE, {"metadata": {"name": NAMESPACE_NAME}})
    gitea.create_repository(REPOSITORY)
    git(work, "init", "--quiet", "--initial-branch=main")
    first = commit_and_push(work, gitea.clone_url(REPOSITORY), 0)
    gitea.wait_for_push(REPOSITORY, first)
    await kube.create(
        SECRET,
        {
            "metadata": {"name": "webhook-token", "namespace": NAMESPACE_NAME},
            "stringData": {"token": token},
        },
    )
    objects: list[tuple[Any, dict[str, Any]]] = [
        (
            GitRepository.info,
            {
                "apiVersion": GitRepository.info.api_version,
                "kind": "GitRepository",
                "metadata": {"name": REPOSITORY, "namespace": NAMESPACE_NAME},
                "spec": {
                    "url": f"{gitea.url}/{gitea.owner}/{REPOSITORY}.git",
                    "interval": "1h",
                    "ref": {"branch": "main"},
                },
            },
        ),
        (
            Kustomization.info,
            {
                "apiVersion": Kustomization.info.api_version,
                "kind": "Kustomization",
                "metadata": {"name": "app", "namespace": NAMESPACE_NAME},
                "spec": {
                    "interval": "1h",
                    "path": "./app",
                    "prune": True,
                    "targetNamespace": NAMESPACE_NAME,
                    "sourceRef": {"kind": "GitRepository", "name": REPOSITORY},
                },
            },
        ),
        (
            Receiver.info,
            {
                "apiVersion": Receiver.info.api_version,
                "kind": "Receiver",
                "metadata": {"name": "gitea", "namespace": NAMESPACE_NAME},
                "spec": {
                    "type": "github",
                    "events": ["push"],
                    "secretRef": {"name": "webhook-token"},
                    "resources": [{"kind": "GitRepository", "name": REPOSITORY}],
                },
            },
        ),
    ]
    for info, body in objects:
        await kube.create(info, body)
    return first


async def run(pushes: int, workdir: Path) -> list[float]:
    plane = ControlPlane(workdir / "cluster")
    gitea = GiteaServer()
    plane.start()
    try:
        gitea.start()
        kube = await KubeClient.connect(str(plane.admin_kubeconfig))
        try:
            token = secrets.token_hex(16)
            work = workdir / "work"
            work.mkdir()
            first = await setup(kube, gitea, token, work)
            # The controllers' log tails are printed when they stop: not part of the figures.
            with contextlib.redirect_stdout(io.StringIO()):
                return await measure(kube, gitea, token, work, first, plane, workdir, pushes)
        finally:
            await kube.close()
    finally:
        gitea.stop()
        plane.stop()


async def measure(
    kube: KubeClient,
    gitea: GiteaServer,
    token: str,
    work: Path,
    first: str,
    plane: ControlPlane,
    workdir: Path,
    pushes: int,
) -> list[float]:
    """Start the controllers, wire the webhook, then time ``pushes`` pushes."""
    async with running_controllers(
        plane, NAMESPACE_NAME, workdir / "controllers", notification=True
    ) as running:
        assert running.notification is not None
        await wait_for_object(kube, Kustomization.info, NAMESPACE_NAME, "app", applied(first), 120)
        receiver = await wait_for_object(
            kube,
            Receiver.info,
            NAMESPACE_NAME,
            "gitea",
            lambda obj: bool((obj.get("status") or {}).get("webhookPath")),
            60,
        )
        hook = running.notification.receiver_url + receiver["status"]["webhookPath"]
        gitea.add_webhook(REPOSITORY, hook, token)
        seconds = []
        for value in range(1, pushes + 1):
            sha = commit_and_push(work, gitea.clone_url(REPOSITORY), value)
            pushed = time.monotonic()
            await wait_for_object(
                kube, Kustomization.info, NAMESPACE_NAME, "app", applied(sha), APPLY_TIMEOUT_SECONDS
            )
            seconds.append(time.monotonic() - pushed)
        return seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=20, help="pushes to time (default 20)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="weir-bench-receiver-"))
    try:
        seconds = asyncio.run(run(args.pushes, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    p50 = statistics.median(seconds)
    verdict = "ok" if p50 <= GOAL_P50_SECONDS else f"over the {GOAL_P50_SECONDS:.0f} s goal"
    print(
        f"push to applied over {len(seconds)} pushes: p50 {p50:.2f} s ({verdict}), "
        f"p95 {percentile(seconds, 0.95):.2f} s, max {max(seconds):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
