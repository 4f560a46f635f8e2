"""The runtime's suspended branch against the real API server: the reminder event of an
object that stays suspended (for how long, by whom, why), when the run comes back for the
next one, and the ``weir_suspended_since_timestamp_seconds`` series."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controllers.events import EventRecorder
from controllers.kube import KubeClient
from controllers.metrics import Metrics
from controllers.reconcile import STILL_SUSPENDED, Controller, Outcome
from controllers.suspension import SUSPENDED_AT, SUSPENDED_BY, SUSPENDED_REASON
from tests.integration.kinds import EVENT, GITREPO, git_repository
from tests.integration.probe import Probe

pytestmark = pytest.mark.integration

HOUR = 3600.0
# The runs below take well under this; the requeue delays are checked to this tolerance.
SLACK_SECONDS = 30.0


def controller(kube: KubeClient, metrics: Metrics, interval: float) -> Controller[Any, Any]:
    recorder = EventRecorder(kube, controller="probe-controller", instance="test")
    return Controller(
        Probe(),
        kube,
        name="probe-controller",
        recorder=recorder,
        metrics=metrics,
        suspended_reminder_interval=interval,
    )


async def reminders(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    events = (await kube.list(EVENT, namespace))["items"]
    return [
        event
        for event in events
        if event["involvedObject"]["name"] == name and event["reason"] == STILL_SUSPENDED
    ]


def since_series(metrics: Metrics, namespace: str, name: str) -> str | None:
    labels = f'kind="GitRepository",name="{name}",namespace="{namespace}"'
    prefix = f"weir_suspended_since_timestamp_seconds{{{labels}}} "
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix)
    return None


async def test_a_long_suspension_is_reminded_once_per_interval_with_its_record(
    kube: KubeClient, namespace: str
) -> None:
    at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2, minutes=30)
    manifest = git_repository("paused", namespace, suspend=True)
    manifest["metadata"]["annotations"] = {
        SUSPENDED_BY: "jane",
        SUSPENDED_REASON: "INC-1234: hotfix image",
        SUSPENDED_AT: at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    await kube.create(GITREPO, manifest)
    metrics = Metrics()
    runtime = controller(kube, metrics, HOUR)
    key = f"{namespace}/paused"

    first = await runtime.reconcile(key)
    assert first.outcome is Outcome.SUSPENDED
    # Due again at 3h of suspension: in about 30 minutes.
    assert first.requeue_after is not None
    assert abs(first.requeue_after - HOUR / 2) < SLACK_SECONDS
    (reminder,) = await reminders(kube, namespace, "paused")
    assert reminder["type"] == "Warning"
    message = reminder["message"]
    assert message.startswith("reconciliation suspended for 2h30m"), message
    assert message.endswith(" by jane: INC-1234: hotfix image"), message
    assert float(since_series(metrics, namespace, "paused") or 0) == int(at.timestamp())

    # A run before the next is due (an edit, a restart of the watch) does not remind again.
    second = await runtime.reconcile(key)
    assert second.requeue_after is not None
    assert abs(second.requeue_after - HOUR / 2) < SLACK_SECONDS
    assert len(await reminders(kube, namespace, "paused")) == 1

    # Resumed: reconciled again, and no series says it is suspended.
    await kube.patch(GITREPO, namespace, "paused", {"spec": {"suspend": False}})
    assert (await runtime.reconcile(key)).outcome is Outcome.SUCCEEDED
    assert since_series(metrics, namespace, "paused") is None


async def test_a_new_suspension_is_reminded_after_one_interval(
    kube: KubeClient, namespace: str
) -> None:
    # Suspended otherwise than with weir suspend: no record, counted from when first seen.
    await kube.create(GITREPO, git_repository("plain", namespace, suspend=True))
    metrics = Metrics()
    runtime = controller(kube, metrics, HOUR)

    run = await runtime.reconcile(f"{namespace}/plain")
    assert run.outcome is Outcome.SUSPENDED
    assert run.requeue_after is not None
    assert abs(run.requeue_after - HOUR) < SLACK_SECONDS
    assert await reminders(kube, namespace, "plain") == []
    assert since_series(metrics, namespace, "plain") is not None


async def test_no_reminders_with_a_zero_interval(kube: KubeClient, namespace: str) -> None:
    at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    manifest = git_repository("quiet", namespace, suspend=True)
    manifest["metadata"]["annotations"] = {SUSPENDED_AT: at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    await kube.create(GITREPO, manifest)

    run = await controller(kube, Metrics(), 0).reconcile(f"{namespace}/quiet")
    assert (run.outcome, run.requeue_after) == (Outcome.SUSPENDED, None)
    assert await reminders(kube, namespace, "quiet") == []
