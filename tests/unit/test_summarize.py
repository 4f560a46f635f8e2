"""The summarizer as a table: how a run ended and the conditions it found give Ready,
Reconciling and Stalled, the events recorded and the requeue; and how the steps' results make
the run's."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controllers.api import Condition
from controllers.conditions import (
    PROGRESSING,
    PROGRESSING_WITH_RETRY,
    READY,
    RECONCILING,
    STALLED,
    SUCCEEDED,
    Status,
    find,
    kstatus_violations,
)
from controllers.reconcile import (
    Event,
    Outcome,
    ReconcileError,
    Result,
    Stalling,
    Waiting,
    events_to_record,
    summarize,
)

INTERVAL = 600.0
GENERATION = 2
STORED = "stored artifact for revision 'main@sha1:1'"


def condition(type_: str, status: Status, reason: str, message: str) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=1,
        last_transition_time="2020-01-01T00:00:00Z",
    )


# The conditions a run starts from: Ready as the last run left it, and an abnormal condition
# of the controller's own, which the summarizer never touches.
FETCH_FAILED = condition("FetchFailed", "True", "GitOperationFailed", "no such repository")
NEW: list[Condition] = []
READY_AS_STORED = [condition(READY, "True", SUCCEEDED, STORED)]
FAILING = [
    FETCH_FAILED,
    condition(READY, "False", "GitOperationFailed", "no such repository"),
    condition(RECONCILING, "True", PROGRESSING_WITH_RETRY, "no such repository"),
]
STALLED_ON_SPEC = [
    condition(READY, "False", "InvalidSpec", "spec.interval: invalid duration"),
    condition(STALLED, "True", "InvalidSpec", "spec.interval: invalid duration"),
]
# As ctx.progress() leaves them mid-run; the run's first Ready is what the events compare to.
IN_PROGRESS = [
    condition(READY, "Unknown", PROGRESSING, "Reconciliation in progress"),
    condition(RECONCILING, "True", PROGRESSING, "building artifact: new upstream revision"),
]

NOTIFIED: list[Event] = [("Normal", "NewArtifact", "stored artifact for commit 'one'")]

Summary = tuple[Status, str, str] | None


@dataclass(frozen=True)
class Case:
    before: list[Condition]
    result: Result
    error: ReconcileError | None
    ready: Summary
    reconciling: Summary = None
    stalled: Summary = None
    outcome: Outcome = Outcome.SUCCEEDED
    requeue: float | None = INTERVAL
    events: tuple[Event, ...] = ()
    notified: tuple[Event, ...] = ()
    ready_before: list[Condition] | None = None  # Ready as the run found it; else ``before``
    interval: float | None = INTERVAL
    retry_interval: float | None = None


FAILED = ReconcileError("no such repository", reason="GitOperationFailed")
WAITING = Waiting("Source artifact not found", reason="ArtifactFailed", requeue_after=30.0)
STALLING = Stalling("spec.interval: invalid duration", reason="InvalidSpec")
RETRYING: Summary = ("True", PROGRESSING_WITH_RETRY, "no such repository")

CASES = [
    # Success: Ready=True with the last message, Reconciling and Stalled gone.
    pytest.param(
        Case(NEW, Result(message=STORED), None, ready=("True", SUCCEEDED, STORED)),
        id="success-first-run-no-event",
    ),
    pytest.param(
        Case(
            NEW,
            Result(),
            None,
            ready=("True", SUCCEEDED, "Reconciliation succeeded"),
        ),
        id="success-without-message",
    ),
    pytest.param(
        Case(READY_AS_STORED, Result(message=STORED), None, ready=("True", SUCCEEDED, STORED)),
        id="success-again-no-event",
    ),
    pytest.param(
        Case(
            READY_AS_STORED,
            Result(message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            notified=tuple(NOTIFIED),
            events=tuple(NOTIFIED),
        ),
        id="success-records-what-steps-notified",
    ),
    pytest.param(
        Case(
            FAILING,
            Result(message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            events=(("Normal", SUCCEEDED, STORED),),
        ),
        id="success-after-failure-records-recovery",
    ),
    pytest.param(
        Case(
            FAILING,
            Result(message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            notified=tuple(NOTIFIED),
            events=tuple(NOTIFIED),
        ),
        id="success-after-failure-with-news-records-only-the-news",
    ),
    pytest.param(
        Case(
            STALLED_ON_SPEC,
            Result(message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            events=(("Normal", SUCCEEDED, STORED),),
        ),
        id="success-after-stall-clears-stalled",
    ),
    pytest.param(
        Case(
            IN_PROGRESS,
            Result(message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            ready_before=READY_AS_STORED,
        ),
        id="success-after-progress-clears-reconciling",
    ),
    # Success: when the object runs again.
    pytest.param(
        Case(
            NEW,
            Result(requeue_after=30.0, message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            requeue=30.0,
        ),
        id="success-shorter-requeue-wins",
    ),
    pytest.param(
        Case(
            NEW,
            Result(requeue_after=3600.0, message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            requeue=INTERVAL,
        ),
        id="success-interval-wins-over-a-longer-requeue",
    ),
    pytest.param(
        Case(
            NEW,
            Result(message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            interval=0.0,
            requeue=None,
        ),
        id="success-interval-zero-no-periodic-run",
    ),
    pytest.param(
        Case(
            NEW,
            Result(requeue_after=30.0, message=STORED),
            None,
            ready=("True", SUCCEEDED, STORED),
            interval=0.0,
            requeue=30.0,
        ),
        id="success-interval-zero-step-requeue-kept",
    ),
    # Failure: Ready=False with the error's reason, Reconciling=True, retried.
    pytest.param(
        Case(
            READY_AS_STORED,
            Result(),
            FAILED,
            ready=("False", "GitOperationFailed", "no such repository"),
            reconciling=RETRYING,
            outcome=Outcome.FAILED,
            requeue=None,
            events=(("Warning", "GitOperationFailed", "no such repository"),),
        ),
        id="failure-new-warns-and-backs-off",
    ),
    pytest.param(
        Case(
            FAILING,
            Result(),
            FAILED,
            ready=("False", "GitOperationFailed", "no such repository"),
            reconciling=RETRYING,
            outcome=Outcome.FAILED,
            requeue=None,
        ),
        id="failure-repeated-no-event",
    ),
    pytest.param(
        Case(
            READY_AS_STORED,
            Result(),
            FAILED,
            ready=("False", "GitOperationFailed", "no such repository"),
            reconciling=RETRYING,
            outcome=Outcome.FAILED,
            requeue=60.0,
            retry_interval=60.0,
            notified=tuple(NOTIFIED),
            events=(("Warning", "GitOperationFailed", "no such repository"),),
        ),
        id="failure-retries-after-retry-interval-notified-events-dropped",
    ),
    pytest.param(
        Case(
            READY_AS_STORED,
            Result(),
            FAILED,
            ready=("False", "GitOperationFailed", "no such repository"),
            reconciling=RETRYING,
            outcome=Outcome.FAILED,
            requeue=None,
            retry_interval=0.0,
            events=(("Warning", "GitOperationFailed", "no such repository"),),
        ),
        id="failure-retry-interval-zero-backs-off",
    ),
    pytest.param(
        Case(
            STALLED_ON_SPEC,
            Result(),
            FAILED,
            ready=("False", "GitOperationFailed", "no such repository"),
            reconciling=RETRYING,
            outcome=Outcome.FAILED,
            requeue=None,
            events=(("Warning", "GitOperationFailed", "no such repository"),),
        ),
        id="failure-after-stall-clears-stalled",
    ),
    # Waiting: as a failure, but looked at again after requeue_after, and told as Normal.
    pytest.param(
        Case(
            NEW,
            Result(),
            WAITING,
            ready=("False", "ArtifactFailed", "Source artifact not found"),
            reconciling=("True", PROGRESSING_WITH_RETRY, "Source artifact not found"),
            outcome=Outcome.WAITING,
            requeue=30.0,
            events=(("Normal", "ArtifactFailed", "Source artifact not found"),),
        ),
        id="waiting-requeues-after-its-delay",
    ),
    pytest.param(
        Case(
            NEW,
            Result(),
            Waiting("not yet", reason="DependencyNotReady", requeue_after=0.0),
            ready=("False", "DependencyNotReady", "not yet"),
            reconciling=("True", PROGRESSING_WITH_RETRY, "not yet"),
            outcome=Outcome.WAITING,
            requeue=None,
            events=(("Normal", "DependencyNotReady", "not yet"),),
        ),
        id="waiting-zero-backs-off",
    ),
    # Stalled: Ready=False and Stalled=True with the same reason, no requeue.
    pytest.param(
        Case(
            IN_PROGRESS,
            Result(),
            STALLING,
            ready=("False", "InvalidSpec", "spec.interval: invalid duration"),
            stalled=("True", "InvalidSpec", "spec.interval: invalid duration"),
            outcome=Outcome.STALLED,
            requeue=None,
            ready_before=READY_AS_STORED,
            events=(("Warning", "InvalidSpec", "spec.interval: invalid duration"),),
        ),
        id="stall-clears-reconciling",
    ),
    pytest.param(
        Case(
            STALLED_ON_SPEC,
            Result(),
            STALLING,
            ready=("False", "InvalidSpec", "spec.interval: invalid duration"),
            stalled=("True", "InvalidSpec", "spec.interval: invalid duration"),
            outcome=Outcome.STALLED,
            requeue=None,
        ),
        id="stall-repeated-no-event",
    ),
]


def summary(conditions: list[Condition], type_: str) -> Summary:
    found = find(conditions, type_)
    return None if found is None else (found.status, found.reason, found.message)


@pytest.mark.parametrize("case", CASES)
def test_summarize(case: Case) -> None:
    conditions, run = summarize(
        case.before,
        generation=GENERATION,
        result=case.result,
        error=case.error,
        interval=case.interval,
        retry_interval=case.retry_interval,
    )
    ready_before = find(case.before if case.ready_before is None else case.ready_before, READY)
    events = events_to_record(ready_before, conditions, case.error, list(case.notified))

    assert summary(conditions, READY) == case.ready
    assert summary(conditions, RECONCILING) == case.reconciling
    assert summary(conditions, STALLED) == case.stalled
    assert (run.outcome, run.requeue_after) == (case.outcome, case.requeue)
    assert events == list(case.events)
    # The controller's own conditions pass through as they are.
    assert [c for c in conditions if c.type == "FetchFailed"] == [
        c for c in case.before if c.type == "FetchFailed"
    ]
    observed = GENERATION if run.outcome in (Outcome.SUCCEEDED, Outcome.STALLED) else 1
    written = {
        "metadata": {"generation": GENERATION},
        "status": {
            "conditions": [c.to_dict() for c in conditions],
            "observedGeneration": observed,
        },
    }
    assert kstatus_violations(written, negative_polarity=["FetchFailed"]) == []


def test_summarize_stamps_the_generation_on_what_it_sets() -> None:
    conditions, _ = summarize(
        FAILING,
        generation=GENERATION,
        result=Result(message=STORED),
        error=None,
        interval=INTERVAL,
        retry_interval=None,
    )

    ready = find(conditions, READY)
    assert ready is not None
    assert ready.observed_generation == GENERATION


def test_summarize_jitters_the_next_run() -> None:
    delays = {
        summarize(
            NEW,
            generation=GENERATION,
            result=Result(),
            error=None,
            interval=INTERVAL,
            retry_interval=None,
            jitter_fraction=0.05,
        )[1].requeue_after
        for _ in range(20)
    }

    assert all(d is not None and 570 <= d <= 630 for d in delays)
    assert len(delays) > 1


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        pytest.param([Result(), Result()], Result(), id="nothing-asked"),
        pytest.param(
            [Result(message="first"), Result(message="second")],
            Result(message="second"),
            id="the-last-message",
        ),
        pytest.param(
            [Result(message="first"), Result()], Result(message="first"), id="the-last-given"
        ),
        pytest.param(
            [Result(requeue_after=30.0), Result(requeue_after=60.0, message="done")],
            Result(requeue_after=30.0, message="done"),
            id="shortest-requeue-first",
        ),
        pytest.param(
            [Result(requeue_after=60.0), Result(), Result(requeue_after=30.0)],
            Result(requeue_after=30.0),
            id="shortest-requeue-last",
        ),
        pytest.param(
            [Result(requeue_after=30.0), Result(requeue_after=0.0)],
            Result(requeue_after=30.0),
            id="zero-asks-for-nothing",
        ),
    ],
)
def test_a_runs_result_has_the_last_message_and_the_shortest_requeue(
    results: list[Result], expected: Result
) -> None:
    combined = Result()
    for result in results:
        combined = combined.then(result)

    assert combined == expected
