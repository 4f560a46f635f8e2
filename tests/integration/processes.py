"""weir controllers as child processes, run as a cluster runs them, scoped to one namespace.

Each process gets the admin kubeconfig, ``--watch-all-namespaces=false`` with
``RUNTIME_NAMESPACE`` (so it sees only the test's namespace), free ports for its probes and
metrics, JSON logs in a file, and a working directory of its own. It dies with
the test process (``die_with_parent``) and is stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controllers.api import ResourceInfo
from controllers.envtest import ControlPlane, die_with_parent, free_port
from controllers.kube import KubeClient
from tests.integration.harness import wait_for_object

__all__ = [
    "ControllerProcess",
    "Controllers",
    "NotificationProcess",
    "helm_controller",
    "kustomize_controller",
    "notification_controller",
    "running_controllers",
    "source_controller",
]

# The children run the code of this checkout, whatever their working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
LOG_TAIL_LINES = 40


@dataclass
class ControllerProcess:
    """``python -m <package>`` with ``args``, run from ``workdir``, its log beside it."""

    package: str
    args: list[str]
    workdir: Path
    namespace: str
    health_port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def name(self) -> str:
        return f"{self.package}-controller"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.package,
            f"--health-addr=127.0.0.1:{self.health_port}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            *self.args,
        ]

    async def start(self) -> None:
        """Start the process and return once its ``/readyz`` answers ok."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # TMPDIR stays the system's: gpg-agent's socket path under it must stay short.
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RUNTIME_NAMESPACE": self.namespace}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self.process is not None
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_SECONDS
        async with httpx.AsyncClient(timeout=2) as http:
            while loop.time() < deadline:
                if self.process.returncode is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(
            f"{self.name} not ready after {READY_TIMEOUT_SECONDS}s:\n{self.log_tail()}"
        )

    async def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL and -9 if it outlives the grace period)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"--- {self.name}: no log"
        return f"--- {self.name} log (last {lines} lines)\n" + "\n".join(text.splitlines()[-lines:])


def source_controller(
    control_plane: ControlPlane, namespace: str, workdir: Path, *extra: str
) -> ControllerProcess:
    """The source controller with its storage and artifact server under ``workdir``."""
    port = free_port()
    return ControllerProcess(
        "source",
        [
            *_common(control_plane),
            f"--storage-path={workdir / 'storage'}",
            f"--storage-addr=127.0.0.1:{port}",
            f"--storage-adv-addr=127.0.0.1:{port}",
            *extra,
        ],
        workdir,
        namespace,
    )


def kustomize_controller(
    control_plane: ControlPlane, namespace: str, workdir: Path, *extra: str
) -> ControllerProcess:
    """The kustomize controller: nothing of the source controller's is on its command line."""
    return ControllerProcess("kustomize", [*_common(control_plane), *extra], workdir, namespace)


def helm_controller(
    control_plane: ControlPlane, namespace: str, workdir: Path, *extra: str
) -> ControllerProcess:
    """The helm controller (``python -m helm``, which makes itself ``helm-controller``)."""
    return ControllerProcess("helm", [*_common(control_plane), *extra], workdir, namespace)


@dataclass
class NotificationProcess(ControllerProcess):
    """The notification controller, with its event and receiver servers on free ports."""

    events_port: int = field(default_factory=free_port)
    receiver_port: int = field(default_factory=free_port)

    @property
    def argv(self) -> list[str]:
        return [
            *super().argv,
            f"--events-addr=127.0.0.1:{self.events_port}",
            f"--receiver-addr=127.0.0.1:{self.receiver_port}",
        ]

    @property
    def events_url(self) -> str:
        """Where the other controllers post events (their ``--events-addr``)."""
        return f"http://127.0.0.1:{self.events_port}/"

    @property
    def receiver_url(self) -> str:
        """The receiver server's root; a Receiver's hook is this + its ``webhookPath``."""
        return f"http://127.0.0.1:{self.receiver_port}"


def notification_controller(
    control_plane: ControlPlane, namespace: str, workdir: Path, *extra: str
) -> NotificationProcess:
    """The notification controller; pass its ``events_url`` to the others' --events-addr."""
    return NotificationProcess(
        "notification", [*_common(control_plane), *extra], workdir, namespace
    )


def _common(control_plane: ControlPlane) -> list[str]:
    return [
        f"--kubeconfig={control_plane.admin_kubeconfig}",
        "--watch-all-namespaces=false",
        "--log-encoding=json",
        "--graceful-shutdown-timeout=10s",
    ]


@dataclass
class Controllers:
    """The processes of one test, and waits whose failures show what they were doing."""

    source: ControllerProcess
    kustomize: ControllerProcess
    notification: NotificationProcess | None = None

    @property
    def processes(self) -> Sequence[ControllerProcess]:
        extra = (self.notification,) if self.notification is not None else ()
        return (self.source, self.kustomize, *extra)

    def logs(self) -> str:
        return "\n".join(process.log_tail() for process in self.processes)

    async def wait_for(
        self,
        kube: KubeClient,
        info: ResourceInfo,
        namespace: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """The object once ``predicate`` holds; else a failure naming ``what`` was awaited,
        with the object's last status and the tail of every controller's log."""
        try:
            return await wait_for_object(kube, info, namespace, name, predicate, timeout)
        except TimeoutError:
            last = await kube.get_or_none(info, namespace, name)
            status = json.dumps((last or {}).get("status"), indent=1) if last else "(absent)"
            raise AssertionError(
                f"{info.kind}/{namespace}/{name}: not {what} after {timeout:.0f}s\n"
                f"last status: {status}\n{self.logs()}"
            ) from None


@contextlib.asynccontextmanager
async def running_controllers(
    control_plane: ControlPlane,
    namespace: str,
    workdir: Path,
    *,
    source_flags: Sequence[str] = (),
    kustomize_flags: Sequence[str] = (),
    notification: bool = False,
    notification_flags: Sequence[str] = (),
) -> AsyncIterator[Controllers]:
    """Both controllers (with ``notification``, the notification controller too, which the
    others then send their events to) as processes watching only ``namespace``; each must
    exit 0 on SIGTERM. Their logs are printed at the end, which pytest shows when the test
    failed."""
    events: list[str] = []
    notifier = None
    if notification:
        notifier = notification_controller(
            control_plane, namespace, workdir / "notification", *notification_flags
        )
        events = [f"--events-addr={notifier.events_url}"]
    both = Controllers(
        source_controller(control_plane, namespace, workdir / "source", *events, *source_flags),
        kustomize_controller(
            control_plane, namespace, workdir / "kustomize", *events, *kustomize_flags
        ),
        notifier,
    )
    try:
        await asyncio.gather(*(process.start() for process in both.processes))
        yield both
    finally:
        codes = {p.name: await p.stop() for p in both.processes if p.process is not None}
        print(both.logs())
    assert codes == {p.name: 0 for p in both.processes}
