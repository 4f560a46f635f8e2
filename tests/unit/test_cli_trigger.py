"""``weir trigger receiver`` signs each request as the receiver server validates it: every
type's headers pass ``notification.webhooks.validate`` (the server's own check) with the token
that signed them, and fail with another token."""

from __future__ import annotations

import json

import pytest

from notification.webhooks import validate
from weir.cli.trigger import SIGNERS, _event_for, signed_headers

TOKEN = "s3cr3t-token"
# A body each payload-checking type accepts.
BODIES = {
    "dockerhub": {"push_data": {"tag": "v1"}, "repository": {"repo_url": "https://hub/x"}},
    "quay": {"docker_url": "quay.io/x", "updated_tags": ["v1"]},
    "acr": {"action": "push", "target": {"repository": "x", "tag": "v1"}},
    "nexus": {"action": "CREATED", "repositoryName": "x"},
    "cdevents": {
        "context": {
            "id": "1",
            "source": "ci",
            "type": "dev.cdevents.change.merged.0.2.0",
            "specversion": "0.4.1",
            "timestamp": "2026-01-01T00:00:00Z",
        },
        "subject": {"id": "change-1", "content": {}},
    },
}
# Types whose requests carry nothing the token makes: any token passes.
UNSIGNED = {"generic", "dockerhub", "quay", "acr", "cdevents"}


@pytest.mark.parametrize("receiver_type", list(SIGNERS))
def test_each_type_is_signed_as_the_receiver_server_validates(receiver_type: str) -> None:
    body = json.dumps(BODIES.get(receiver_type, {})).encode()
    event = _event_for(receiver_type, None, ["dev.cdevents.change.merged.0.2.0"])
    headers = signed_headers(receiver_type, TOKEN, body, event)
    lowered = {name.lower(): value for name, value in headers.items()}

    verdict = validate(receiver_type, token=TOKEN, events=[], headers=lowered, body=body)
    forged = validate(receiver_type, token="another", events=[], headers=lowered, body=body)

    assert verdict.accepted, verdict
    assert forged.accepted is (receiver_type in UNSIGNED)
    assert lowered["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("receiver_type", "chosen", "events", "sent"),
    [
        pytest.param("github", None, [], "push", id="github-default"),
        pytest.param("github", None, ["ping", "push"], "push", id="github-not-ping"),
        pytest.param("github", "release", ["push"], "release", id="chosen"),
        pytest.param("gitlab", None, [], "Push Hook", id="gitlab-default"),
        pytest.param("gitlab", None, ["Tag Push Hook"], "Tag Push Hook", id="gitlab-first"),
        pytest.param("bitbucket", None, [], "repo:refs_changed", id="bitbucket-default"),
    ],
)
def test_the_event_sent(
    receiver_type: str, chosen: str | None, events: list[str], sent: str
) -> None:
    assert _event_for(receiver_type, chosen, events) == sent


def test_the_event_reaches_the_servers_filter() -> None:
    """A GitHub Receiver of push events acts on the default event; one of other events only
    acknowledges it."""
    headers = {
        k.lower(): v
        for k, v in signed_headers("github", TOKEN, b"{}", _event_for("github", None, [])).items()
    }
    acting = validate("github", token=TOKEN, events=["push"], headers=headers, body=b"{}")
    ignoring = validate("github", token=TOKEN, events=["release"], headers=headers, body=b"{}")

    assert acting.accepted
    assert not ignoring.accepted
    assert ignoring.status == 200


def test_no_header_holds_the_token_where_the_type_signs() -> None:
    for receiver_type in ("generic-hmac", "github", "bitbucket", "nexus"):
        headers = signed_headers(receiver_type, TOKEN, b"{}", "push")
        assert not [value for value in headers.values() if TOKEN in value], receiver_type
