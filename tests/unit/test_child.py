"""One-shot children (controllers.child) with real programs: sh, cat, head, sleep."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from pathlib import Path

import pytest

from controllers import child

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("argv", "stdin", "stderr_tail", "expected"),
    [
        pytest.param(["sh", "-c", "exit 3"], None, 0, child.Completed(3, b"", b""), id="exit-code"),
        pytest.param(
            ["sh", "-c", "kill -TERM $$"], None, 0, child.Completed(-15, b"", b""), id="signal"
        ),
        # More than a pipe holds, both ways: feeding and reading go on together.
        pytest.param(["cat"], b"x" * 4 * MiB, 0, child.Completed(0, b"x" * 4 * MiB, b""), id="cat"),
        pytest.param(["cat"], None, 0, child.Completed(0, b"", b""), id="no-stdin"),
        pytest.param(
            ["sh", "-c", "echo out; echo first >&2; echo last >&2"],
            None,
            5,
            child.Completed(0, b"out\n", b"last\n"),
            id="stderr-tail",
        ),
        pytest.param(
            ["sh", "-c", "echo said >&2"],
            None,
            0,
            child.Completed(0, b"", b""),
            id="stderr-dropped",
        ),
        pytest.param(
            ["head", "-c", "1"], b"x" * MiB, 0, child.Completed(0, b"x", b""), id="unread"
        ),
    ],
)
async def test_a_child_runs_to_its_end(
    argv: list[str], stdin: bytes | None, stderr_tail: int, expected: child.Completed
) -> None:
    assert await child.run(argv, stdin=stdin, timeout=30, stderr_tail=stderr_tail) == expected


@pytest.mark.parametrize(
    ("argv", "timeout", "max_output", "error", "message"),
    [
        pytest.param(
            ["/nonexistent/program"],
            30,
            100,
            child.ChildNotStarted,
            "cannot run program: No such file or directory",
            id="missing",
        ),
        pytest.param(
            ["sleep", "600"],
            0.2,
            100,
            child.ChildTimedOut,
            "sleep did not finish within 0.2s",
            id="timeout",
        ),
        pytest.param(
            ["head", "-c", "101", "/dev/zero"],
            30,
            100,
            child.ChildOutputTooLarge,
            "head wrote more than 100 bytes of output",
            id="too-much-output",
        ),
    ],
)
async def test_a_child_that_cannot_finish_is_an_error(
    argv: list[str], timeout: float, max_output: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        await child.run(argv, timeout=timeout, max_output=max_output)


async def test_nothing_a_child_started_outlives_it(tmp_path: Path) -> None:
    # sh exits at once, leaving sleep behind in its group; run() ends the group too.
    script = "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"

    done = await child.run(["sh", "-c", script], timeout=30)

    pid = int(done.stdout)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone and reaped already
    try:
        # Woken by its exit: it was sent SIGKILL when the run ended.
        exited, _, _ = select.select([pidfd], [], [], 10)
        assert exited, f"sleep {pid} outlived the run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.close(pidfd)
