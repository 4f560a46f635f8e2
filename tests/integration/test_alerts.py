"""Acceptance 3 (first half) and 5: events in, alerts out, through a real ``python -m
notification`` and a real loopback HTTP endpoint that records what it is sent.

The filter cases post events straight to the event server (exact and fast); the first test
has a real Kustomization fail under the real source and kustomize controllers. Every "nothing
arrived" is checked after a positive control sent later has arrived.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from controllers.envtest import ControlPlane
from controllers.httpserver import Request, Response, serve_http
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from notification.api_v1beta3 import Alert, Provider
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.harness import is_ready
from tests.integration.kinds import EVENT, GITREPO, KS, git_repository, kustomization
from tests.integration.processes import (
    NotificationProcess,
    notification_controller,
    running_controllers,
)

pytestmark = pytest.mark.integration

ALERT = Alert.info
PROVIDER = Provider.info
KS_GROUP = "kustomize.toolkit.fluxcd.io"
WAIT_SECONDS = 30.0


# A loopback endpoint that records what it is sent


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def message(self) -> str:
        return str(self.event.get("message"))


class Recorder:
    """Every request it gets, in order; ``wait_for`` waits (no polling) until one is there."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.url = ""
        self._arrived = asyncio.Condition()

    async def handle(self, request: Request) -> Response:
        recorded = Recorded(request.method, request.path, dict(request.headers), request.body)
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()
        return Response(200, b"ok")

    def at(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def messages(self, path: str) -> list[str]:
        return [r.message for r in self.at(path)]

    async def wait_for(
        self, predicate: Callable[[list[Recorded]], bool], what: str, logs: Callable[[], str]
    ) -> None:
        """Until ``predicate`` holds for what was recorded; else a failure naming ``what``."""
        try:
            async with asyncio.timeout(WAIT_SECONDS), self._arrived:
                await self._arrived.wait_for(lambda: predicate(self.requests))
        except TimeoutError:
            seen = [(r.path, r.message) for r in self.requests]
            raise AssertionError(
                f"not recorded after {WAIT_SECONDS:.0f}s: {what}\nrecorded: "
                f"{json.dumps(seen, indent=1)}\n{logs()}"
            ) from None


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    endpoint = Recorder()
    async with serve_http("127.0.0.1:0", endpoint.handle, name="alert-recorder") as http:
        host, port = http.addresses[0]
        endpoint.url = f"http://{host}:{port}"
        yield endpoint


# The notification controller alone, for events posted to it directly


@asynccontextmanager
async def notification_process(
    control_plane: ControlPlane, namespace: str, workdir: Path, *flags: str
) -> AsyncIterator[NotificationProcess]:
    process = notification_controller(control_plane, namespace, workdir, *flags)
    try:
        await process.start()
        await wait_listening(process)
        yield process
    finally:
        if process.process is not None:
            code = await process.stop()
            print(process.log_tail())
            assert code == 0


async def wait_listening(process: NotificationProcess) -> None:
    """Until the event server accepts connections (a check of its own, beside /readyz)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                await http.get(process.events_url)
                return
            except httpx.TransportError:
                if loop.time() > deadline:
                    message = f"event server not listening\n{process.log_tail()}"
                    raise AssertionError(message) from None
                await asyncio.sleep(0.1)


class Poster:
    """Posts events to the event server, as the controllers' forwarder does."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace

    def event(
        self,
        message: str,
        *,
        name: str = "web",
        kind: str = "Kustomization",
        severity: str = "info",
        namespace: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        group = KS_GROUP if kind == "Kustomization" else "source.toolkit.fluxcd.io"
        return {
            "involvedObject": {
                "kind": kind,
                "namespace": namespace or self.namespace,
                "name": name,
                "uid": str(uuid.uuid4()),
                "apiVersion": f"{group}/v1",
                "resourceVersion": "1",
            },
            "severity": severity,
            "timestamp": "2026-05-04T03:02:01Z",
            "message": message,
            "reason": "Failed" if severity == "error" else "Succeeded",
            "metadata": metadata or {},
            "reportingController": "test-controller",
            "reportingInstance": "test-1",
        }

    async def post(self, event: dict[str, Any]) -> int:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.post(self.url, json=event)).status_code

    async def send(self, message: str, **fields: Any) -> dict[str, Any]:
        event = self.event(message, **fields)
        status = await self.post(event)
        assert status == 202, f"{message!r}: {status}"
        return event


# Objects


def provider(name: str, namespace: str, address: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": PROVIDER.api_version,
        "kind": PROVIDER.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "generic", "address": address, **spec},
    }


def alert(
    name: str, namespace: str, sources: list[dict[str, Any]], provider: str = "", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": ALERT.api_version,
        "kind": ALERT.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"providerRef": {"name": provider or name}, "eventSources": sources, **spec},
    }


def every(kind: str = "Kustomization", **source: Any) -> list[dict[str, Any]]:
    return [{"kind": kind, "name": "*", **source}]


async def warnings_about(kube: KubeClient, namespace: str, kind: str, name: str) -> list[Any]:
    """The Warning Events recorded about ``kind/name``, as (reason, message)."""
    items = (await kube.list(EVENT, namespace))["items"]
    return [
        (e["reason"], e["message"])
        for e in items
        if e.get("type") == "Warning"
        and (e.get("involvedObject") or {}).get("kind") == kind
        and (e.get("involvedObject") or {}).get("name") == name
    ]


async def wait_for_warning(
    kube: KubeClient,
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    logs: Callable[[], str],
) -> list[Any]:
    """The Warning Events about ``kind/name`` once one has ``reason``, watching Events."""

    def about(event: dict[str, Any]) -> bool:
        involved = event.get("involvedObject") or {}
        return (involved.get("kind"), involved.get("name")) == (kind, name)

    try:
        async with asyncio.timeout(WAIT_SECONDS):
            page = await kube.list(EVENT, namespace)
            if any(about(e) and e["reason"] == reason for e in page["items"]):
                return await warnings_about(kube, namespace, kind, name)
            version = page["metadata"]["resourceVersion"]
            while True:
                async for change in kube.watch(EVENT, version, namespace=namespace):
                    obj = change.object
                    if change.type == "ADDED" and about(obj) and obj["reason"] == reason:
                        return await warnings_about(kube, namespace, kind, name)
    except TimeoutError:
        found = await warnings_about(kube, namespace, kind, name)
        raise AssertionError(
            f"no {reason} Warning on {kind}/{name}; warnings: {found}\n{logs()}"
        ) from None


# Acceptance 3: a failing Kustomization, through the real controllers


async def test_a_failing_kustomization_sends_one_alert_per_distinct_failure(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    recorder: Recorder,
) -> None:
    repo = f"alerts-{namespace}"
    git_repos.create(repo)
    git_repos.commit(repo, {"apps/configmap.yaml": "kind: ConfigMap\n"}, "apps")
    # Before the controllers start: the event server matches nothing before its first list.
    await kube.create(PROVIDER, provider("hook", namespace, f"{recorder.url}/hook"))
    await kube.create(
        ALERT,
        alert(
            "failures",
            namespace,
            every(),
            provider="hook",
            eventSeverity="error",
            summary="weir test cluster",
            eventMetadata={"cluster": "local"},
        ),
    )
    async with running_controllers(
        control_plane, namespace, tmp_path, notification=True
    ) as controllers:
        source = git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"})
        await kube.create(GITREPO, source)
        await controllers.wait_for(kube, GITREPO, namespace, "app", is_ready, "Ready")
        broken = kustomization("broken", namespace, "./missing", retryInterval="1s", interval="1h")
        await kube.create(KS, broken)

        def from_broken(requests: list[Recorded]) -> list[Recorded]:
            return [r for r in requests if r.event["involvedObject"]["name"] == "broken"]

        await recorder.wait_for(
            lambda rs: len(from_broken(rs)) >= 1, "the first failure", controllers.logs
        )
        # It keeps failing the same way: retried every second, and asked to reconcile twice.
        for token in ("again-1", "again-2"):
            patch = {"metadata": {"annotations": {REQUESTED_AT: token}}}
            await kube.patch(KS, namespace, "broken", patch)
            await controllers.wait_for(
                kube, KS, namespace, "broken", handled(token), f"reconciled for {token}"
            )
        # A distinct failure, which is also the positive control for "no more of the first".
        await kube.patch(KS, namespace, "broken", {"spec": {"path": "./missing-too"}})
        await recorder.wait_for(
            lambda rs: any("missing-too" in r.message for r in from_broken(rs)),
            "the second failure",
            controllers.logs,
        )

        alerts = from_broken(recorder.requests)
        assert [r.message for r in alerts] == [
            "kustomization path not found: './missing' is not a directory in the source artifact",
            "kustomization path not found: './missing-too' is not a directory in the source "
            "artifact",
        ]
        live = await kube.get(KS, namespace, "broken")
        first = alerts[0]
        assert (first.method, first.path) == ("POST", "/hook")
        assert first.headers["content-type"] == "application/json"
        assert first.headers["gotk-component"] == "kustomize-controller"
        # The generic body: Flux's event JSON with the Alert's metadata merged in, in Go's order.
        body = first.event
        assert list(body) == [
            "involvedObject",
            "severity",
            "timestamp",
            "message",
            "reason",
            "metadata",
            "reportingController",
            "reportingInstance",
        ]
        involved = body["involvedObject"]
        assert list(involved) == [
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
        ]
        assert (involved["kind"], involved["namespace"], involved["name"]) == (
            "Kustomization",
            namespace,
            "broken",
        )
        assert involved["uid"] == live["metadata"]["uid"]
        assert involved["apiVersion"] == KS.api_version
        assert (body["severity"], body["reason"]) == ("error", "ArtifactFailed")
        metadata = dict(body["metadata"])
        # The revision the Kustomization tried, when its controller sends one.
        source_revision = (await kube.get(GITREPO, namespace, "app"))["status"]["artifact"]
        assert metadata.pop("revision", source_revision["revision"]) == source_revision["revision"]
        assert metadata == {"summary": "weir test cluster", "cluster": "local"}
        assert body["reportingController"] == "kustomize-controller"
        assert body["timestamp"].endswith("Z")


def handled(token: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastHandledReconcileAt") == token

    return check


# Acceptance 5: Alert filters, with events posted straight to the event server

# Which Alert takes which event: the table the test checks, both ways.
FILTER_ALERTS: dict[str, dict[str, Any]] = {
    "infos": {"sources": every()},
    "errors": {"sources": every(), "eventSeverity": "error"},
    "named": {"sources": [{"kind": "Kustomization", "name": "web"}]},
    "included": {"sources": every(), "inclusionList": ["^deploy", "failed"]},
    "excluded": {"sources": every(), "exclusionList": ["ignored$"]},
    "labelled": {"sources": every(matchLabels={"team": "payments"})},
    "gitrepos": {"sources": every("GitRepository")},
    "elsewhere": {"sources": every(namespace="elsewhere")},
    "metadata": {
        "sources": [{"kind": "Kustomization", "name": "web"}],
        "eventMetadata": {"env": "prod", "revision": "from-the-alert"},
        "summary": "prod cluster",
    },
    "suspended": {"sources": every(), "suspend": True},
}
# (message, event fields, the Alerts that take it)
FILTER_EVENTS: list[tuple[str, dict[str, Any], set[str]]] = [
    (
        "deploy web: configured",
        {"metadata": {f"{KS_GROUP}/revision": "main@sha1:1234"}},
        {"infos", "named", "included", "excluded", "labelled", "metadata"},
    ),
    (
        "health check failed for api",
        {"name": "api", "severity": "error"},
        {"infos", "errors", "included", "excluded"},
    ),
    ("progress on api ignored", {"name": "api"}, {"infos"}),
    ("stored artifact", {"name": "app", "kind": "GitRepository"}, {"gitrepos"}),
    ("a trace of web", {"severity": "trace"}, set()),
    ("web elsewhere", {"namespace": "elsewhere"}, {"elsewhere"}),
    ("a kind no Alert names", {"name": "db", "kind": "Bucket"}, set()),
]
# Positive controls, sent after the table's events: together they reach every Alert but the
# suspended one.
CONTROLS: list[tuple[str, dict[str, Any]]] = [
    ("deploy failed: control", {"severity": "error"}),
    ("control", {"name": "app", "kind": "GitRepository"}),
    ("control elsewhere", {"namespace": "elsewhere"}),
]


async def test_alert_filters_decide_what_each_provider_gets(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    # The objects matchLabels reads: web is the payments team's, api is not.
    for name, team in (("web", "payments"), ("api", "search")):
        obj = kustomization(name, namespace, "./", suspend=True)
        obj["metadata"]["labels"] = {"team": team}
        await kube.create(KS, obj)
    for name, spec in FILTER_ALERTS.items():
        await kube.create(PROVIDER, provider(name, namespace, f"{recorder.url}/{name}"))
        fields = {k: v for k, v in spec.items() if k != "sources"}
        await kube.create(ALERT, alert(name, namespace, spec["sources"], **fields))

    async with notification_process(control_plane, namespace, tmp_path) as process:
        poster = Poster(process.events_url, namespace)
        for message, fields, _ in FILTER_EVENTS:
            await poster.send(message, **fields)
        for message, fields in CONTROLS:
            await poster.send(message, **fields)
        expected = {(f"/{a}", message) for message, _, takers in FILTER_EVENTS for a in takers}
        live = [a for a in FILTER_ALERTS if a != "suspended"]

        def controlled(requests: list[Recorded]) -> bool:
            return all(
                any("control" in r.message for r in requests if r.path == f"/{a}") for a in live
            )

        await recorder.wait_for(
            lambda rs: expected <= {(r.path, r.message) for r in rs} and controlled(rs),
            "every expected alert and the controls",
            process.log_tail,
        )
        got = [(r.path, r.message) for r in recorder.requests if "control" not in r.message]
        assert sorted(got) == sorted(expected), "each event exactly where the table says"
        assert recorder.at("/suspended") == []

        web = next(r for r in recorder.at("/metadata") if r.message == "deploy web: configured")
        # The event's own revision wins over the Alert's; the summary under "summary".
        assert web.event["metadata"] == {
            "revision": "main@sha1:1234",
            "env": "prod",
            "summary": "prod cluster",
        }
        plain = next(r for r in recorder.at("/infos") if r.message == "deploy web: configured")
        assert plain.event["metadata"] == {"revision": "main@sha1:1234"}
        # The conflict over 'revision' is reported on the Alert.
        warnings = await wait_for_warning(
            kube, namespace, "Alert", "metadata", "MetadataAppendFailed", process.log_tail
        )
        assert any("revision" in message for _, message in warnings)


async def test_a_duplicate_within_the_interval_is_refused_and_not_sent(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    await kube.create(PROVIDER, provider("hook", namespace, f"{recorder.url}/hook"))
    await kube.create(ALERT, alert("all", namespace, every(), provider="hook"))
    async with notification_process(control_plane, namespace, tmp_path) as process:
        poster = Poster(process.events_url, namespace)
        revision = {f"{KS_GROUP}/revision": "main@sha1:aaaa"}
        first = poster.event("health check failed", severity="error", metadata=revision)
        assert await poster.post(first) == 202
        assert await poster.post(first) == 429
        # Severity, reason and time are not part of the key (as in Flux).
        later = {"severity": "info", "reason": "Other", "timestamp": "2027-01-01T00:00:00Z"}
        assert await poster.post(first | later) == 429
        newer = {f"{KS_GROUP}/revision": "main@sha1:bbbb"}
        assert await poster.post(poster.event("health check failed", metadata=newer)) == 202
        await poster.send("control")
        await recorder.wait_for(
            lambda rs: any(r.message == "control" for r in rs), "the control", process.log_tail
        )
        revisions = [
            r.event["metadata"]["revision"]
            for r in recorder.requests
            if r.message == "health check failed"
        ]
        assert sorted(revisions) == ["main@sha1:aaaa", "main@sha1:bbbb"]


# Invalid Alerts and Providers, and namespace boundaries


async def test_invalid_alerts_and_providers_are_reported_and_send_nothing(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    hook = f"{recorder.url}/hook"
    await kube.create(PROVIDER, provider("hook", namespace, hook))
    # generic-hmac signs with a token: without a Secret, the Provider cannot be used.
    unsigned = provider("unsigned", namespace, f"{recorder.url}/unsigned", type="generic-hmac")
    await kube.create(PROVIDER, unsigned)
    # Alerts are matched in name order: each of these comes before "good", so the good
    # Alert's delivery of an event means their handling of that event is over.
    invalid = [
        alert("a-orphan", namespace, every(), provider="missing"),
        alert("a-badregex", namespace, every(), provider="hook", inclusionList=["(unclosed"]),
        alert("a-backref", namespace, every(), provider="hook", exclusionList=[r"(a)\1"]),
        alert("a-unsigned", namespace, every(), provider="unsigned"),
        alert("a-cross", namespace, every(namespace="elsewhere"), provider="hook"),
    ]
    for obj in [*invalid, alert("good", namespace, every(), provider="hook")]:
        await kube.create(ALERT, obj)

    async with notification_process(
        control_plane, namespace, tmp_path, "--no-cross-namespace-refs"
    ) as process:
        poster = Poster(process.events_url, namespace)
        await poster.send("failure elsewhere", severity="error", namespace="elsewhere")
        await poster.send("first failure", severity="error")
        await recorder.wait_for(
            lambda rs: any(r.message == "first failure" for r in rs),
            "the good Alert's event",
            process.log_tail,
        )
        expected_warnings = [
            ("Alert", "a-orphan", "NotificationDispatchFailed", f"'{namespace}/missing' not found"),
            ("Alert", "a-badregex", "InvalidConfig", "failed to compile inclusion regex"),
            ("Alert", "a-backref", "InvalidConfig", "invalid escape sequence: \\1"),
            ("Provider", "unsigned", "InvalidConfig", "needs a token"),
            ("Alert", "a-unsigned", "NotificationDispatchFailed", "needs a token"),
            ("Alert", "a-cross", "NotificationDispatchFailed", "cross-namespace references"),
        ]
        for kind, name, reason, text in expected_warnings:
            found = await wait_for_warning(kube, namespace, kind, name, reason, process.log_tail)
            assert any(r == reason and text in m for r, m in found), (kind, name, found)

        # The same problem again is not reported again within the interval.
        await poster.send("second failure", severity="error")
        await recorder.wait_for(
            lambda rs: any(r.message == "second failure" for r in rs),
            "the second event",
            process.log_tail,
        )
        assert len(await warnings_about(kube, namespace, "Alert", "a-orphan")) == 1
        assert len(await warnings_about(kube, namespace, "Provider", "unsigned")) == 1
        # Only the good Alert sent anything, and nothing from the other namespace.
        assert [(r.path, r.message) for r in recorder.requests] == [
            ("/hook", "first failure"),
            ("/hook", "second failure"),
        ]
