"""Idle memory of each controller: VmRSS 5 s after its /readyz first answers ok.

Runs the source, kustomize and notification controllers of this checkout, one after the
other, against a local control plane with weir's CRDs and no objects, with their default
flags (every namespace, no leader election). The goal is at most 60 MiB each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from controllers.envtest import ControlPlane, free_port

ROOT = Path(__file__).resolve().parents[1]
SETTLE_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 60.0
GOAL_MIB = 60.0


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def idle_rss(plane: ControlPlane, package: str, workdir: Path) -> float:
    health = free_port()
    argv = [
        sys.executable,
        "-m",
        package,
        f"--kubeconfig={plane.admin_kubeconfig}",
        f"--health-addr=127.0.0.1:{health}",
        f"--metrics-addr=127.0.0.1:{free_port()}",
        "--log-encoding=json",
    ]
    if package == "source":
        port = free_port()
        argv += [
            f"--storage-path={workdir / 'storage'}",
            f"--storage-addr=127.0.0.1:{port}",
            f"--storage-adv-addr=127.0.0.1:{port}",
        ]
    if package == "notification":
        argv += [
            f"--events-addr=127.0.0.1:{free_port()}",
            f"--receiver-addr=127.0.0.1:{free_port()}",
        ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = workdir / f"{package}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{package} did not become ready:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        time.sleep(SETTLE_SECONDS)  # what is measured is the process at rest
        return vm_rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="weir-idle-memory-"))
    plane = ControlPlane(workdir / "cluster")
    try:
        plane.start()
        for package in ("source", "kustomize", "notification"):
            (workdir / package).mkdir()
            rss = idle_rss(plane, package, workdir / package)
            verdict = "ok" if rss <= GOAL_MIB else f"over the {GOAL_MIB:.0f} MiB goal"
            print(f"{package}-controller idle VmRSS {rss:.1f} MiB ({verdict})", flush=True)
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
