"""notification.providers: the request each alerting type makes for an event, in the shape
Flux's notifier sends (method, URL, auth header, JSON body)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import pytest

from notification.providers import Target, requests_for
from notification.providers.chat import discord_url, telegram_escape
from notification.providers.event import event_json, split_camelcase
from notification.providers.http import Outgoing

UID = "7d0cdc51-ddcf-4743-b223-83ca5c699632"
EVENT: dict[str, Any] = {
    "involvedObject": {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "name": "webapp",
        "namespace": "apps",
        "uid": UID,
        "resourceVersion": "42",
    },
    "severity": "error",
    "timestamp": "2022-10-28T07:26:19Z",
    "message": "Health check failed\nafter 30s",
    "reason": "HealthCheckFailed",
    "metadata": {"revision": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1", "env": "prod"},
    "reportingController": "kustomize-controller",
    "reportingInstance": "kustomize-controller-7c7b47f5f-8bhrp",
}
INFO = EVENT | {
    "severity": "info",
    "reason": "ReconciliationSucceeded",
    "message": "Applied revision",
    "metadata": {"summary": "prod cluster", "revision": "main@sha1:abc"},
}


def target(type_: str, address: str = "https://hooks.example/x", **fields: Any) -> Target:
    return Target(type=type_, provider="apps/alerts", address=address, **fields)


def only(requests: list[Outgoing]) -> Outgoing:
    assert len(requests) == 1
    return requests[0]


SLACK_ERROR_ATTACHMENT = {
    "fallback": "kustomization/webapp.apps: Health check failed",
    "color": "danger",
    "author_name": "kustomization/webapp.apps",
    "text": "Health check failed\nafter 30s",
    "mrkdwn_in": ["text"],
    "fields": [
        {"title": "env", "value": "prod", "short": False},
        {
            "title": "revision",
            "value": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
            "short": False,
        },
    ],
}


@pytest.mark.parametrize(
    ("tgt", "event", "method", "url", "auth", "body"),
    [
        pytest.param(
            target("slack", channel="general"),
            EVENT,
            "POST",
            "https://hooks.example/x",
            None,
            {
                "channel": "general",
                "username": "kustomize-controller",
                "icon_url": "",
                "icon_emoji": "",
                "attachments": [SLACK_ERROR_ATTACHMENT],
            },
            id="slack-webhook",
        ),
        pytest.param(
            target(
                "slack", "https://slack.com/api/chat.postMessage", token="xoxb-1", username="fx"
            ),
            INFO,
            "POST",
            "https://slack.com/api/chat.postMessage",
            "Bearer xoxb-1",
            {
                "channel": "",
                "username": "fx",
                "icon_url": "",
                "icon_emoji": "",
                "attachments": [
                    {
                        "fallback": "kustomization/webapp.apps: Applied revision",
                        "color": "good",
                        "author_name": "kustomization/webapp.apps",
                        "text": "Applied revision",
                        "mrkdwn_in": ["text"],
                        "fields": [
                            {"title": "revision", "value": "main@sha1:abc", "short": False},
                            {"title": "summary", "value": "prod cluster", "short": False},
                        ],
                    }
                ],
            },
            id="slack-token",
        ),
        pytest.param(
            target("discord", "https://discord.com/api/webhooks/1/abc", channel="ignored"),
            EVENT,
            "POST",
            "https://discord.com/api/webhooks/1/abc/slack",
            None,
            {
                "channel": "",
                "username": "kustomize-controller",
                "icon_url": "",
                "icon_emoji": "",
                "attachments": [SLACK_ERROR_ATTACHMENT | {"fallback": ""}],
            },
            id="discord",
        ),
        pytest.param(
            target("rocket", channel="#ops"),
            INFO,
            "POST",
            "https://hooks.example/x",
            None,
            {
                "channel": "#ops",
                "username": "",
                "icon_url": "",
                "icon_emoji": "",
                "attachments": [
                    {
                        "fallback": "",
                        "color": "#0076D7",
                        "author_name": "kustomization/webapp.apps",
                        "text": "Applied revision",
                        "mrkdwn_in": ["text"],
                        "fields": [
                            {"title": "revision", "value": "main@sha1:abc", "short": False},
                            {"title": "summary", "value": "prod cluster", "short": False},
                        ],
                    }
                ],
            },
            id="rocket",
        ),
        pytest.param(
            target("msteams", "https://prod-1.westeurope.logic.azure.com:443/workflows/x?sig=s"),
            EVENT,
            "POST",
            "https://prod-1.westeurope.logic.azure.com:443/workflows/x?sig=s",
            None,
            {
                "type": "message",
                "attachments": [
                    {
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                {
                                    "type": "Container",
                                    "items": [
                                        {
                                            "type": "TextBlock",
                                            "text": "kustomization/webapp.apps",
                                            "size": "large",
                                            "weight": "bolder",
                                            "wrap": True,
                                        },
                                        {
                                            "type": "TextBlock",
                                            "text": "Health check failed\nafter 30s",
                                            "color": "attention",
                                            "wrap": True,
                                        },
                                        {
                                            "type": "FactSet",
                                            "facts": [
                                                {"title": "env", "value": "prod"},
                                                {
                                                    "title": "revision",
                                                    "value": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",  # noqa: E501
                                                },
                                            ],
                                        },
                                    ],
                                }
                            ],
                            "msteams": {"width": "Full"},
                        },
                    }
                ],
            },
            id="msteams-adaptive-card",
        ),
        pytest.param(
            target("msteams", "https://org.webhook.office.com/webhookb2/x"),
            INFO,
            "POST",
            "https://org.webhook.office.com/webhookb2/x",
            None,
            {
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": "0076D7",
                "summary": "kustomization/webapp.apps",
                "sections": [
                    {
                        "activityTitle": "Applied revision",
                        "activitySubtitle": "kustomization/webapp.apps",
                        "facts": [
                            {"name": "revision", "value": "main@sha1:abc"},
                            {"name": "summary", "value": "prod cluster"},
                        ],
                    }
                ],
            },
            id="msteams-legacy-connector",
        ),
        pytest.param(
            target("googlechat"),
            EVENT,
            "POST",
            "https://hooks.example/x",
            None,
            {
                "cards": [
                    {
                        "header": {
                            "title": "kustomization/webapp.apps",
                            "subtitle": "kustomize-controller",
                            "imageUrl": None,
                            "imageStyle": None,
                        },
                        "sections": [
                            {
                                "header": "",
                                "widgets": [
                                    {
                                        "textParagraph": {
                                            "text": '<font color="#ff0000">Health check failed\n'
                                            "after 30s</font>"
                                        },
                                        "keyValue": None,
                                    }
                                ],
                            },
                            {
                                "header": "",
                                "widgets": [
                                    {
                                        "textParagraph": None,
                                        "keyValue": {
                                            "topLabel": key,
                                            "content": value,
                                            "contentMultiline": False,
                                            "bottomLabel": None,
                                            "icon": None,
                                        },
                                    }
                                    for key, value in sorted(EVENT["metadata"].items())
                                ],
                            },
                        ],
                    }
                ],
            },
            id="googlechat",
        ),
        pytest.param(
            target("telegram", address="", channel="-1001:7", token="123:ABC"),
            INFO,
            "POST",
            "https://api.telegram.org/bot123:ABC/sendMessage",
            None,
            {
                "chat_id": "-1001",
                "message_thread_id": "7",
                "text": "*💫 kustomization/webapp/apps*\nApplied revision\n"
                "\\- *revision*: main@sha1:abc\n\\- *summary*: prod cluster\n",
                "parse_mode": "MarkdownV2",
            },
            id="telegram-topic",
        ),
        pytest.param(
            target("webex", "https://webexapis.com/v1/messages", channel="room1", token="bot"),
            INFO,
            "POST",
            "https://webexapis.com/v1/messages",
            "Bearer bot",
            {
                "roomId": "room1",
                "markdown": "✅ **kustomization/webapp.apps**\nApplied revision\n"
                ">**revision**: main@sha1:abc\n>**summary**: prod cluster\n",
            },
            id="webex",
        ),
        pytest.param(
            target("alertmanager", "https://am.example/api/v2/alerts", token="amtoken"),
            INFO,
            "POST",
            "https://am.example/api/v2/alerts",
            "Bearer amtoken",
            [
                {
                    "status": "firing",
                    "labels": {
                        "revision": "main@sha1:abc",
                        "alertname": "FluxKustomizationReconciliationsucceeded",
                        "severity": "info",
                        "reason": "ReconciliationSucceeded",
                        "kind": "Kustomization",
                        "name": "webapp",
                        "namespace": "apps",
                        "reportingcontroller": "kustomize-controller",
                    },
                    "annotations": {"message": "Applied revision", "summary": "prod cluster"},
                    "startsAt": "2022-10-28T07:26:19Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                }
            ],
            id="alertmanager",
        ),
        pytest.param(
            target(
                "grafana", "https://grafana.example/api/annotations", username="u", password="p"
            ),
            EVENT,
            "POST",
            "https://grafana.example/api/annotations",
            "Basic dTpw",
            {
                "when": 1666941979,
                "text": "kustomization/webapp.apps",
                "tags": [
                    "flux",
                    "kustomize-controller",
                    "env: prod",
                    "revision: main@sha1|731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
                    "kind: Kustomization",
                    "name: webapp",
                    "namespace: apps",
                ],
            },
            id="grafana-basic-auth",
        ),
        pytest.param(
            target("opsgenie", "https://api.opsgenie.com/v2/alerts", token="gk", provider_uid="u1"),
            EVENT,
            "POST",
            "https://api.opsgenie.com/v2/alerts",
            "GenieKey gk",
            {
                "message": "Kustomization/webapp",
                "alias": hashlib.sha256(
                    b"u1/Kustomization/apps/webapp/HealthCheckFailed"
                ).hexdigest(),
                "description": "Health check failed\nafter 30s",
                "details": {
                    "env": "prod",
                    "revision": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
                    "severity": "error",
                },
            },
            id="opsgenie",
        ),
        pytest.param(
            target("pagerduty", "https://events.pagerduty.com/ignored/path", channel="rk"),
            EVENT,
            "POST",
            "https://events.pagerduty.com/v2/enqueue",
            None,
            {
                "routing_key": "rk",
                "event_action": "trigger",
                "dedup_key": UID,
                "payload": {
                    "summary": "health check failed: kustomization/webapp",
                    "source": "Flux kustomize-controller",
                    "severity": "error",
                    "timestamp": "2022-10-28T07:26:19Z",
                    "component": "webapp",
                    "group": "Kustomization",
                    "custom_details": {
                        "message": "Health check failed\nafter 30s",
                        "metadata": {
                            "env": "prod",
                            "revision": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
                        },
                    },
                },
            },
            id="pagerduty-trigger",
        ),
    ],
)
def test_the_request_of_each_type(
    tgt: Target,
    event: dict[str, Any],
    method: str,
    url: str,
    auth: str | None,
    body: Any,
) -> None:
    request = only(requests_for(tgt, copy.deepcopy(event)))

    assert (request.method, request.url) == (method, url)
    assert request.header("Authorization") == auth
    assert request.header("Content-Type") == "application/json"
    assert request.json == body
    # Flux's JSON keeps its structs' field order.
    assert list(request.json) == list(body) if isinstance(body, dict) else True


def test_a_matrix_message_is_put_with_a_transaction_id_of_the_event() -> None:
    tgt = target("matrix", "https://matrix.org/", channel="!room:matrix.org", token="syt")

    request = only(requests_for(tgt, INFO))

    transaction = hashlib.sha1(event_json(INFO), usedforsecurity=False).hexdigest()
    assert request.method == "PUT"
    assert request.url == (
        "https://matrix.org/_matrix/client/r0/rooms/!room:matrix.org/send/m.room.message/"
        + transaction
    )
    assert request.header("Authorization") == "Bearer syt"
    assert request.json == {
        "body": "💫 kustomization/webapp.apps\nApplied revision\n"
        "- revision: main@sha1:abc\n- summary: prod cluster\n",
        "msgtype": "m.text",
    }


def test_pagerduty_resolves_and_records_a_change_for_info_and_skips_progressing() -> None:
    tgt = target("pagerduty", "https://events.pagerduty.com", channel="rk")

    resolve, change = requests_for(tgt, INFO)
    progressing = requests_for(tgt, INFO | {"reason": "Progressing"})

    assert (resolve.url, resolve.json) == (
        "https://events.pagerduty.com/v2/enqueue",
        {"routing_key": "rk", "event_action": "resolve", "dedup_key": UID},
    )
    assert change.url == "https://events.pagerduty.com/v2/change/enqueue"
    assert change.json == {
        "routing_key": "rk",
        "payload": {
            "source": "Flux kustomize-controller",
            "summary": "reconciliation succeeded: kustomization/webapp",
            "timestamp": "2022-10-28T07:26:19Z",
            "custom_details": {
                "message": "Applied revision",
                "metadata": {"revision": "main@sha1:abc", "summary": "prod cluster"},
            },
        },
    }
    assert progressing == []


def test_generic_posts_the_event_json_as_flux_marshals_it() -> None:
    tgt = target("generic", headers=(("Authorization", "my-api-token"), ("X-Env", "prod")))
    event = EVENT | {"extra": "dropped", "metadata": {}, "reportingInstance": ""}

    request = only(requests_for(tgt, event))

    assert request.body == (
        b'{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"webapp",'
        b'"uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632",'
        b'"apiVersion":"kustomize.toolkit.fluxcd.io/v1","resourceVersion":"42"},'
        b'"severity":"error","timestamp":"2022-10-28T07:26:19Z",'
        b'"message":"Health check failed\\nafter 30s","reason":"HealthCheckFailed",'
        b'"reportingController":"kustomize-controller"}'
    )
    assert request.headers == (
        ("Content-Type", "application/json"),
        ("Gotk-Component", "kustomize-controller"),
        ("Authorization", "my-api-token"),
        ("X-Env", "prod"),
    )
    assert request.header("X-Signature") is None


def test_generic_hmac_signs_the_body_it_sends_with_the_token() -> None:
    tgt = target("generic-hmac", token="s3cret", headers=(("x-signature", "forged"),))

    request = only(requests_for(tgt, EVENT))

    signature = request.header("X-Signature")
    assert signature is not None
    algorithm, _, digest = signature.partition("=")
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert algorithm == "sha256"
    assert hmac.compare_digest(digest, expected)
    assert json.loads(request.body)["reason"] == "HealthCheckFailed"
    # One X-Signature, the real one: a Secret header of that name is replaced.
    assert [name for name, _ in request.headers].count("X-Signature") == 1
    assert "x-signature" not in [name for name, _ in request.headers]


def test_generic_hmac_signature_changes_with_the_key() -> None:
    first = only(requests_for(target("generic-hmac", token="a"), EVENT)).header("X-Signature")
    second = only(requests_for(target("generic-hmac", token="b"), EVENT)).header("X-Signature")

    assert first != second


def test_slack_checks_the_web_apis_ok_field_only_for_chat_post_message() -> None:
    api = only(requests_for(target("slack", "https://slack.com/api/chat.postMessage"), EVENT))
    hook = only(requests_for(target("slack", "https://hooks.slack.com/services/x"), EVENT))

    assert api.check is not None
    assert hook.check is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("https://discord.com/api/webhooks/1/abc", "https://discord.com/api/webhooks/1/abc/slack"),
        ("https://discord.com/api/webhooks/1/abc/", "https://discord.com/api/webhooks/1/abc/slack"),
        (
            "https://discord.com/api/webhooks/1/abc/slack",
            "https://discord.com/api/webhooks/1/abc/slack",
        ),
        ("https://d.example/h?wait=true", "https://d.example/h/slack?wait=true"),
    ],
)
def test_discord_uses_the_slack_compatible_endpoint(address: str, expected: str) -> None:
    assert discord_url(address) == expected


def test_telegram_escapes_markdown_v2() -> None:
    assert telegram_escape("a_b*c [x](y) 1.2-3 !#+=|{}~>`\\") == (
        "a\\_b\\*c \\[x\\]\\(y\\) 1\\.2\\-3 \\!\\#\\+\\=\\|\\{\\}\\~\\>\\`\\\\"
    )


def test_telegram_without_a_topic_has_no_thread_id() -> None:
    request = only(requests_for(target("telegram", "", channel="@fluxcd", token="1:A"), EVENT))

    assert "message_thread_id" not in request.json
    assert request.json["chat_id"] == "@fluxcd"
    assert request.json["text"].startswith("*🚨 kustomization/webapp/apps*\nHealth check failed\n")


def test_alertmanager_sends_basic_auth_when_both_are_given_and_no_auth_without() -> None:
    with_both = target("alertmanager", token="t", username="u", password="p")
    without = target("alertmanager")

    assert only(requests_for(with_both, EVENT)).header("Authorization") == "Basic dTpw"
    assert only(requests_for(without, EVENT)).header("Authorization") is None


def test_grafana_prefers_the_token() -> None:
    tgt = target("grafana", token="gt", username="u", password="p")

    assert only(requests_for(tgt, EVENT)).header("Authorization") == "Bearer gt"


def test_webex_without_a_room_leaves_it_out() -> None:
    assert "roomId" not in only(requests_for(target("webex", token="t"), EVENT)).json


def test_an_event_without_metadata_has_empty_fields_and_no_fact_list() -> None:
    event = {key: value for key, value in EVENT.items() if key != "metadata"}

    slack = only(requests_for(target("slack"), event)).json
    teams = only(requests_for(target("msteams"), event)).json
    chat = only(requests_for(target("googlechat"), event)).json

    assert slack["attachments"][0]["fields"] == []
    assert teams["attachments"][0]["content"]["body"][0]["items"][2] == {"type": "FactSet"}
    assert len(chat["cards"][0]["sections"]) == 1


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("ReconciliationSucceeded", ["Reconciliation", "Succeeded"]),
        ("HealthCheckFailed", ["Health", "Check", "Failed"]),
        ("PDFLoader", ["PDF", "Loader"]),
        ("ArtifactFailed2", ["Artifact", "Failed", "2"]),
        ("", []),
    ],
)
def test_reasons_split_at_camel_case_as_flux_does(reason: str, words: list[str]) -> None:
    assert split_camelcase(reason) == words


def test_a_target_variant_with_a_short_backoff_sends_the_same_requests() -> None:
    tgt = target("slack")

    assert requests_for(replace(tgt, retry=replace(tgt.retry, min_wait=0.01)), EVENT) == (
        requests_for(tgt, EVENT)
    )
