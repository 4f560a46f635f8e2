"""A rate-limited work queue with client-go's semantics.

- a key waiting in the queue is there once, however often it is added (dedup);
- a key being processed is never handed to a second worker; if it is added meanwhile it is
  queued again once the first worker calls ``done`` (so the change is not lost);
- ``add_rate_limited`` delays a key by its own exponential backoff, ``forget`` resets it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["ExponentialBackoff", "QueueShutDown", "WorkQueue", "jitter"]


class QueueShutDown(Exception):
    """``get`` was called on, or was waiting in, a queue that has been shut down."""


def jitter(seconds: float, fraction: float = 0.05) -> float:
    """``seconds`` moved at random by up to ``fraction`` either way, to spread requeues."""
    return seconds * (1 + random.uniform(-fraction, fraction))  # noqa: S311 - not crypto


@dataclass
class ExponentialBackoff:
    """Per-key delay ``base * 2**failures``, capped at ``cap`` (Flux: 750 ms to 15 min)."""

    base: float = 0.75
    cap: float = 900.0
    _failures: dict[str, int] = field(default_factory=dict)

    def when(self, key: str) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # 2**failures overflows a float long after it passes any sane cap.
        return float(min(self.cap, self.base * 2 ** min(failures, 64)))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)


class WorkQueue:
    """The queue between informers (producers) and reconcile workers (consumers)."""

    def __init__(self, backoff: ExponentialBackoff | None = None) -> None:
        self.backoff = backoff or ExponentialBackoff()
        self._order: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._wakeup = asyncio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        return len(self._order)

    @property
    def shutting_down(self) -> bool:
        return self._shut_down

    def add(self, key: str) -> None:
        """Queue ``key`` now, unless it is already waiting."""
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it once the running worker finishes
        self._order.append(key)
        self._notify()

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending time for it wins."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = (due, handle)

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` after its next backoff delay; returns the delay."""
        delay = self.backoff.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (after a successful reconcile)."""
        self.backoff.forget(key)

    async def get(self) -> str:
        """Wait for the next key and mark it processing; the caller must call ``done``."""
        while not self._order:
            if self._shut_down:
                raise QueueShutDown
            # clear() and wait() run without a suspension point between them: no lost wakeup.
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._order.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        """Mark ``key`` finished; if it was added while processing, queue it again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._order.append(key)
            self._notify()

    def shut_down(self) -> None:
        """Stop handing out keys; waiting ``get`` calls raise QueueShutDown."""
        self._shut_down = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._order.clear()
        self._dirty.clear()
        self._notify()

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _notify(self) -> None:
        self._wakeup.set()
