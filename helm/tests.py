"""What a HelmRelease records about ``helm test``, as Flux's helm-controller records it
(``internal/reconcile/test.go``, ``state.go``, ``release.go``): pure functions over the
HelmRelease, its latest snapshot and the release Helm stored after the tests ran.

The reconciler runs the tests (``HelmClient.test`` with :func:`helm_test_options`), reads the stored
release (the test result's, or ``HelmClient.get`` after a failing test: Helm stores every
hook's last run either way), puts :func:`snapshot_after_tests` in place of the latest snapshot,
and applies :func:`outcome` (condition, event, failure counters). :func:`untested_state`
says when a release is due for tests, or failed by them; :func:`ignores_test_failures` is what
``Previous``/``Truncate`` of the history take.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from helm import history
from helm.api_v2 import HelmRelease, Snapshot, TestFilter, TestHookStatus
from helm.client import HelmTestOptions, Release

__all__ = [
    "AWAITING_TESTS",
    "TEST_FAILED",
    "TEST_SUCCEEDED",
    "TEST_SUCCESS",
    "Outcome",
    "awaiting_message",
    "helm_test_options",
    "ignores_test_failures",
    "mismatch_error",
    "observed_hooks",
    "outcome",
    "ready_conditions",
    "snapshot_after_tests",
    "untested_state",
]

TEST_SUCCESS = "TestSuccess"  # the condition
TEST_SUCCEEDED = "TestSucceeded"
TEST_FAILED = "TestFailed"
AWAITING_TESTS = "AwaitingTests"  # TestSuccess Unknown after a release, until tests ran

_FAILED = "Failed"


def helm_test_options(obj: HelmRelease) -> HelmTestOptions:
    """The Helm test action's options: ``test.timeout`` (else ``spec.timeout``) and the
    filters, included and excluded names."""
    test = obj.test
    filters = test.filters or ()
    return HelmTestOptions(
        timeout=test.timeout_seconds(obj.timeout_seconds),
        filters=tuple(f.name for f in filters if not f.exclude),
        exclude=tuple(f.name for f in filters if f.exclude),
    )


def _selected(name: str, filters: Iterable[TestFilter]) -> bool:
    """Flux's ``isTestHookSelected``: not excluded, and included when any filter includes."""
    includes = included = False
    for f in filters:
        if f.exclude:
            if f.name == name:
                return False  # an exclusion wins wherever it stands
            continue
        includes = True
        included = included or f.name == name
    return included or not includes


def _time(helm_time: str) -> str | None:
    # Helm writes no time for a hook that never ran; Flux's zero time serialises as null.
    return history.kube_time(helm_time) if helm_time else None


def observed_hooks(
    release: Release, filters: Iterable[TestFilter] = ()
) -> dict[str, TestHookStatus]:
    """The release's test hooks that the filters select, by name, with their last run (Flux's
    ``TestHooksFromRelease``); a hook that did not run has no phase or times."""
    chosen = list(filters)
    return {
        hook.name: TestHookStatus(
            last_started=_time(hook.last_run_started),
            last_completed=_time(hook.last_run_completed),
            phase=hook.last_run_phase or None,
        )
        for hook in release.hooks
        if "test" in hook.events and _selected(hook.name, chosen)
    }


def _targets(snapshot: Snapshot, release: Release) -> bool:
    return (snapshot.name, snapshot.namespace, snapshot.version) == (
        release.name,
        release.namespace,
        release.version,
    )


def snapshot_after_tests(obj: HelmRelease, release: Release) -> Snapshot | None:
    """The latest snapshot re-observed from ``release`` with its test hooks, to replace
    ``status.history[0]``; None when ``release`` is not the latest snapshot's (Flux accepts test
    results for the latest release only)."""
    latest = obj.status.latest_snapshot
    if latest is None or not _targets(latest, release):
        return None
    observed = history.snapshot(release, latest.action or "")
    return observed.model_copy(
        update={
            "action": latest.action,
            "oci_digest": latest.oci_digest,
            "test_hooks": observed_hooks(release, obj.test.filters or ()),
        }
    )


def mismatch_error(latest: Snapshot, release: Release) -> str:
    """The error when the tests ran on another release than the latest snapshot's."""
    return (
        f"release mismatch: tested release {release.namespace}/{release.name}.v{release.version}"
        f" != current release {latest.full_release_name}"
    )


def awaiting_message(latest: Snapshot) -> str:
    """TestSuccess's message (Unknown, ``AwaitingTests``) after an install or upgrade made
    ``latest`` with tests enabled."""
    return (
        f"Helm release {latest.full_release_name} with chart {latest.versioned_chart_name} "
        "is awaiting tests"
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one test run records: the TestSuccess condition (the event has the same reason,
    message and type), and which failure counters go up."""

    __test__: ClassVar[bool] = False  # not a pytest class

    status: Literal["True", "False"]
    reason: str
    message: str
    event_type: Literal["Normal", "Warning"]
    count_failure: bool  # status.failures += 1
    count_remediation_failure: bool  # the active remediation's installFailures/upgradeFailures
    retry: bool  # nothing was observed: end the run with the error, to be retried with backoff


def outcome(obj: HelmRelease, latest: Snapshot, error: str | None) -> Outcome:
    """The outcome of a test run: ``latest`` is the latest snapshot after it (from
    :func:`snapshot_after_tests` when the tests' release was the latest; the unchanged one if not),
    ``error`` Helm's error (or :func:`mismatch_error`), None when the tests passed."""
    names = f"release {latest.full_release_name} with chart {latest.versioned_chart_name}"
    if error is None:
        count = len(latest.test_hooks or {})
        done = (
            f"{count} test hook{'s' if count > 1 else ''} completed successfully"
            if count
            else "no test hooks"
        )
        return Outcome(
            status="True",
            reason=TEST_SUCCEEDED,
            message=f"Helm test succeeded for {names}: {done}",
            event_type="Normal",
            count_failure=False,
            count_remediation_failure=False,
            retry=False,
        )
    tested = latest.has_been_tested
    remediation = obj.active_remediation
    return Outcome(
        status="False",
        reason=TEST_FAILED,
        message=f"Helm test failed for {names}: {error.strip()}",
        event_type="Warning",
        count_failure=True,
        count_remediation_failure=tested
        and remediation is not None
        and not remediation.must_ignore_test_failures(bool(obj.test.ignore_failures)),
        retry=not tested,
    )


def ignores_test_failures(obj: HelmRelease) -> bool:
    """Whether failed tests are ignored for the action last attempted: its remediation's
    ``ignoreTestFailures``, else ``test.ignoreFailures``. A snapshot with a failed test is no
    rollback target (``Previous``) and no truncation stop (``Truncate``) unless this holds."""
    default = bool(obj.test.ignore_failures)
    remediation = obj.active_remediation
    return default if remediation is None else remediation.must_ignore_test_failures(default)


def untested_state(obj: HelmRelease, latest: Snapshot) -> Literal["untested", "failed"] | None:
    """For a deployed release otherwise in sync, with tests enabled: ``untested`` (run the
    tests), ``failed`` (a test failed and that counts: remediate as a failed release, Flux's
    "release has test in failed phase"), or None (tests are done with, or disabled)."""
    if not obj.test.enable:
        return None
    if not latest.has_been_tested:
        return "untested"
    remediation = obj.active_remediation
    if (
        remediation is not None
        and not remediation.must_ignore_test_failures(bool(obj.test.ignore_failures))
        and latest.has_test_in_phase(_FAILED)
    ):
        return "failed"
    return None


def ready_conditions(obj: HelmRelease) -> tuple[str, ...]:
    """The conditions Ready is summarised from, by priority: TestSuccess counts only when
    tests are enabled and their failures not ignored (and is deleted when tests are off)."""
    if obj.test.enable and not obj.test.ignore_failures:
        return ("Remediated", TEST_SUCCESS, "Released")
    return ("Remediated", "Released")
