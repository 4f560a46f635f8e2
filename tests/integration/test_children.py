"""Issue 9: a reconcile cut off while its child runs leaves no process behind.

Each test starts the real child a path uses (the git worker, ``gpg``, ``sops``, a kustomize
build worker and the ``git`` it runs) and holds it mid-run with something real that never
answers: a TCP server that accepts and stays silent, or a FIFO nobody writes to. The test knows
the child is running when it connects or opens the FIFO, notes the child and every process
below it, cancels the call (or sends the controller SIGTERM) and then requires each of them to
have exited: the direct child at once (it was reaped before the call ended), the others as
soon as their SIGKILL lands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import select
import time
from collections.abc import AsyncIterator, Awaitable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self

import pytest

from controllers.envtest import ControlPlane, ensure_binaries
from controllers.gnupg import gnupg_home
from controllers.kube import KubeClient
from kustomize.api_v1 import KustomizationSpec
from kustomize.build import build
from kustomize.buildworker import WORKER_BINARY, BuildWorkers, find_build_worker
from kustomize.decrypt import DecryptionKeys, decrypt_objects
from source import git
from tests.integration.kinds import GITREPO, git_repository
from tests.integration.processes import source_controller
from tests.sops import new_age_identity, sops_encrypt

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT_SECONDS = 60.0
# How long a SIGKILLed grandchild may take to be gone; the direct child must be gone at once.
EXIT_TIMEOUT_SECONDS = 10.0


# What never answers


@dataclass
class SilentServer:
    """A TCP server on the loopback that accepts connections and never says a word."""

    connected: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _connections: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for writer in self._connections:
            writer.close()
        await self._server.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.append(writer)
        self.connected.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_connected(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            await self.connected.wait()


@contextlib.asynccontextmanager
async def opened_by_reader(fifo: Path) -> AsyncIterator[BinaryIO]:
    """The write end of ``fifo``, once a reader opened it; closed on exit."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            writer = await asyncio.to_thread(fifo.open, "wb")
    except TimeoutError:
        # Let the thread's open() return, then fail.
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        raise
    with writer:
        yield writer


# Processes, from /proc


def _stat(pid: int) -> tuple[str, int, int]:
    """State, parent and process group of ``pid``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    state, ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
    return state, int(ppid), int(pgrp)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _processes() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                found[int(entry.name)] = _stat(int(entry.name))
    return found


@dataclass
class Tree:
    """A child and every process below it, each held by a pidfd (so that a reused process id
    is never taken for one of them), and the child's process group."""

    root: int
    group: int
    pids: dict[int, str]
    pidfds: dict[int, int]

    @classmethod
    def of_child(cls, parent: int, command: str, *, besides: Collection[int] = ()) -> Tree:
        """The one child of ``parent`` whose command line holds ``command`` (other than those
        in ``besides``), and its tree."""
        processes = _processes()
        [root] = [
            pid
            for pid, (state, ppid, _) in processes.items()
            if ppid == parent and state != "Z" and pid not in besides and command in _cmdline(pid)
        ]
        pids = [root]
        for pid in pids:
            pids += [other for other, (_, ppid, _) in processes.items() if ppid == pid]
        pidfds = {}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                pidfds[pid] = os.pidfd_open(pid)
        group = processes[root][2]
        return cls(root, group, {pid: _cmdline(pid) for pid in pidfds}, pidfds)

    def running(self, timeout: float = 0) -> dict[int, str]:
        """The processes still running after up to ``timeout`` seconds (woken by their exits)."""
        deadline = time.monotonic() + timeout
        waiting = dict(self.pidfds)
        while waiting:
            left = max(0.0, deadline - time.monotonic())
            exited, _, _ = select.select(list(waiting.values()), [], [], left)
            if not exited:
                break
            waiting = {pid: fd for pid, fd in waiting.items() if fd not in exited}
        return {pid: self.pids[pid] for pid in waiting}

    def close(self) -> None:
        for fd in self.pidfds.values():
            os.close(fd)


def group_members(pgid: int) -> dict[int, str]:
    """The live (not zombie) processes of group ``pgid``."""
    return {
        pid: _cmdline(pid)
        for pid, (state, _, pgrp) in _processes().items()
        if pgrp == pgid and state not in ("Z", "X")
    }


async def cancel_and_check(task: asyncio.Task[Any], tree: Tree) -> None:
    """Cancel ``task``; then nothing of ``tree`` may be left, nor anything of its group."""
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        check_gone(tree)
    finally:
        tree.close()


def check_gone(tree: Tree) -> None:
    assert tree.root not in tree.running(), f"the child outlived the call: {tree.pids[tree.root]}"
    left = tree.running(timeout=EXIT_TIMEOUT_SECONDS)
    assert left == {}, f"processes left running: {left}"
    assert tree.group == tree.root, "the child ran in a process group of its own"
    assert group_members(tree.group) == {}


async def started(call: Awaitable[Any], ready: Awaitable[Any]) -> asyncio.Task[Any]:
    """``call`` running as a task, once ``ready`` (its child connected, say) is done."""
    task = asyncio.ensure_future(call)
    try:
        await ready
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    return task


# In-process: the call that runs the child is cancelled


async def test_a_cancelled_git_operation_leaves_no_git_worker() -> None:
    async with SilentServer() as server:
        call = git.list_heads(f"{server.url}/repo.git", {}, proxy=None, timeout=120)
        task = await started(call, server.wait_connected())
        tree = Tree.of_child(os.getpid(), "controllers.git.worker")
        await cancel_and_check(task, tree)


async def test_a_cancelled_gpg_leaves_no_gpg(tmp_path: Path) -> None:
    fifo = tmp_path / "signature"
    os.mkfifo(fifo)
    (tmp_path / "data").write_text("data\n")
    async with gnupg_home() as home:
        call = home.gpg("--verify", str(fifo), str(tmp_path / "data"))
        task = asyncio.ensure_future(call)
        async with opened_by_reader(fifo):  # gpg opened it: it runs, waiting for the signature
            tree = Tree.of_child(os.getpid(), f"--homedir {home.home}")
            await cancel_and_check(task, tree)


async def test_a_cancelled_sops_leaves_no_sops() -> None:
    binaries = ensure_binaries()
    age = new_age_identity(binaries)
    async with SilentServer() as vault:
        # A document whose data key only a Vault transit key can decrypt: sops asks the Vault
        # the document names, which is this server.
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
        secret["data"] = {"token": base64.b64encode(b"secret").decode()}
        document = json.loads(sops_encrypt(binaries, json.dumps(secret).encode(), "json", age=age))
        del document["sops"]["age"]
        document["sops"]["hc_vault"] = [
            {
                "vault_address": vault.url,
                "engine_path": "transit",
                "key_name": "weir",
                "created_at": "2024-01-01T00:00:00Z",
                "enc": "vault:v1:AAAA",
            }
        ]
        keys = DecryptionKeys(age={"identity.agekey": age.identity})
        task = await started(decrypt_objects([document], keys), vault.wait_connected())
        tree = Tree.of_child(os.getpid(), f"{binaries['sops']} decrypt")
        await cancel_and_check(task, tree)


async def test_a_cancelled_build_leaves_no_build_worker_nor_its_git(tmp_path: Path) -> None:
    workers = BuildWorkers(find_build_worker(), allow_remote_bases=True)
    try:
        async with SilentServer() as remote:
            root = tmp_path / "artifact"
            root.mkdir()
            (root / "kustomization.yaml").write_text(
                f"resources: ['git::{remote.url}/org/repo.git//base?ref=main']\n"
            )
            spec = KustomizationSpec.model_validate(
                {
                    "interval": "5m",
                    "prune": True,
                    "sourceRef": {"kind": "GitRepository", "name": "x"},
                }
            )
            # Other tests' idle workers may be children of this process too.
            before = set(_processes())
            call = build(root, ".", spec, workers=workers, timeout=120)
            task = await started(call, remote.wait_connected())
            tree = Tree.of_child(os.getpid(), WORKER_BINARY, besides=before)
            await cancel_and_check(task, tree)
        # What was left to kill: the worker's git, blocked on the silent remote.
        assert any(" fetch " in command for command in tree.pids.values()), tree.pids
    finally:
        await workers.close()


# A controller process told to stop while a reconcile's child runs


async def test_a_controller_stopped_mid_reconcile_leaves_no_git_worker(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    # No grace period: the reconcile is cut off as soon as the controller is told to stop.
    controller = source_controller(
        control_plane, namespace, tmp_path / "source", "--graceful-shutdown-timeout=0s"
    )
    async with SilentServer() as server:
        await controller.start()
        try:
            repository = git_repository(
                "app", namespace, url=f"{server.url}/repo.git", timeout="10m"
            )
            await kube.create(GITREPO, repository)
            await server.wait_connected()
            assert controller.process is not None
            tree = Tree.of_child(controller.process.pid, "controllers.git.worker")
        finally:
            code = await controller.stop()
        try:
            assert code == 0, controller.log_tail()
            check_gone(tree)
        finally:
            tree.close()
