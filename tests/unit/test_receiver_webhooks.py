"""Validating webhook requests per Receiver type: signatures, tokens, events and payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from controllers.httpserver import Headers
from notification.api_v1 import RECEIVER_TYPES
from notification.webhooks import Verdict, content_type, hmac_signature_valid, validate

TOKEN = "s3cr3t-token"
BODY = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
JSON = {"Content-Type": "application/json"}


def sign(body: bytes, token: str = TOKEN, algorithm: str = "sha256") -> str:
    digest = hmac.new(token.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return f"{algorithm}={digest}"


def verdict(
    receiver_type: str,
    headers: dict[str, str],
    body: bytes = BODY,
    events: tuple[str, ...] = (),
) -> Verdict:
    return validate(
        receiver_type,
        token=TOKEN,
        events=list(events),
        headers=Headers(headers.items()),
        body=body,
    )


def outcome(v: Verdict) -> tuple[int, bool]:
    return v.status, v.accepted


ACCEPT = (200, True)
IGNORE = (200, False)
UNAUTHORIZED = (401, False)
BAD = (400, False)

CDEVENT = json.dumps(
    {
        "context": {
            "version": "0.4.1",
            "id": "271069a8-fc18-44f1-b38f-9d70a1695819",
            "source": "/event/source/123",
            "type": "dev.cdevents.change.merged.0.2.0",
            "timestamp": "2023-03-20T14:27:05.315384Z",
        },
        "subject": {"id": "mySubject123", "source": "/event/source/123", "content": {}},
    }
).encode()


@pytest.mark.parametrize(
    ("receiver_type", "headers", "body", "events", "expected"),
    [
        pytest.param("generic", {}, b"", (), ACCEPT, id="generic-anything"),
        pytest.param(
            "generic-hmac", {"X-Signature": sign(BODY)}, BODY, (), ACCEPT, id="hmac-sha256"
        ),
        pytest.param(
            "generic-hmac",
            {"X-Signature": sign(BODY, algorithm="sha1")},
            BODY,
            (),
            ACCEPT,
            id="hmac-sha1",
        ),
        pytest.param(
            "generic-hmac",
            {"X-Signature": sign(BODY, algorithm="sha512")},
            BODY,
            (),
            ACCEPT,
            id="hmac-sha512",
        ),
        pytest.param(
            "generic-hmac",
            {"X-Signature": sign(BODY, algorithm="md5")},
            BODY,
            (),
            UNAUTHORIZED,
            id="hmac-unknown-algorithm",
        ),
        pytest.param(
            "generic-hmac",
            {"X-Signature": sign(BODY, token="other")},
            BODY,
            (),
            UNAUTHORIZED,
            id="hmac-other-key",
        ),
        pytest.param(
            "generic-hmac",
            {"X-Signature": sign(BODY)},
            BODY + b" ",
            (),
            UNAUTHORIZED,
            id="hmac-body-changed",
        ),
        pytest.param("generic-hmac", {}, BODY, (), UNAUTHORIZED, id="hmac-missing"),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature-256": sign(BODY), "X-GitHub-Event": "push"},
            BODY,
            (),
            ACCEPT,
            id="github-push",
        ),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature": sign(BODY, algorithm="sha1"), "X-GitHub-Event": "push"},
            BODY,
            ("push",),
            ACCEPT,
            id="github-legacy-sha1",
        ),
        pytest.param(
            "github",
            {
                **JSON,
                "X-Hub-Signature-256": sign(BODY, token="forged"),
                "X-Hub-Signature": sign(BODY, algorithm="sha1"),
                "X-GitHub-Event": "push",
            },
            BODY,
            (),
            UNAUTHORIZED,
            id="github-sha256-wins-over-sha1",
        ),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature-256": sign(BODY, token="forged"), "X-GitHub-Event": "push"},
            BODY,
            (),
            UNAUTHORIZED,
            id="github-forged",
        ),
        pytest.param(
            "github",
            {**JSON, "X-GitHub-Event": "push"},
            BODY,
            (),
            UNAUTHORIZED,
            id="github-unsigned",
        ),
        pytest.param(
            "github",
            {"Content-Type": "text/plain", "X-Hub-Signature-256": sign(BODY)},
            BODY,
            (),
            BAD,
            id="github-content-type",
        ),
        pytest.param(
            "github",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Hub-Signature-256": sign(b"payload=%7B%7D"),
                "X-GitHub-Event": "push",
            },
            b"payload=%7B%7D",
            (),
            ACCEPT,
            id="github-form",
        ),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature-256": sign(BODY), "X-GitHub-Event": "Push"},
            BODY,
            ("push",),
            ACCEPT,
            id="github-event-case-insensitive",
        ),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature-256": sign(BODY), "X-GitHub-Event": "issues"},
            BODY,
            ("push",),
            IGNORE,
            id="github-event-filtered",
        ),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature-256": sign(BODY), "X-GitHub-Event": "ping"},
            BODY,
            (),
            IGNORE,
            id="github-ping",
        ),
        pytest.param(
            "github",
            {**JSON, "X-Hub-Signature-256": sign(BODY, token="x"), "X-GitHub-Event": "ping"},
            BODY,
            (),
            UNAUTHORIZED,
            id="github-forged-ping",
        ),
        pytest.param(
            "gitlab",
            {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"},
            BODY,
            ("Push Hook",),
            ACCEPT,
            id="gitlab-push",
        ),
        pytest.param(
            "gitlab",
            {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Tag Push Hook"},
            BODY,
            ("Push Hook",),
            IGNORE,
            id="gitlab-event-filtered",
        ),
        pytest.param(
            "gitlab",
            {"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook"},
            BODY,
            (),
            UNAUTHORIZED,
            id="gitlab-wrong-token",
        ),
        pytest.param("gitlab", {}, BODY, (), UNAUTHORIZED, id="gitlab-no-token"),
        pytest.param(
            "bitbucket",
            {**JSON, "X-Hub-Signature": sign(BODY), "X-Event-Key": "repo:refs_changed"},
            BODY,
            ("repo:refs_changed",),
            ACCEPT,
            id="bitbucket-push",
        ),
        pytest.param(
            "bitbucket",
            {**JSON, "X-Hub-Signature": sign(BODY), "X-Event-Key": "pr:opened"},
            BODY,
            ("repo:refs_changed",),
            IGNORE,
            id="bitbucket-event-filtered",
        ),
        pytest.param(
            "bitbucket",
            {**JSON, "X-Hub-Signature": sign(BODY, token="x"), "X-Event-Key": "repo:refs_changed"},
            BODY,
            (),
            UNAUTHORIZED,
            id="bitbucket-forged",
        ),
        pytest.param("harbor", {"Authorization": TOKEN}, BODY, (), ACCEPT, id="harbor"),
        pytest.param(
            "harbor",
            {"Authorization": f"Bearer {TOKEN}"},
            BODY,
            (),
            UNAUTHORIZED,
            id="harbor-wrong",
        ),
        pytest.param("harbor", {}, BODY, (), UNAUTHORIZED, id="harbor-missing"),
        pytest.param(
            "nexus",
            {"X-Nexus-Webhook-Signature": hmac.new(TOKEN.encode(), BODY, "sha1").hexdigest()},
            BODY,
            (),
            ACCEPT,
            id="nexus",
        ),
        pytest.param(
            "nexus",
            {"X-Nexus-Webhook-Signature": hmac.new(b"x", BODY, "sha1").hexdigest()},
            BODY,
            (),
            UNAUTHORIZED,
            id="nexus-forged",
        ),
        pytest.param("nexus", {}, BODY, (), UNAUTHORIZED, id="nexus-missing"),
        pytest.param(
            "nexus",
            {"X-Nexus-Webhook-Signature": hmac.new(TOKEN.encode(), b"[1]", "sha1").hexdigest()},
            b"[1]",
            (),
            BAD,
            id="nexus-not-an-object",
        ),
        pytest.param(
            "dockerhub",
            {},
            json.dumps(
                {"push_data": {"tag": "v1"}, "repository": {"repo_url": "https://hub/r"}}
            ).encode(),
            (),
            ACCEPT,
            id="dockerhub",
        ),
        pytest.param(
            "dockerhub",
            {},
            json.dumps({"push_data": {"tag": 1}}).encode(),
            (),
            BAD,
            id="dockerhub-tag-not-text",
        ),
        pytest.param("dockerhub", {}, b"not json", (), BAD, id="dockerhub-not-json"),
        pytest.param(
            "quay",
            {},
            json.dumps({"docker_url": "quay.io/r", "updated_tags": ["v1"]}).encode(),
            (),
            ACCEPT,
            id="quay",
        ),
        pytest.param(
            "quay",
            {},
            json.dumps({"Updated_Tags": [1]}).encode(),
            (),
            BAD,
            id="quay-field-names-case-insensitive",
        ),
        pytest.param(
            "acr",
            {},
            json.dumps({"action": "push", "target": {"repository": "r", "tag": "v1"}}).encode(),
            (),
            ACCEPT,
            id="acr",
        ),
        pytest.param(
            "acr",
            {},
            json.dumps({"target": "r"}).encode(),
            (),
            BAD,
            id="acr-target-not-object",
        ),
        pytest.param(
            "cdevents",
            {"Ce-Type": "cd.change.merged.v1"},
            CDEVENT,
            ("cd.change.merged.v1",),
            ACCEPT,
            id="cdevents",
        ),
        pytest.param(
            "cdevents",
            {"Ce-Type": "cd.change.merged.v1"},
            CDEVENT,
            ("cd.environment.modified.v1",),
            IGNORE,
            id="cdevents-event-filtered",
        ),
        pytest.param(
            "cdevents",
            {"Ce-Type": "cd.change.merged.v1"},
            json.dumps({"context": {"type": "x"}}).encode(),
            (),
            BAD,
            id="cdevents-not-a-cdevent",
        ),
        pytest.param("gcr", {}, BODY, (), BAD, id="gcr-never-here"),
        pytest.param("generic-oidc", {}, BODY, (), BAD, id="oidc-never-here"),
    ],
)
def test_validate(
    receiver_type: str,
    headers: dict[str, str],
    body: bytes,
    events: tuple[str, ...],
    expected: tuple[int, bool],
) -> None:
    assert outcome(verdict(receiver_type, headers, body, events)) == expected


def test_every_type_the_api_allows_has_a_verdict() -> None:
    """A type the CRD accepts either validates here or is refused (gcr, generic-oidc are
    refused by the reconciler and validated by the server elsewhere)."""
    for receiver_type in RECEIVER_TYPES:
        assert verdict(receiver_type, {}).status in (200, 400, 401)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s.upper().replace("SHA256", "sha256"), id="upper-hex"),
        pytest.param(lambda s: s[:-2], id="truncated"),
        pytest.param(lambda s: s + "00", id="extended"),
        pytest.param(lambda s: s.replace("=", ""), id="no-separator"),
        pytest.param(lambda s: s.replace("sha256=", "sha256=zz"), id="not-hex"),
        pytest.param(lambda s: "", id="empty"),
    ],
)
def test_hmac_signature_mutations(mutate: Callable[[str], str]) -> None:
    good = sign(BODY)
    assert hmac_signature_valid(good, BODY, TOKEN)
    mutated = mutate(good)
    # Go's hex decoding accepts upper case too: the same bytes, the same MAC.
    expected = mutated.lower() == good
    assert hmac_signature_valid(mutated, BODY, TOKEN) is expected


def test_verdicts_never_carry_request_values() -> None:
    """What a verdict says is logged: never the token, a signature or the body."""
    signature = sign(BODY, token="forged")
    headers = {**JSON, "X-Hub-Signature-256": signature, "X-GitHub-Event": "push"}
    seen: list[Any] = []
    for receiver_type in RECEIVER_TYPES:
        v = verdict(receiver_type, headers)
        seen += [v.why, v.event]
    text = repr(seen)
    assert TOKEN not in text
    assert signature.split("=")[1] not in text
    assert "refs/heads" not in text


def test_event_names_are_cut_and_printable() -> None:
    event = "push\x1b[31m" + "x" * 500
    v = verdict("gitlab", {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": event}, events=("push hook",))
    assert (v.status, v.accepted) == IGNORE
    assert v.event.isprintable()
    assert len(v.event) == 64


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", "application/json"),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("", ""),
    ],
    ids=["plain", "parameters-and-case", "missing"],
)
def test_content_type(header: str, expected: str) -> None:
    headers = Headers([("Content-Type", header)] if header else [])
    assert content_type(headers) == expected
