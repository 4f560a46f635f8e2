"""Long-lived kustomize build workers (``hack/tools/kustomize/buildworker``).

Each worker is a Go process built from the same pinned kustomize module as the kustomize
binary. It runs kustomize's own api over a filesystem confined to the artifact being built, so
no file outside it is read whatever a kustomization says, and refuses remote bases and files
unless they are allowed. It serves one build at a time over a pipe; ``BuildWorkers`` keeps an
idle pool so that a build costs no process start.

A worker that runs past the build's timeout, or whose build is cancelled, is killed with its
process group (git clones included); one whose resident memory passes the limit stops itself
(exit code 3). Either way the build fails with a message saying why, and the next build gets a
fresh worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from controllers.binaries import cache_dir, find_binary
from controllers.child import kill_group

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_MEMORY_LIMIT",
    "WORKER_BINARY",
    "BuildTimeout",
    "BuildWorkers",
    "WorkerError",
    "find_build_worker",
]

WORKER_BINARY = "kustomize-build-worker"
DEFAULT_MEMORY_LIMIT = 512 * 1024 * 1024
MAX_OUTPUT_BYTES = 256 * 1024 * 1024
# Builds at once, each in a worker of about 20 MiB: on 2 cores more do not build faster.
DEFAULT_MAX_WORKERS = 4
_MAX_HEADER_BYTES = 1024 * 1024
_STDERR_TAIL_BYTES = 4096
# The worker's exit code when its resident memory passed the limit.
_EXIT_OUT_OF_MEMORY = 3
# Passed on to the worker (git needs PATH, remote bases may need a proxy); nothing else.
_ENV_PASSED = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY")


class WorkerError(Exception):
    """A build did not complete; the message says why (kustomize's error, a timeout, memory)."""


class BuildTimeout(WorkerError):
    """The build ran past its timeout and its worker was killed."""


def find_build_worker(explicit: str | None = None) -> Path:
    """The worker binary: ``explicit`` (a flag's value), else ``$WEIR_KUSTOMIZE_BUILD_WORKER``,
    else the one ``python -m controllers.envtest build`` put in the cache.

    Raises ``FileNotFoundError`` naming what was tried; a path given explicitly or in the
    environment must be an executable file (no fallback past a wrong setting).
    """
    variable = "WEIR_" + WORKER_BINARY.upper().replace("-", "_")
    for what, candidate in (("given", explicit), (f"from {variable}", os.environ.get(variable))):
        if candidate:
            if Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return Path(candidate)
            raise FileNotFoundError(
                f"{WORKER_BINARY} binary {candidate} ({what}) is not an executable file"
            )
    if (cached := find_binary(WORKER_BINARY)) is not None:
        return cached
    raise FileNotFoundError(
        f"{WORKER_BINARY} binary not found: no path given, {variable} not set, not in the "
        f"build cache ({cache_dir()}); build it with 'python -m controllers.envtest build' "
        f"(run by hack/setup.sh) or set {variable}"
    )


class BuildWorkers:
    """A pool of at most ``max_workers`` build workers sharing one configuration: builds
    beyond that wait for a worker (within their timeout), so that the pool's memory is
    bounded whatever ``--concurrent`` is."""

    def __init__(
        self,
        binary: Path,
        *,
        allow_remote_bases: bool,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.binary = binary
        self.allow_remote_bases = allow_remote_bases
        self.memory_limit = memory_limit
        self.max_workers = max_workers
        self._slots = asyncio.Semaphore(max_workers)
        self._idle: list[_Worker] = []

    async def build(self, root: Path, directory: Path, *, timeout: float) -> bytes:
        """The YAML kustomize builds of ``directory``, reading nothing outside ``root``.

        Raises ``WorkerError`` with kustomize's error, or saying that the build timed out
        (waiting for a worker included), ran out of memory or produced more than
        ``MAX_OUTPUT_BYTES``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise BuildTimeout(f"kustomize build timed out after {timeout:g}s") from None
        try:
            return await self._build(root, directory, max(deadline - loop.time(), 0.001))
        finally:
            self._slots.release()

    async def _build(self, root: Path, directory: Path, timeout: float) -> bytes:
        worker = self._idle.pop() if self._idle else None
        if worker is not None and worker.exited:
            await worker.stop()  # its directory and stderr reader go with it
            worker = None
        if worker is None:
            worker = await _Worker.start(self)
        try:
            output, error = await worker.build(root, directory, timeout)
        except BaseException:
            await worker.stop()
            raise
        self._idle.append(worker)  # never more than max_workers: each build holds a slot
        if error is not None:
            # The refusing git's path means nothing to the user.
            error = error.replace(f"{worker.tmpdir}/bin/", "")
            raise WorkerError(f"kustomize build failed: {error}")
        return output

    async def close(self) -> None:
        """Stop every idle worker."""
        idle, self._idle = self._idle, []
        for worker in idle:
            await worker.stop()


class _Worker:
    """One worker process, its private temporary directory and the tail of its stderr."""

    def __init__(self, pool: BuildWorkers, process: Any, tmpdir: Path) -> None:
        self.pool = pool
        self.process: asyncio.subprocess.Process = process
        self.tmpdir = tmpdir
        self.stderr_tail: deque[bytes] = deque()
        self._drain = asyncio.create_task(self._drain_stderr())

    @classmethod
    async def start(cls, pool: BuildWorkers) -> _Worker:
        # Remote bases are cloned here, and only here may a build read outside the artifact.
        tmpdir = Path(tempfile.mkdtemp(prefix="weir-build-worker-"))
        env = {name: os.environ[name] for name in _ENV_PASSED if name in os.environ}
        env |= {"HOME": str(tmpdir), "TMPDIR": str(tmpdir), "GIT_TERMINAL_PROMPT": "0"}
        env["LANG"] = "C"
        args = [f"-memory-limit={pool.memory_limit}"]
        if pool.allow_remote_bases:
            args.append("-allow-remote")
        try:
            process = await asyncio.create_subprocess_exec(
                str(pool.binary),
                *args,
                cwd=tmpdir,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_MAX_HEADER_BYTES,
                # Its own process group: stopping it also stops the git clones it started.
                start_new_session=True,
            )
        except OSError as err:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise WorkerError(f"cannot start {pool.binary.name}: {err}") from None
        return cls(pool, process, tmpdir)

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    async def build(self, root: Path, directory: Path, timeout: float) -> tuple[bytes, str | None]:
        """The output, or kustomize's error; raises ``WorkerError`` when the worker is lost."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = json.dumps({"root": str(root), "dir": str(directory)}).encode() + b"\n"
        try:
            async with asyncio.timeout(timeout):
                self.process.stdin.write(request)
                await self.process.stdin.drain()
                header = await self.process.stdout.readline()
                if not header.endswith(b"\n"):
                    raise await self._lost()
                return await self._read_response(header)
        except TimeoutError:
            raise BuildTimeout(f"kustomize build timed out after {timeout:g}s") from None
        except (ConnectionError, asyncio.IncompleteReadError):
            raise await self._lost() from None
        except ValueError:  # a header line past the stream's limit
            raise WorkerError(f"{self.pool.binary.name} answered with garbage") from None

    async def _read_response(self, header: bytes) -> tuple[bytes, str | None]:
        assert self.process.stdout is not None
        try:
            response = json.loads(header)
            if "error" in response:
                return b"", str(response["error"])
            size = int(response["size"])
        except (ValueError, TypeError, KeyError):
            raise WorkerError(f"{self.pool.binary.name} answered with garbage") from None
        if size > MAX_OUTPUT_BYTES:
            raise WorkerError(
                f"kustomize build output is larger than {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB"
            )
        return await self.process.stdout.readexactly(size), None

    async def _lost(self) -> WorkerError:
        """The worker ended mid-build: why, from its exit code and last words."""
        code = await self.process.wait()
        await self._drain
        if code == _EXIT_OUT_OF_MEMORY:
            limit = self.pool.memory_limit / (1024 * 1024)
            return WorkerError(
                f"kustomize build ran out of memory: it used more than {limit:g} MiB "
                "(the kustomize controller's --build-memory-limit)"
            )
        said = b"".join(self.stderr_tail).decode(errors="replace").strip().splitlines()
        last = said[-1] if said else "no error output"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return WorkerError(f"kustomize build failed: the build worker {how}: {last}")

    async def _drain_stderr(self) -> None:
        """Keep the last few KiB of stderr (warnings, or why the worker died)."""
        assert self.process.stderr is not None
        size = 0
        while chunk := await self.process.stderr.read(4096):
            self.stderr_tail.append(chunk)
            size += len(chunk)
            while size - len(self.stderr_tail[0]) >= _STDERR_TAIL_BYTES:
                size -= len(self.stderr_tail.popleft())

    async def stop(self) -> None:
        """Kill the worker and its children, and remove its directory."""
        if self.process.returncode is None:
            kill_group(self.process)
        try:
            await self.process.wait()
            await self._drain
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
