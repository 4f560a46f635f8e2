"""The event server's HTTP side over real loopback HTTP: what it answers, and what it queues
for the Alerts (metadata cleaned, duplicates refused)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controllers.events import flux_event
from controllers.httpserver import serve_http
from kustomize.api_v1 import Kustomization
from notification.event_server import EventIntake

KS_GROUP = "kustomize.toolkit.fluxcd.io"


def event(**changes: Any) -> dict[str, Any]:
    """An event as weir's own controllers send it, with ``changes``."""
    ks = Kustomization.model_validate(
        {
            "metadata": {
                "name": "web",
                "namespace": "apps",
                "uid": "u-1",
                "resourceVersion": "7",
            },
            "spec": {
                "interval": "1m",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "app"},
            },
        }
    )
    body = flux_event(
        ks,
        "Warning",
        "BuildFailed",
        "kustomization path not found",
        controller="kustomize-controller",
        instance="kc-1",
        revision="main@sha1:abc",
    )
    return body | changes


class Intake:
    def __init__(self, intake: EventIntake, client: httpx.AsyncClient) -> None:
        self.intake = intake
        self.client = client

    async def post(self, body: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.client.post("/", content=content)


@pytest.fixture
async def intake() -> AsyncIterator[Intake]:
    server = EventIntake(300, queue_size=4)
    async with serve_http("127.0.0.1:0", server.handle, name="test-events") as http:
        host, port = http.addresses[0]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
            yield Intake(server, client)


async def test_an_event_is_accepted_and_queued_with_its_metadata_cleaned(intake: Intake) -> None:
    body = event(
        metadata={
            f"{KS_GROUP}/revision": "main@sha1:abc",
            f"{KS_GROUP}/token": "t-1",
            f"{KS_GROUP}/checksum": "deadbeef",
            "other.example.com/key": "dropped",
            "event.toolkit.fluxcd.io/team": "kept",
        }
    )
    answer = await intake.post(body)
    assert answer.status_code == 202
    assert answer.content == b""
    queued = intake.intake.queue.get_nowait()
    assert queued.metadata == {
        f"{KS_GROUP}/revision": "main@sha1:abc",
        "event.toolkit.fluxcd.io/team": "kept",
    }
    assert queued.go_json() | {"metadata": body["metadata"]} == body


async def test_the_same_event_again_is_a_duplicate(intake: Intake) -> None:
    assert (await intake.post(event())).status_code == 202
    again = await intake.post(
        event(severity="info", reason="Other", timestamp="2030-01-01T00:00:00Z")
    )
    assert again.status_code == 429
    assert again.text == "Too Many Requests\n"
    assert again.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" in again.headers
    new_revision = event(metadata={f"{KS_GROUP}/revision": "main@sha1:def"})
    assert (await intake.post(new_revision)).status_code == 202
    assert (await intake.post(event(message="another failure"))).status_code == 202
    assert intake.intake.queue.qsize() == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(
            event(involvedObject={"kind": "Kustomization", "name": "web"}), id="no-namespace"
        ),
        pytest.param(event(severity="fatal"), id="unknown-severity"),
        pytest.param({k: v for k, v in event().items() if k != "message"}, id="no-message"),
    ],
)
async def test_what_is_not_an_event_is_refused(intake: Intake, body: Any) -> None:
    answer = await intake.post(body)
    assert answer.status_code == 400
    assert intake.intake.queue.empty()


async def test_only_post(intake: Intake) -> None:
    answer = await intake.client.get("/")
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"


async def test_a_trace_event_is_accepted(intake: Intake) -> None:
    # Accepted like any other; the router forwards it nowhere.
    assert (await intake.post(event(severity="trace"))).status_code == 202


async def test_a_full_queue_answers_503_without_taking_the_rate_limit(intake: Intake) -> None:
    for n in range(4):
        assert (await intake.post(event(message=f"failure {n}"))).status_code == 202
    refused = await intake.post(event(message="one too many"))
    assert refused.status_code == 503
    intake.intake.queue.get_nowait()
    # The sender retries a 503: the retry is not taken for a duplicate.
    assert (await intake.post(event(message="one too many"))).status_code == 202


async def test_a_body_over_3_mib_is_refused_before_it_is_read(intake: Intake) -> None:
    answer = await intake.post(event(message="x" * (3 * 1024 * 1024)))
    assert answer.status_code == 413
    assert intake.intake.queue.empty()
