"""What a HelmRelease records about ``helm test`` (helm/tests.py), as Flux's helm-controller
records it: options, the snapshot's testHooks, TestSuccess, failure counting, test state."""

from __future__ import annotations

from typing import Any

import pytest

from helm.api_v2 import Snapshot, TestFilter, TestHookStatus
from helm.client import HelmTestOptions, Hook
from helm.history import snapshot
from helm.tests import (
    TEST_FAILED,
    TEST_SUCCEEDED,
    awaiting_message,
    helm_test_options,
    ignores_test_failures,
    mismatch_error,
    observed_hooks,
    outcome,
    ready_conditions,
    snapshot_after_tests,
    untested_state,
)
from tests.unit.test_helmrelease import helmrelease, release


def hook(name: str, phase: str = "", events: tuple[str, ...] = ("test",)) -> Hook:
    ran = "2026-12-07T21:00:01.5+01:00" if phase else ""
    return Hook(
        name=name,
        kind="Pod",
        path=f"tested/templates/{name}.yaml",
        events=events,
        delete_policies=("before-hook-creation",),
        last_run_phase=phase,
        manifest="kind: Pod\n",
        last_run_started=ran,
        last_run_completed=ran,
    )


HOOKS = (hook("passes", "Succeeded"), hook("fails", "Failed"), hook("setup", "", ("pre-install",)))
TESTED = release(1, "deployed", hooks=HOOKS)


def latest(hooks: dict[str, dict[str, Any]] | None = None, version: int = 1) -> dict[str, Any]:
    entry = snapshot(release(version, "deployed"), "install").to_dict()
    if hooks is not None:
        entry["testHooks"] = hooks
    return entry


def installed(test: dict[str, Any], hooks: dict[str, dict[str, Any]] | None, **spec: Any) -> Any:
    return helmrelease(
        {"test": test, **spec}, history=[latest(hooks)], lastAttemptedReleaseAction="install"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, HelmTestOptions(timeout=300.0), id="release-timeout"),
        pytest.param(
            {"timeout": "2m", "test": {"enable": True, "timeout": "30s"}},
            HelmTestOptions(timeout=30.0),
            id="test-timeout",
        ),
        pytest.param(
            {
                "test": {
                    "filters": [
                        {"name": "a"},
                        {"name": "b", "exclude": True},
                        {"name": "c", "exclude": False},
                    ]
                }
            },
            HelmTestOptions(timeout=300.0, filters=("a", "c"), exclude=("b",)),
            id="filters",
        ),
    ],
)
def test_options_from_the_spec(spec: dict[str, Any], expected: HelmTestOptions) -> None:
    assert helm_test_options(helmrelease(spec)) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param([], {"passes", "fails"}, id="all-tests-no-other-hooks"),
        pytest.param([TestFilter(name="passes")], {"passes"}, id="include"),
        pytest.param([TestFilter(name="fails", exclude=True)], {"passes"}, id="exclude"),
        pytest.param(
            [TestFilter(name="passes"), TestFilter(name="passes", exclude=True)],
            set(),
            id="exclude-wins",
        ),
        pytest.param([TestFilter(name="other")], set(), id="include-none-of-them"),
    ],
)
def test_hooks_selected_by_filters(filters: list[TestFilter], expected: set[str]) -> None:
    assert set(observed_hooks(TESTED, filters)) == expected


def test_hook_status_from_the_last_run() -> None:
    hooks = observed_hooks(release(1, hooks=(hook("ran", "Failed"), hook("never"))))

    assert hooks["ran"] == TestHookStatus(
        last_started="2026-12-07T20:00:01Z", last_completed="2026-12-07T20:00:01Z", phase="Failed"
    )
    assert hooks["never"] == TestHookStatus()
    assert hooks["never"].to_dict() == {}


def test_tested_snapshot_replaces_the_latest_for_its_release_only() -> None:
    before = release(1, "deployed", hooks=(hook("passes"), hook("fails"), HOOKS[2]))
    obj = helmrelease(
        {"test": {"enable": True, "filters": [{"name": "setup", "exclude": True}]}},
        history=[snapshot(before, "install").to_dict()],
        lastAttemptedReleaseAction="install",
    )

    tested = snapshot_after_tests(obj, TESTED)

    assert tested is not None
    assert tested.action == "install"
    assert tested.version == 1
    # The tests' runs change the stored release, not what identifies it.
    assert tested.digest == snapshot(before, "install").digest
    assert {name: h.phase for name, h in (tested.test_hooks or {}).items()} == {
        "passes": "Succeeded",
        "fails": "Failed",
    }
    assert snapshot_after_tests(obj, release(2, "deployed", hooks=HOOKS)) is None
    assert snapshot_after_tests(helmrelease(), TESTED) is None


def test_mismatch_error() -> None:
    assert mismatch_error(Snapshot.model_validate(latest()), release(2)) == (
        "release mismatch: tested release apps/app.v2 != current release apps/app.v1"
    )


PASSED = {"a": {"phase": "Succeeded"}, "b": {"phase": "Succeeded"}}
ONE_PASSED = {"a": {"phase": "Succeeded"}}
FAILED = {"a": {"phase": "Succeeded"}, "b": {"phase": "Failed"}}
RUNNING = {"a": {"phase": "Running"}}


@pytest.mark.parametrize(
    ("test", "remediation", "hooks", "error", "expected"),
    [
        pytest.param(
            {"enable": True},
            {},
            PASSED,
            None,
            ("True", TEST_SUCCEEDED, "2 test hooks completed successfully", "Normal", 0, 0, 0),
            id="passed",
        ),
        pytest.param(
            {"enable": True},
            {},
            ONE_PASSED,
            None,
            ("True", TEST_SUCCEEDED, "1 test hook completed successfully", "Normal", 0, 0, 0),
            id="passed-one",
        ),
        pytest.param(
            {"enable": True},
            {},
            {},
            None,
            ("True", TEST_SUCCEEDED, "no test hooks", "Normal", 0, 0, 0),
            id="no-tests",
        ),
        pytest.param(
            {"enable": True},
            {},
            FAILED,
            "pod b failed\n",
            ("False", TEST_FAILED, "pod b failed", "Warning", 1, 1, 0),
            id="failed-counts-for-remediation",
        ),
        pytest.param(
            {"enable": True, "ignoreFailures": True},
            {},
            FAILED,
            "pod b failed",
            ("False", TEST_FAILED, "pod b failed", "Warning", 1, 0, 0),
            id="failed-ignored",
        ),
        pytest.param(
            {"enable": True, "ignoreFailures": True},
            {"ignoreTestFailures": False},
            FAILED,
            "pod b failed",
            ("False", TEST_FAILED, "pod b failed", "Warning", 1, 1, 0),
            id="failed-remediation-overrides-ignore",
        ),
        pytest.param(
            {"enable": True},
            {"ignoreTestFailures": True},
            FAILED,
            "pod b failed",
            ("False", TEST_FAILED, "pod b failed", "Warning", 1, 0, 0),
            id="failed-remediation-ignores",
        ),
        pytest.param(
            {"enable": True},
            {},
            None,
            "timed out waiting for the condition",
            ("False", TEST_FAILED, "timed out waiting for the condition", "Warning", 1, 0, 1),
            id="nothing-observed-retry",
        ),
        pytest.param(
            {"enable": True},
            {},
            RUNNING,
            "timed out",
            ("False", TEST_FAILED, "timed out", "Warning", 1, 0, 1),
            id="not-finished-retry",
        ),
    ],
)
def test_outcome_of_a_test_run(
    test: dict[str, Any],
    remediation: dict[str, Any],
    hooks: dict[str, dict[str, Any]] | None,
    error: str | None,
    expected: tuple[str, str, str, str, int, int, int],
) -> None:
    obj = installed(test, hooks, install={"remediation": remediation})
    cur = obj.status.latest_snapshot
    assert cur is not None

    got = outcome(obj, cur, error)

    status, reason, detail, event_type, failure, remediation_failure, retry = expected
    verb = "succeeded" if status == "True" else "failed"
    assert got.message == (
        f"Helm test {verb} for release apps/app.v1 with chart podinfo@6.0.0: {detail}"
    )
    assert (got.status, got.reason, got.event_type) == (status, reason, event_type)
    assert (got.count_failure, got.count_remediation_failure, got.retry) == (
        bool(failure),
        bool(remediation_failure),
        bool(retry),
    )


def test_outcome_counts_by_the_action_attempted() -> None:
    obj = helmrelease(
        {
            "test": {"enable": True},
            "install": {"remediation": {"ignoreTestFailures": True}},
            "upgrade": {"remediation": {"ignoreTestFailures": False}},
        },
        history=[latest(FAILED)],
        lastAttemptedReleaseAction="upgrade",
    )
    cur = obj.status.latest_snapshot
    assert cur is not None

    assert outcome(obj, cur, "failed").count_remediation_failure
    assert not ignores_test_failures(obj)


@pytest.mark.parametrize(
    ("test", "remediation", "hooks", "expected"),
    [
        pytest.param({}, {}, None, None, id="disabled"),
        pytest.param({"enable": True}, {}, None, "untested", id="never-tested"),
        pytest.param({"enable": True}, {}, RUNNING, "untested", id="still-running"),
        pytest.param({"enable": True}, {}, PASSED, None, id="passed"),
        pytest.param({"enable": True}, {}, {}, None, id="no-tests"),
        pytest.param({"enable": True}, {}, FAILED, "failed", id="failed"),
        pytest.param({"enable": True, "ignoreFailures": True}, {}, FAILED, None, id="ignored"),
        pytest.param(
            {"enable": True, "ignoreFailures": True},
            {"ignoreTestFailures": False},
            FAILED,
            "failed",
            id="remediation-does-not-ignore",
        ),
    ],
)
def test_untested_state(
    test: dict[str, Any],
    remediation: dict[str, Any],
    hooks: dict[str, dict[str, Any]] | None,
    expected: str | None,
) -> None:
    obj = installed(test, hooks, install={"remediation": remediation})
    cur = obj.status.latest_snapshot
    assert cur is not None

    assert untested_state(obj, cur) == expected


@pytest.mark.parametrize(
    ("test", "remediation", "action", "expected"),
    [
        pytest.param({}, {}, None, False, id="default"),
        pytest.param({"ignoreFailures": True}, {}, None, True, id="test-ignore-no-action"),
        pytest.param({"ignoreFailures": True}, {}, "install", True, id="test-ignore"),
        pytest.param(
            {"ignoreFailures": True},
            {"ignoreTestFailures": False},
            "install",
            False,
            id="remediation-overrides",
        ),
        pytest.param({}, {"ignoreTestFailures": True}, "install", True, id="remediation-ignores"),
    ],
)
def test_ignores_test_failures(
    test: dict[str, Any], remediation: dict[str, Any], action: str | None, expected: bool
) -> None:
    status = {"lastAttemptedReleaseAction": action} if action else {}
    obj = helmrelease({"test": test, "install": {"remediation": remediation}}, **status)

    assert ignores_test_failures(obj) is expected


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        pytest.param({}, ("Remediated", "Released"), id="disabled"),
        pytest.param({"enable": True}, ("Remediated", "TestSuccess", "Released"), id="enabled"),
        pytest.param(
            {"enable": True, "ignoreFailures": True}, ("Remediated", "Released"), id="ignored"
        ),
    ],
)
def test_ready_conditions(test: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert ready_conditions(helmrelease({"test": test})) == expected


def test_awaiting_message() -> None:
    assert awaiting_message(Snapshot.model_validate(latest())) == (
        "Helm release apps/app.v1 with chart podinfo@6.0.0 is awaiting tests"
    )
