"""A reconciler for GitRepository objects that records what the runtime makes it do.

It stands in for no real component: it is the thing under the runtime, the way a test
controller sits under controller-runtime in its own tests. It can fail on demand
(``weir.test/fail-times`` annotation), take time (``delay``), and names the replica that
ran it in the Ready message, so tests read behaviour from the cluster.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.api import Artifact
from controllers.reconcile import ReconcileError, Reconciler, Result, RunContext, Step
from source.api_v1 import GitRepository

FAIL_TIMES = "weir.test/fail-times"
ARTIFACT_REVISION = "weir.test/artifact-revision"


def _artifact(revision: str) -> Artifact:
    return Artifact(
        path="gitrepository/ns/name/file.tar.gz",
        url="http://source/gitrepository/ns/name/file.tar.gz",
        revision=revision,
        digest="sha256:" + "0" * 64,
        last_update_time="2026-01-01T00:00:00Z",
    )


@dataclass(frozen=True)
class Call:
    key: str
    generation: int | None
    at: float


@dataclass
class Probe(Reconciler[GitRepository, None]):
    """Records each reconcile; fails while the object asks it to. It keeps no per-run state."""

    delay: float = 0.0
    identity: str = field(default_factory=lambda: os.environ.get("POD_NAME", "probe"))
    calls: list[Call] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    max_overlap: dict[str, int] = field(default_factory=dict)
    peak_parallel: int = 0

    model = GitRepository
    owned_conditions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._running: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    @property
    def steps(self) -> Sequence[Step[GitRepository, None]]:
        return [self.observe]

    def new_state(self) -> None:
        return None

    async def observe(self, ctx: RunContext[None], obj: GitRepository) -> Result:
        key = obj.key
        self._running[key] += 1
        self.max_overlap[key] = max(self.max_overlap.get(key, 0), self._running[key])
        self.peak_parallel = max(self.peak_parallel, sum(self._running.values()))
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # the work a real step would do
            self.calls.append(Call(key, obj.metadata.generation, time.monotonic()))
            wanted = int((obj.metadata.annotations or {}).get(FAIL_TIMES, "0"))
            revision = (obj.metadata.annotations or {}).get(ARTIFACT_REVISION)
            ctx.attempted_revision = revision
            if self._failed[key] < wanted:
                self._failed[key] += 1
                raise ReconcileError(f"probe failure {self._failed[key]}", reason="ProbeFailed")
            obj.status.artifact = _artifact(revision) if revision else None
            ctx.event_metadata["commit_status"] = "update"
            return Result(message=f"generation {obj.metadata.generation} by {self.identity}")
        finally:
            self._running[key] -= 1
            await self._notify()

    async def finalize(self, ctx: RunContext[None], obj: GitRepository) -> None:
        self.finalized.append(obj.key)
        await self._notify()

    def reset_failures(self, key: str) -> None:
        self._failed[key] = 0

    def calls_for(self, key: str) -> list[Call]:
        return [c for c in self.calls if c.key == key]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> None:
        """Wait, without polling, until ``predicate()`` is true after some reconcile."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
