"""Two replicas with leader election: one reconciles; when it is killed, the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from controllers.envtest import ControlPlane, free_port
from controllers.kube import KubeClient
from tests.integration.harness import is_ready, wait_for_object
from tests.integration.kinds import GITREPO, LEASE, git_repository

LEASE_SECONDS = 4.0
RETRY_SECONDS = 0.5
LEASE_NAME = "probe-controller-leader-election"


@asynccontextmanager
async def replica(
    control_plane: ControlPlane, namespace: str, name: str, log_dir: Path, delay: float = 0.0
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A probe-controller process named ``name``; yields it and its metrics address."""
    metrics = f"127.0.0.1:{free_port()}"
    with (log_dir / f"{name}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.probe_main",
            f"--kubeconfig={control_plane.admin_kubeconfig}",
            "--enable-leader-election",
            f"--leader-election-namespace={namespace}",
            f"--leader-election-lease-duration={LEASE_SECONDS:g}s",
            "--leader-election-renew-deadline=3s",
            f"--leader-election-retry-period={RETRY_SECONDS * 1000:g}ms",
            f"--watch-label-selector=weir.test/run={namespace}",
            f"--health-addr=127.0.0.1:{free_port()}",
            f"--metrics-addr={metrics}",
            "--log-encoding=json",
            env={**os.environ, "POD_NAME": name, "PROBE_DELAY": str(delay)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        yield process, metrics
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _handled_by(obj: dict[str, object]) -> str:
    conditions = obj["status"]["conditions"]  # type: ignore[index]
    ready = next(c for c in conditions if c["type"] == "Ready")
    return str(ready["message"]).rsplit(" by ", 1)[1]


async def _serving(address: str, timeout: float = 30.0) -> None:
    """Wait until a replica's server answers: a process start has no event to wait on."""
    async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(f"http://{address}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def _metrics(address: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://{address}/metrics")).text


async def test_one_leader_reconciles_and_a_standby_takes_over(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    async with (
        replica(control_plane, namespace, "replica-a", tmp_path) as (proc_a, metrics_a),
        replica(control_plane, namespace, "replica-b", tmp_path) as (proc_b, metrics_b),
    ):
        replicas = {"replica-a": (proc_a, metrics_a), "replica-b": (proc_b, metrics_b)}
        await asyncio.gather(_serving(metrics_a), _serving(metrics_b))
        manifest = git_repository("app", namespace, labels={"weir.test/run": namespace})
        await kube.create(GITREPO, manifest)
        obj = await wait_for_object(kube, GITREPO, namespace, "app", is_ready)
        leader = _handled_by(obj)
        standby = next(name for name in replicas if name != leader)
        lease = await kube.get(LEASE, namespace, LEASE_NAME)
        assert lease["spec"]["holderIdentity"].startswith(f"{leader}_")
        series = f'name="app",namespace="{namespace}"'
        assert series in await _metrics(replicas[leader][1])
        assert series not in await _metrics(replicas[standby][1]), "the standby reconciled"

        killed_at = time.monotonic()
        replicas[leader][0].send_signal(signal.SIGKILL)
        await replicas[leader][0].wait()
        lease = await wait_for_object(
            kube,
            LEASE,
            namespace,
            LEASE_NAME,
            lambda o: str(o["spec"].get("holderIdentity", "")).startswith(f"{standby}_"),
            timeout=30,
        )
        took_over = time.monotonic() - killed_at
        assert took_over <= LEASE_SECONDS + 3 * RETRY_SECONDS, took_over
        assert lease["spec"]["leaseTransitions"] >= 1

        await kube.patch(GITREPO, namespace, "app", {"spec": {"interval": "3m"}})
        obj = await wait_for_object(
            kube, GITREPO, namespace, "app", lambda o: is_ready(o) and _handled_by(o) == standby
        )

        # SIGTERM: the new leader stops cleanly and hands the Lease back.
        replicas[standby][0].send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await replicas[standby][0].wait() == 0
        lease = await kube.get(LEASE, namespace, LEASE_NAME)
        assert not lease["spec"].get("holderIdentity")


async def test_sigterm_lets_the_reconcile_in_flight_finish(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    async with replica(control_plane, namespace, "slow", tmp_path, delay=3.0) as (process, _):
        await wait_for_object(
            kube, LEASE, namespace, LEASE_NAME, lambda o: bool(o["spec"].get("holderIdentity"))
        )
        manifest = git_repository("app", namespace, labels={"weir.test/run": namespace})
        await kube.create(GITREPO, manifest)
        # The finalizer is added just before the (3 s) probe step starts.
        await wait_for_object(
            kube, GITREPO, namespace, "app", lambda o: bool(o["metadata"].get("finalizers"))
        )
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    obj = await kube.get(GITREPO, namespace, "app")
    assert is_ready(obj), obj.get("status")
    assert _handled_by(obj) == "slow"
