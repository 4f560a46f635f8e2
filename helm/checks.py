"""What the reconciler does with a release that is in sync with its chart and values: run its
tests (``spec.test``), look for drift (``spec.driftDetection``), and unlock one a stopped
action left pending. Each is one Helm action (or none) per run, as the rest of the reconciler.

The rules are Flux's helm-controller's (``internal/reconcile``: ``test.go``,
``correct_cluster_drift.go``, ``unlock.go``); the bookkeeping lives in :mod:`helm.tests` and
:mod:`helm.drift`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from controllers.jsondiff import InvalidRule
from controllers.reconcile import ReconcileError, RunContext, Stalling, Waiting
from controllers.target import TargetCluster
from helm import drift, storage, tests
from helm.api_v2 import HelmRelease, Snapshot
from helm.client import HelmClient, HelmError, Release

__all__ = ["PENDING_RELEASE", "check_drift", "run_tests", "unlock"]

PENDING_RELEASE = "PendingRelease"  # Flux's reason for an unlock, done or failed
DRIFT_DETECTION_FAILED = "DriftDetectionFailed"


async def run_tests(ctx: RunContext[Any], obj: HelmRelease, helm: HelmClient) -> None:
    """``helm test`` on the latest release, its hooks recorded in the latest snapshot;
    ``TestSuccess`` and the failure counters as Flux sets them. A failure that counts ends
    the run with the error (the next run remediates it); one that is ignored does not."""
    latest = obj.status.latest_snapshot
    assert latest is not None
    name, storage_namespace = obj.helm_release_name, obj.storage_namespace
    error: str | None = None
    try:
        release = (
            await helm.test(
                name, storage_namespace=storage_namespace, options=tests.helm_test_options(obj)
            )
        ).release
    except HelmError as err:
        error = str(err)
        try:
            release = await helm.get(name, storage_namespace=storage_namespace)
        except HelmError:
            release = None
    tested = tests.snapshot_after_tests(obj, release) if release is not None else None
    if tested is not None:
        history = list(obj.status.history or ())
        history[0] = tested
        obj.status.history = history
    elif error is None and release is not None:
        error = tests.mismatch_error(latest, release)
    result = tests.outcome(obj, obj.status.latest_snapshot or latest, error)
    ctx.mark(tests.TEST_SUCCESS, result.status, result.reason, result.message)
    status = obj.status
    if result.count_failure:
        status.failures = (status.failures or 0) + 1
    if result.count_remediation_failure:
        if status.last_attempted_release_action == "upgrade":
            status.upgrade_failures = (status.upgrade_failures or 0) + 1
        else:
            status.install_failures = (status.install_failures or 0) + 1
    if result.event_type == "Normal":
        ctx.notify(result.reason, result.message)
        return
    if result.retry or result.count_remediation_failure:
        raise ReconcileError(result.message, reason=result.reason)
    ctx.warn(result.reason, result.message)  # ignored failures: Ready as released


async def check_drift(
    ctx: RunContext[Any], obj: HelmRelease, target: TargetCluster, stored: Release
) -> None:
    """Compare the release's objects with its cluster (``target``, as the release's account);
    report what drifted (``Drifted`` and a Warning event), and with ``mode: enabled`` correct
    it."""
    try:
        ignore = drift.compile_ignore_rules(obj.drift_detection.ignore)
    except InvalidRule as err:
        raise Stalling(f"invalid driftDetection.ignore rule: {err}") from None
    report = await drift.detect(
        target.client,
        target.mapper,
        stored.manifest,
        release_name=stored.name,
        release_namespace=stored.namespace,
        ignore=ignore,
    )
    if not report.has_changes:
        if report.errors:
            raise ReconcileError(report.error_message(), reason=DRIFT_DETECTION_FAILED)
        ctx.mark(drift.DRIFTED, "False", drift.NO_DRIFT_DETECTED, drift.NO_DRIFT_MESSAGE)
        return
    full_name = f"{stored.namespace}/{stored.name}.v{stored.version}"
    message = report.message(full_name)
    ctx.log.info("detected changes in cluster state", drift=report.brief())
    ctx.mark(drift.DRIFTED, "True", drift.DRIFT_DETECTED, message)
    ctx.warn(drift.DRIFT_DETECTED, message)
    if obj.drift_detection.effective_mode != "enabled":
        return
    correction = await drift.correct(target.client, target.mapper, report)
    reason, corrected = correction.event(full_name)
    if correction.errors:
        raise ReconcileError(corrected, reason=reason)
    ctx.notify(reason, corrected)


async def unlock(
    ctx: RunContext[Any],
    obj: HelmRelease,
    target: TargetCluster,
    stored: Release,
    latest: Snapshot | None,
) -> NoReturn:
    """Mark a release left ``pending-*`` (its action was stopped: a process killed, a
    timeout) as failed, as Flux's Unlock does, so that the next run can act on it; the run
    ends here and is requeued. Helm's storage is written on ``target`` (the release's
    cluster, as its account), as Helm would."""
    previous = stored.status
    full_name = f"{stored.namespace}/{stored.name}.v{stored.version}"
    chart = f"{stored.chart_name}@{stored.chart_version}"
    try:
        await storage.mark_failed(
            target.client,
            obj.storage_namespace,
            stored.name,
            stored.version,
            f"Release unlocked from stale '{previous}' state",
        )
    except storage.StorageError as err:
        obj.status.failures = (obj.status.failures or 0) + 1
        message = (
            f"Unlock of Helm release {full_name} with chart {chart} in {previous} state "
            f"failed: {err}"
        )
        ctx.mark("Released", "False", PENDING_RELEASE, message)
        raise ReconcileError(message, reason=PENDING_RELEASE) from None
    if latest is not None and (latest.name, latest.version) == (stored.name, stored.version):
        latest.status = "failed"
    message = f"Unlocked Helm release {full_name} with chart {chart} in {previous} state"
    ctx.mark("Released", "False", PENDING_RELEASE, message)
    # A Waiting: a Normal event, as Flux's, and a requeue with backoff.
    raise Waiting(message, reason=PENDING_RELEASE, requeue_after=0.0)
