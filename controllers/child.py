"""One-shot child processes that leave nothing behind: ``gpg``, ``sops``, the git worker.

:func:`run` starts a program in a session of its own (so in a process group of its own, which
everything it starts joins unless it daemonizes), feeds it ``stdin``, keeps its standard output
up to a limit and the tail of its standard error, and bounds the whole run by a timeout. However
the call ends (the program exits, the timeout passes, it writes too much, or the calling task
is cancelled, as a reconcile cut off at graceful shutdown is), the whole group is sent SIGKILL
and the child is reaped before the call returns or raises.

:func:`kill_group` is that last step alone, for a caller that keeps long-lived children of its
own, started with ``start_new_session=True`` (the kustomize build workers).

Errors, all :class:`ChildError`, with messages that name the program (the last part of
``argv[0]``) and never its input or output:

- :class:`ChildNotStarted`: the program could not be started (missing, not executable);
- :class:`ChildTimedOut`: it ran past ``timeout``;
- :class:`ChildOutputTooLarge`: it wrote more than ``max_output`` bytes to standard output.

A program that exits with a non-zero code is no error here: :class:`Completed` says how it
ended, and each caller knows what its program's codes mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "ChildError",
    "ChildNotStarted",
    "ChildOutputTooLarge",
    "ChildTimedOut",
    "Completed",
    "kill_group",
    "run",
]

DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024


class ChildError(Exception):
    """A child process could not be run to its end; the message says why."""


class ChildNotStarted(ChildError):
    """The program could not be started."""


class ChildTimedOut(ChildError):
    """The program ran past its timeout and was killed."""


class ChildOutputTooLarge(ChildError):
    """The program wrote more than ``max_output`` bytes and was killed."""


@dataclass(frozen=True)
class Completed:
    """How a child ended: its exit code (negative: killed by that signal), its standard output
    and the last ``stderr_tail`` bytes of its standard error."""

    returncode: int
    stdout: bytes
    stderr: bytes


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    stderr_tail: int = 0,
) -> Completed:
    """Run ``argv`` to its end within ``timeout`` seconds; see the module's docstring.

    ``stdin`` is written to the program's standard input, then closed (None: /dev/null).
    ``env`` replaces the environment (None: this process's), ``cwd`` the working directory.
    Standard error goes to /dev/null unless ``stderr_tail`` asks for its last bytes.
    """
    name = Path(argv[0]).name
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE if stderr_tail else asyncio.subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as err:
        raise ChildNotStarted(f"cannot run {name}: {err.strerror or err}") from None
    try:
        async with asyncio.timeout(timeout):
            return await _communicate(process, name, stdin, max_output, stderr_tail)
    except TimeoutError:
        raise ChildTimedOut(f"{name} did not finish within {timeout:g}s") from None
    finally:
        # Also after a normal exit: what the program started and left running goes too.
        kill_group(process)
        await process.wait()


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group that ``process`` leads (it was started with
    ``start_new_session=True``); nothing happens when the group is gone already.

    Call it while the leader runs or just after it was reaped: Linux reuses no process id
    while a group of that id has members, so the signal then reaches the leader's leftovers or
    no one; long after, the id of an emptied group may name another.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _communicate(
    process: asyncio.subprocess.Process,
    name: str,
    stdin: bytes | None,
    max_output: int,
    stderr_tail: int,
) -> Completed:
    assert process.stdout is not None
    feeding = tail = None
    if process.stdin is not None:
        feeding = asyncio.create_task(_feed(process.stdin, stdin or b""))
    if process.stderr is not None:
        tail = asyncio.create_task(_tail(process.stderr, stderr_tail))
    try:
        stdout = await _read_capped(process.stdout, max_output, name)
        if feeding is not None:
            await feeding
        stderr = await tail if tail is not None else b""
        returncode = await process.wait()
    finally:
        for task in (feeding, tail):
            if task is not None:
                task.cancel()
    return Completed(returncode, stdout, stderr)


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    try:
        pipe.write(data)
        await pipe.drain()
        pipe.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # it exited or closed its input without reading it all: its exit code tells


async def _read_capped(stream: asyncio.StreamReader, limit: int, name: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(_READ_SIZE):
        size += len(chunk)
        if size > limit:
            raise ChildOutputTooLarge(f"{name} wrote more than {limit} bytes of output")
        chunks.append(chunk)
    return b"".join(chunks)


async def _tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    chunks: deque[bytes] = deque()
    size = 0
    while chunk := await stream.read(_READ_SIZE):
        chunks.append(chunk)
        size += len(chunk)
        while size - len(chunks[0]) >= limit:
            size -= len(chunks.popleft())
    return b"".join(chunks)[-limit:]
