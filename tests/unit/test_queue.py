"""The work queue: dedup, one worker per key, delayed and rate-limited adds, shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from controllers.queue import ExponentialBackoff, QueueShutDown, WorkQueue, jitter

# A guard, never a wait: every awaited event below arrives in a few tens of milliseconds.
GUARD = 2.0


async def next_key(queue: WorkQueue) -> str:
    async with asyncio.timeout(GUARD):
        return await queue.get()


async def settle() -> None:
    """Let every task that can run do so (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_waiting_key_is_queued_once() -> None:
    queue = WorkQueue()
    for key in ["a", "b", "a", "a", "b"]:
        queue.add(key)

    assert len(queue) == 2
    assert [await next_key(queue), await next_key(queue)] == ["a", "b"]
    assert len(queue) == 0


async def test_keys_come_out_in_the_order_they_were_added() -> None:
    queue = WorkQueue()
    keys = ["ns/c", "ns/a", "other/b", "ns/b"]
    for key in keys:
        queue.add(key)

    assert [await next_key(queue) for _ in keys] == keys


async def test_a_key_being_processed_is_not_handed_out_again_until_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert await next_key(queue) == "a"

    queue.add("a")
    second_worker = asyncio.create_task(queue.get())
    await settle()

    assert len(queue) == 0
    assert not second_worker.done()

    queue.done("a")
    async with asyncio.timeout(GUARD):
        assert await second_worker == "a"


async def test_re_adds_during_processing_are_queued_exactly_once_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert await next_key(queue) == "a"
    queue.add("a")
    queue.add("a")
    queue.add("b")

    queue.done("a")

    assert len(queue) == 2
    # "a" goes behind what was already waiting.
    assert [await next_key(queue), await next_key(queue)] == ["b", "a"]
    queue.done("a")
    queue.done("b")
    assert len(queue) == 0


async def test_done_without_a_re_add_does_not_requeue() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert await next_key(queue) == "a"

    queue.done("a")

    assert len(queue) == 0


async def test_add_after_queues_the_key_later() -> None:
    queue = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()

    queue.add_after("a", 0.02)

    assert len(queue) == 0
    assert await next_key(queue) == "a"
    # The loop may run a timer up to its clock resolution early.
    assert loop.time() - start >= 0.02 - 0.005


@pytest.mark.parametrize("delay", [pytest.param(0, id="zero"), pytest.param(-1, id="negative")])
async def test_add_after_without_a_delay_queues_now(delay: float) -> None:
    queue = WorkQueue()

    queue.add_after("a", delay)

    assert len(queue) == 1


async def test_an_earlier_add_after_replaces_a_later_one() -> None:
    queue = WorkQueue()
    queue.add_after("a", 0.05)
    queue.add_after("b", 0.03)

    queue.add_after("a", 0.01)

    assert await next_key(queue) == "a"
    queue.done("a")
    assert await next_key(queue) == "b"
    # Were the 0.05 s timer for "a" still armed, "a" would come before "c".
    queue.add_after("c", 0.04)
    assert await next_key(queue) == "c"
    assert len(queue) == 0


async def test_a_later_add_after_does_not_replace_an_earlier_one() -> None:
    queue = WorkQueue()
    queue.add_after("a", 0.01)
    queue.add_after("a", 0.03)

    assert await next_key(queue) == "a"
    queue.done("a")
    # Were a second timer for "a" armed (due at 0.03 s), it would fire before "b".
    queue.add_after("b", 0.04)
    assert await next_key(queue) == "b"
    assert len(queue) == 0


@pytest.mark.parametrize(
    ("base", "cap", "delays"),
    [
        pytest.param(
            0.75,
            900.0,
            [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0, 384.0, 768.0, 900.0, 900.0],
            id="flux-750ms-to-15min",
        ),
        pytest.param(0.75, 4.0, [0.75, 1.5, 3.0, 4.0, 4.0], id="small-cap"),
        pytest.param(1.0, 1.0, [1.0, 1.0, 1.0], id="cap-is-base"),
    ],
)
async def test_add_rate_limited_backs_off_exponentially_up_to_the_cap(
    base: float, cap: float, delays: list[float]
) -> None:
    backoff = ExponentialBackoff(base, cap)
    queue = WorkQueue(backoff)
    try:
        assert [queue.add_rate_limited("a") for _ in delays] == delays
        assert backoff.failures("a") == len(delays)
    finally:
        queue.shut_down()


def test_backoff_does_not_overflow_after_many_failures() -> None:
    backoff = ExponentialBackoff()

    delays = [backoff.when("a") for _ in range(2000)]

    assert delays[-1] == 900.0


async def test_forget_resets_the_backoff_of_that_key_only() -> None:
    queue = WorkQueue()
    try:
        for _ in range(3):
            queue.add_rate_limited("a")
            queue.add_rate_limited("b")

        queue.forget("a")

        assert queue.backoff.failures("a") == 0
        assert queue.add_rate_limited("a") == 0.75
        assert queue.add_rate_limited("b") == 6.0
    finally:
        queue.shut_down()


async def test_add_rate_limited_queues_the_key_after_its_delay() -> None:
    queue = WorkQueue(ExponentialBackoff(base=0.01, cap=0.02))

    assert queue.add_rate_limited("a") == 0.01
    assert len(queue) == 0
    assert await next_key(queue) == "a"


async def test_shut_down_wakes_every_waiting_getter() -> None:
    queue = WorkQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle()
    assert not any(getter.done() for getter in getters)

    queue.shut_down()

    async with asyncio.timeout(GUARD):
        results = await asyncio.gather(*getters, return_exceptions=True)
    assert [type(result) for result in results] == [QueueShutDown] * 3
    assert queue.shutting_down


async def test_a_shut_down_queue_hands_out_and_accepts_nothing() -> None:
    queue = WorkQueue()
    queue.add("running")
    queue.add("waiting")
    assert await next_key(queue) == "running"
    queue.add("running")

    queue.shut_down()
    queue.add("new")
    queue.add_after("later", 0.01)
    queue.done("running")

    assert len(queue) == 0
    with pytest.raises(QueueShutDown):
        await next_key(queue)


async def test_shut_down_cancels_pending_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    handles: list[asyncio.TimerHandle] = []
    call_later = loop.call_later

    def recording_call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = call_later(delay, callback, *args)
        handles.append(handle)
        return handle

    monkeypatch.setattr(loop, "call_later", recording_call_later)
    queue = WorkQueue()
    queue.add_after("a", 10)
    queue.add_rate_limited("b")
    assert len(handles) == 2
    assert not any(handle.cancelled() for handle in handles)

    queue.shut_down()

    assert all(handle.cancelled() for handle in handles)


async def test_concurrent_getters_each_get_a_distinct_key() -> None:
    queue = WorkQueue()
    keys = [f"ns/obj-{i}" for i in range(50)]
    getters = [asyncio.create_task(queue.get()) for _ in keys]
    await settle()

    for key in keys:
        queue.add(key)
    async with asyncio.timeout(GUARD):
        got = await asyncio.gather(*getters)

    assert sorted(got) == sorted(keys)


async def test_more_getters_than_keys_leaves_the_rest_waiting() -> None:
    queue = WorkQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(4)]
    await settle()

    queue.add("a")
    queue.add("b")
    await settle()

    finished = [getter for getter in getters if getter.done()]
    assert sorted(getter.result() for getter in finished) == ["a", "b"]
    queue.shut_down()
    async with asyncio.timeout(GUARD):
        rest = await asyncio.gather(*getters, return_exceptions=True)
    assert [type(result) for result in rest].count(QueueShutDown) == 2


@pytest.mark.parametrize(
    ("seconds", "fraction"),
    [
        pytest.param(60.0, 0.05, id="5-percent"),
        pytest.param(1.0, 0.5, id="half"),
        pytest.param(0.75, 0.0, id="none"),
    ],
)
def test_jitter_stays_within_the_fraction(seconds: float, fraction: float) -> None:
    samples = [jitter(seconds, fraction) for _ in range(1000)]

    assert all(seconds * (1 - fraction) <= s <= seconds * (1 + fraction) for s in samples)
    if fraction:
        assert len(set(samples)) > 1
        assert min(samples) < seconds < max(samples)


@pytest.mark.parametrize(
    ("pick", "expected"),
    [pytest.param(min, 57.0, id="lowest"), pytest.param(max, 63.0, id="highest")],
)
def test_jitter_defaults_to_five_percent(
    monkeypatch: pytest.MonkeyPatch, pick: Callable[[float, float], float], expected: float
) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: pick(a, b))

    assert jitter(60.0) == pytest.approx(expected)
