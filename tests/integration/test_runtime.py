"""The controller runtime against the real API server: watch latency, backoff, concurrency,
conditions from two controllers, requestedAt, suspend, probes, metrics and events."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from typing import Any

import httpx
import pytest
from aiohttp import web

from controllers.envtest import ControlPlane, free_port
from controllers.events import EventRecorder
from controllers.informer import Informer
from controllers.kube import ApiError, KubeClient
from controllers.metrics import Metrics
from controllers.patch import StatusPatcher
from controllers.reconcile import REQUESTED_AT, Controller, Outcome
from tests.integration.harness import (
    is_ready,
    options,
    running,
    wait_for_deletion,
    wait_for_object,
)
from tests.integration.kinds import EVENT, GITREPO, git_repository
from tests.integration.probe import ARTIFACT_REVISION, FAIL_TIMES, Probe


async def _status(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return (await kube.get(GITREPO, namespace, name)).get("status") or {}


async def test_change_is_reconciled_within_a_second(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    probe = Probe()
    async with running(options(control_plane, namespace), [probe]):
        await kube.create(GITREPO, git_repository("app", namespace))
        key = f"{namespace}/app"
        await probe.wait_for(lambda: probe.calls_for(key))
        changed_at = time.monotonic()
        updated = await kube.patch(GITREPO, namespace, "app", {"spec": {"interval": "5m"}})
        generation = updated["metadata"]["generation"]
        await probe.wait_for(
            lambda: any(c.generation == generation for c in probe.calls_for(key)), timeout=1.0
        )
        seen = next(c for c in probe.calls_for(key) if c.generation == generation)
        assert seen.at - changed_at < 1.0
    status = await _status(kube, namespace, "app")
    assert status["observedGeneration"] == generation
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "ReconciliationSucceeded")


async def test_failures_back_off_exponentially_and_reset_after_success(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    probe = Probe()
    opts = options(control_plane, namespace, min_retry_delay=0.1, concurrent=8)
    key = f"{namespace}/flaky"
    async with running(opts, [probe]):
        manifest = git_repository("flaky", namespace)
        manifest["metadata"]["annotations"] = {FAIL_TIMES: "4"}
        await kube.create(GITREPO, manifest)
        await probe.wait_for(lambda: len(probe.calls_for(key)) >= 5)
        times = [c.at for c in probe.calls_for(key)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Four failures: retried after 0.1, 0.2, 0.4 and 0.8 s.
        for gap, expected in zip(gaps, (0.1, 0.2, 0.4, 0.8), strict=True):
            assert expected * 0.9 <= gap < expected + 0.5, gaps
        await wait_for_object(kube, GITREPO, namespace, "flaky", is_ready)

        # After the success the backoff starts again from the base delay.
        probe.reset_failures(key)
        before = len(probe.calls_for(key))
        await kube.patch(GITREPO, namespace, "flaky", {"spec": {"interval": "9m"}})
        await probe.wait_for(lambda: len(probe.calls_for(key)) >= before + 5)
        retry_gap = probe.calls_for(key)[before + 1].at - probe.calls_for(key)[before].at
        assert 0.09 <= retry_gap < 0.6


async def test_one_key_is_never_reconciled_by_two_workers(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    probe = Probe(delay=0.05)
    names = [f"repo-{i}" for i in range(6)]
    async with running(options(control_plane, namespace, concurrent=8), [probe]):
        for name in names:
            await kube.create(GITREPO, git_repository(name, namespace))
        await probe.wait_for(lambda: all(probe.calls_for(f"{namespace}/{n}") for n in names))
        # Hammer every object with requests while their reconciles are running.
        for round_ in range(15):
            for name in names:
                annotations = {REQUESTED_AT: f"round-{round_}"}
                await kube.patch(
                    GITREPO, namespace, name, {"metadata": {"annotations": annotations}}
                )
        for name in names:
            await wait_for_object(
                kube,
                GITREPO,
                namespace,
                name,
                lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "round-14",
            )
    assert max(probe.max_overlap.values()) == 1, probe.max_overlap
    assert probe.peak_parallel > 1, "different keys should run in parallel"


async def test_two_controllers_never_drop_each_others_conditions(
    kube: KubeClient, namespace: str
) -> None:
    await kube.create(GITREPO, git_repository("shared", namespace))
    now = "2026-01-01T00:00:00Z"

    def condition(type_: str, status: str, reason: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": reason,
            "lastTransitionTime": now,
            "observedGeneration": 1,
        }

    async def controller(manager: str, owned: tuple[str, ...], rounds: int) -> None:
        for i in range(rounds):
            # Each round starts from a snapshot that the other controller may already have
            # made stale: exactly the race the patch helper must survive.
            snapshot = await kube.get(GITREPO, namespace, "shared")
            await asyncio.sleep(0)
            status = dict(snapshot.get("status") or {})
            status["observedGeneration"] = 1
            status["conditions"] = [
                c for c in status.get("conditions") or [] if c["type"] not in owned
            ] + [condition(t, "True", f"Round{i}") for t in owned]
            patcher = StatusPatcher(
                kube, GITREPO, snapshot, owned_conditions=owned, field_manager=manager
            )
            await patcher.patch(status)

    await asyncio.gather(
        controller("alpha-controller", ("Ready", "ArtifactInStorage"), 12),
        controller("beta-controller", ("Healthy",), 12),
    )
    conditions = {c["type"]: c for c in (await _status(kube, namespace, "shared"))["conditions"]}
    assert set(conditions) == {"Ready", "ArtifactInStorage", "Healthy"}
    assert conditions["Ready"]["reason"] == "Round11"
    assert conditions["Healthy"]["reason"] == "Round11"


async def test_requested_at_suspend_probes_and_metrics(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    probe = Probe()
    opts = options(control_plane, namespace, concurrent=1)
    async with running(opts, [probe]):
        await kube.create(GITREPO, git_repository("asked", namespace))
        await kube.create(GITREPO, git_repository("paused", namespace, suspend=True))
        await kube.create(GITREPO, git_repository("marker", namespace))
        key_asked, key_paused = f"{namespace}/asked", f"{namespace}/paused"
        await probe.wait_for(lambda: probe.calls_for(f"{namespace}/marker"))
        before = len(probe.calls_for(key_asked))

        stamp = "2026-11-22T10:00:00.123456789Z"
        annotations = {REQUESTED_AT: stamp}
        await kube.patch(GITREPO, namespace, "asked", {"metadata": {"annotations": annotations}})
        await probe.wait_for(lambda: len(probe.calls_for(key_asked)) > before)

        # With one worker and a FIFO queue, the suspended object's change is handled before
        # the marker's: once the marker is reconciled again, the probe must not have run.
        await kube.patch(GITREPO, namespace, "paused", {"spec": {"interval": "1m"}})
        marker_calls = len(probe.calls_for(f"{namespace}/marker"))
        await kube.patch(GITREPO, namespace, "marker", {"spec": {"interval": "1m"}})
        await probe.wait_for(lambda: len(probe.calls_for(f"{namespace}/marker")) > marker_calls)
        assert probe.calls_for(key_paused) == []

        assert (await _status(kube, namespace, "asked"))["lastHandledReconcileAt"] == stamp
        assert "conditions" not in await _status(kube, namespace, "paused")

        async with httpx.AsyncClient(timeout=5) as http:
            for path in ("/healthz", "/readyz"):
                answer = await http.get(f"http://{opts.health_addr}{path}")
                assert answer.status_code == 200, path
            metrics = (await http.get(f"http://{opts.metrics_addr}/metrics")).text
        labels = f'kind="GitRepository",name="asked",namespace="{namespace}"'
        assert f"gotk_reconcile_duration_seconds_count{{{labels}}}" in metrics
        ready = f'gotk_reconcile_condition{{{labels},status="True",type="Ready"}} 1.0'
        assert ready in metrics
        paused = f'kind="GitRepository",name="paused",namespace="{namespace}"'
        assert f"gotk_suspend_status{{{paused}}} 1.0" in metrics

        # Deleting the object runs the finalizer and removes its metric series.
        await kube.delete(GITREPO, namespace, "asked")
        await wait_for_deletion(kube, GITREPO, namespace, "asked")
        assert key_asked in probe.finalized
        async with httpx.AsyncClient(timeout=5) as http:
            metrics = (await http.get(f"http://{opts.metrics_addr}/metrics")).text
        assert labels not in metrics


async def test_failure_records_an_event_and_forwards_it(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def events(request: web.Request) -> web.Response:
        await received.put(json.loads(await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    probe = Probe()
    opts = dataclasses.replace(
        options(control_plane, namespace), events_addr=f"http://127.0.0.1:{port}/"
    )
    try:
        async with running(opts, [probe]):
            manifest = git_repository("broken", namespace)
            manifest["metadata"]["annotations"] = {
                FAIL_TIMES: "1",
                ARTIFACT_REVISION: "main@sha1:abc",
            }
            await kube.create(GITREPO, manifest)
            async with asyncio.timeout(15):
                first = await received.get()
                second = await received.get()
    finally:
        await runner.cleanup()
    assert first["severity"] == "error"
    assert first["reason"] == "ProbeFailed"
    assert first["involvedObject"]["kind"] == "GitRepository"
    assert first["involvedObject"]["name"] == "broken"
    assert first["reportingController"] == "probe-controller"
    # The failure names the revision it failed at, so a commit status can fail on it.
    assert first["metadata"] == {"source.toolkit.fluxcd.io/revision": "main@sha1:abc"}
    # The recovery is told once, as info, with the revision and the run's metadata.
    assert (second["severity"], second["reason"]) == ("info", "ReconciliationSucceeded")
    assert second["metadata"] == {
        "source.toolkit.fluxcd.io/revision": "main@sha1:abc",
        "source.toolkit.fluxcd.io/commit_status": "update",
    }
    recorded = (await kube.list(EVENT, namespace))["items"]
    reasons = {
        (e["type"], e["reason"]) for e in recorded if e["involvedObject"]["name"] == "broken"
    }
    assert ("Warning", "ProbeFailed") in reasons


async def test_unprivileged_kubeconfig_is_denied(control_plane: ControlPlane) -> None:
    user = await KubeClient.connect(str(control_plane.user_kubeconfig))
    try:
        with pytest.raises(ApiError) as denied:
            await user.list(GITREPO)
    finally:
        await user.close()
    assert denied.value.status == 403
    assert "weir-user" in denied.value.message


async def test_reconcile_writes_status_fields_and_only_when_something_changed(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    recorder = EventRecorder(kube, controller="probe-controller", instance="test")
    controller = Controller(
        Probe(), kube, name="probe-controller", recorder=recorder, metrics=Metrics()
    )
    manifest = git_repository("direct", namespace)
    manifest["metadata"]["annotations"] = {ARTIFACT_REVISION: "main@sha1:abc"}
    await kube.create(GITREPO, manifest)
    key = f"{namespace}/direct"

    run = await controller.reconcile(key)
    assert run.outcome is Outcome.SUCCEEDED
    first = await kube.get(GITREPO, namespace, "direct")
    assert first["status"]["artifact"]["revision"] == "main@sha1:abc"
    assert run.requeue_after is not None
    assert 570 <= run.requeue_after <= 630  # the 10m interval, ± 5% jitter

    await controller.reconcile(key)
    again = await kube.get(GITREPO, namespace, "direct")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    await kube.patch(
        GITREPO, namespace, "direct", {"metadata": {"annotations": {ARTIFACT_REVISION: None}}}
    )
    await controller.reconcile(key)
    cleared = await kube.get(GITREPO, namespace, "direct")
    assert "artifact" not in cleared["status"]


async def test_a_run_after_the_controllers_own_write_never_starts_from_an_older_copy(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    # Objects are read from the informer's cache, except right after this controller wrote
    # one: until the informer has that write, its copy is older than the last run's result.
    probe = Probe()
    recorder = EventRecorder(kube, controller="probe-controller", instance="test")
    controller = Controller(
        probe, kube, name="probe-controller", recorder=recorder, metrics=Metrics()
    )
    informer = Informer(
        kube, GITREPO, lambda key, old, new: controller.observe(key, new), namespace=namespace
    )
    controller.informers = {GITREPO: informer}
    await kube.create(GITREPO, git_repository("cached", namespace))
    key = f"{namespace}/cached"
    watching = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(10):
            await informer.synced.wait()
    finally:
        watching.cancel()  # the cache stays as it is now: generation 1, no status
        await asyncio.gather(watching, return_exceptions=True)

    assert (await controller.reconcile(key)).outcome is Outcome.SUCCEEDED
    await kube.patch(GITREPO, namespace, "cached", {"spec": {"interval": "7m"}})
    assert (await controller.reconcile(key)).outcome is Outcome.SUCCEEDED
    assert [call.generation for call in probe.calls_for(key)] == [1, 2]
    latest = await kube.get(GITREPO, namespace, "cached")
    assert latest["status"]["observedGeneration"] == 2
