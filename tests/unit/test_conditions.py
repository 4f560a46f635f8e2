"""Condition setters and the kstatus rule check."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controllers.api import Condition
from controllers.conditions import (
    READY,
    RECONCILING,
    STALLED,
    Status,
    find,
    is_true,
    kstatus_violations,
    remove,
    set_condition,
)

OLD = "2020-01-01T00:00:00Z"


def condition(
    type_: str = READY,
    status: Status = "True",
    reason: str = "Succeeded",
    message: str = "stored artifact",
    generation: int | None = 1,
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=OLD,
    )


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


def test_set_condition_appends_a_new_type_stamped_now() -> None:
    others = [condition("FetchFailed", reason="GitOperationFailed")]
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    conditions = set_condition(others, READY, "False", "GitOperationFailed", "no repo", 3)

    after = datetime.datetime.now(datetime.UTC)
    assert [c.type for c in conditions] == ["FetchFailed", READY]
    ready = conditions[1]
    assert (ready.status, ready.reason, ready.message) == ("False", "GitOperationFailed", "no repo")
    assert ready.observed_generation == 3
    assert before <= parse_time(ready.last_transition_time) <= after
    assert [c.type for c in others] == ["FetchFailed"], "the input list must not change"


def test_set_condition_keeps_the_transition_time_when_nothing_changed() -> None:
    conditions = [condition("FetchFailed", "True", "Failed", "x"), condition()]

    updated = set_condition(conditions, READY, "True", "Succeeded", "stored artifact", 2)

    ready = find(updated, READY)
    assert ready is not None
    assert ready.last_transition_time == OLD
    assert ready.observed_generation == 2
    assert [c.type for c in updated] == ["FetchFailed", READY]


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        pytest.param("False", "Succeeded", "stored artifact", id="status"),
        pytest.param("Unknown", "Succeeded", "stored artifact", id="status-unknown"),
        pytest.param("True", "ArtifactUpToDate", "stored artifact", id="reason"),
        pytest.param("True", "Succeeded", "stored artifact for main@sha1:abc", id="message"),
    ],
)
def test_set_condition_moves_the_transition_time_when_something_changed(
    status: Status, reason: str, message: str
) -> None:
    conditions = [condition(), condition("FetchFailed", reason="Failed")]

    updated = set_condition(conditions, READY, status, reason, message, 1)

    ready = updated[0]
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        READY,
        status,
        reason,
        message,
    )
    assert parse_time(ready.last_transition_time) > parse_time(OLD)
    assert updated[1] == conditions[1]


def test_set_condition_truncates_the_message_to_the_api_limit() -> None:
    updated = set_condition([], READY, "False", "BuildFailed", "x" * 40000, 1)

    assert updated[0].message == "x" * 32768


def test_set_condition_keeps_the_transition_time_for_an_unchanged_long_message() -> None:
    long_message = "kustomize build failed: " + "x" * 40000
    (stored,) = set_condition([], READY, "False", "BuildFailed", long_message, 1)
    conditions = [stored.model_copy(update={"last_transition_time": OLD})]

    updated = set_condition(conditions, READY, "False", "BuildFailed", long_message, 1)

    assert updated[0].last_transition_time == OLD


@pytest.mark.parametrize(
    ("type_", "remaining"),
    [
        pytest.param(RECONCILING, [READY, "FetchFailed"], id="present"),
        pytest.param(STALLED, [READY, RECONCILING, "FetchFailed"], id="absent"),
    ],
)
def test_remove(type_: str, remaining: list[str]) -> None:
    conditions = [condition(READY), condition(RECONCILING), condition("FetchFailed")]

    assert [c.type for c in remove(conditions, type_)] == remaining


def test_find() -> None:
    fetch_failed = condition("FetchFailed", reason="GitOperationFailed")
    conditions = [condition(), fetch_failed]

    assert find(conditions, "FetchFailed") is fetch_failed
    assert find(conditions, STALLED) is None
    assert find(None, READY) is None
    assert find([], READY) is None


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param([condition(status="True")], True, id="true"),
        pytest.param([condition(status="False")], False, id="false"),
        pytest.param([condition(status="Unknown")], False, id="unknown"),
        pytest.param([condition(STALLED, status="True")], False, id="other-type-true"),
        pytest.param([], False, id="empty"),
        pytest.param(None, False, id="none"),
    ],
)
def test_is_true(conditions: list[Condition] | None, expected: bool) -> None:
    assert is_true(conditions, READY) is expected


def raw(
    type_: str, status: str = "True", reason: str | None = "Succeeded", **extra: Any
) -> dict[str, Any]:
    """A condition as it appears in an object read from the API server."""
    c: dict[str, Any] = {
        "type": type_,
        "status": status,
        "message": "",
        "lastTransitionTime": OLD,
        **extra,
    }
    if reason is not None:
        c["reason"] = reason
    return c


def obj(
    *conditions: dict[str, Any], generation: int = 2, observed: int | None = 2
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "podinfo", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("manifest", "negative_polarity", "expected"),
    [
        pytest.param(obj(raw(READY)), (), [], id="ready-true"),
        pytest.param(
            obj(raw(READY, "False", "GitOperationFailed"), raw("FetchFailed", "True", "Git")),
            ("FetchFailed",),
            [],
            id="ready-false-with-abnormal-true",
        ),
        pytest.param(
            obj(
                raw(READY, "Unknown", "Progressing"),
                raw(RECONCILING, "True", "Progressing"),
                observed=1,
            ),
            (),
            [],
            id="reconciling-may-lag-generation",
        ),
        pytest.param(
            obj(raw(READY, "False", "InvalidURL"), raw(STALLED, "True", "InvalidURL")),
            (),
            [],
            id="stalled-with-matching-ready",
        ),
        pytest.param(obj(), (), ["Ready is missing"], id="ready-missing"),
        pytest.param(
            {"metadata": {"name": "podinfo", "generation": 1}},
            (),
            ["Ready is missing"],
            id="no-status",
        ),
        pytest.param(
            obj(raw(READY), raw(RECONCILING, "False", "Succeeded")),
            (),
            ["Reconciling is present but not True", "Ready is True while Reconciling is present"],
            id="reconciling-false-present",
        ),
        pytest.param(
            obj(raw(READY, "False", "Failed"), raw(STALLED, "Unknown", "Failed")),
            (),
            ["Stalled is present but not True"],
            id="stalled-unknown-present",
        ),
        pytest.param(
            obj(
                raw(READY, "False", "Failed"),
                raw(RECONCILING, "True", "Progressing"),
                raw(STALLED, "True", "Failed"),
            ),
            (),
            ["Reconciling and Stalled are both True"],
            id="reconciling-and-stalled",
        ),
        pytest.param(
            obj(raw(READY), raw(RECONCILING, "True", "Progressing")),
            (),
            ["Ready is True while Reconciling is present"],
            id="ready-true-while-reconciling",
        ),
        pytest.param(
            obj(raw(READY, "True", "InvalidURL"), raw(STALLED, "True", "InvalidURL")),
            (),
            ["Ready is True while Stalled is present", "Stalled is True but Ready is not False"],
            id="stalled-but-ready-true",
        ),
        pytest.param(
            obj(raw(READY, "Unknown", "InvalidURL"), raw(STALLED, "True", "InvalidURL")),
            (),
            ["Stalled is True but Ready is not False"],
            id="stalled-but-ready-unknown",
        ),
        pytest.param(
            obj(raw(READY, "False", "GitOperationFailed"), raw(STALLED, "True", "InvalidURL")),
            (),
            ["Ready does not carry the Stalled reason"],
            id="stalled-reason-differs",
        ),
        pytest.param(
            obj(raw(READY), observed=1),
            (),
            ["status.observedGeneration 1 != generation 2 while not Reconciling"],
            id="observed-generation-behind",
        ),
        pytest.param(
            obj(raw(READY), observed=None),
            (),
            ["status.observedGeneration None != generation 2 while not Reconciling"],
            id="observed-generation-missing",
        ),
        pytest.param(
            obj(raw(READY, observedGeneration=3)),
            (),
            ["Ready: observedGeneration 3 > 2"],
            id="condition-observed-generation-ahead",
        ),
        pytest.param(
            obj(raw(READY), raw(READY)),
            (),
            ["condition Ready appears twice"],
            id="duplicate-type",
        ),
        pytest.param(obj(raw(READY, reason=None)), (), ["Ready: no reason"], id="missing-reason"),
        pytest.param(obj(raw(READY, reason="")), (), ["Ready: no reason"], id="empty-reason"),
        pytest.param(
            obj({"type": READY, "status": "True", "reason": "Succeeded"}),
            (),
            ["Ready: no lastTransitionTime"],
            id="missing-transition-time",
        ),
        pytest.param(
            obj(raw(READY, "true")),
            (),
            ["Ready: status 'true' is not True/False/Unknown"],
            id="status-lowercase",
        ),
        pytest.param(
            obj(raw(READY), raw("FetchFailed", "False", "Succeeded")),
            ("FetchFailed",),
            ["FetchFailed is present but not True"],
            id="negative-polarity-false",
        ),
        pytest.param(
            obj(raw(READY), raw("ArtifactInStorage", "False", "Missing")),
            ("FetchFailed",),
            [],
            id="positive-polarity-false",
        ),
    ],
)
def test_kstatus_violations(
    manifest: dict[str, Any], negative_polarity: tuple[str, ...], expected: list[str]
) -> None:
    assert kstatus_violations(manifest, negative_polarity) == expected
