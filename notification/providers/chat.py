"""Chat providers: ``slack``, ``discord``, ``rocket``, ``msteams``, ``googlechat``,
``telegram``, ``matrix`` and ``webex``, each with the payload Flux's notifier sends.

The metadata is listed sorted by key where Flux iterates a Go map (in no set order).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from notification.providers.event import event_json, involved, metadata, object_label
from notification.providers.http import JSON, Outgoing, json_body
from notification.providers.target import Target

__all__ = [
    "TELEGRAM_API",
    "discord",
    "discord_url",
    "googlechat",
    "matrix",
    "msteams",
    "rocket",
    "slack",
    "telegram",
    "telegram_escape",
    "webex",
]

# Flux's Telegram notifier ignores the address: the Bot API is here.
TELEGRAM_API = "https://api.telegram.org"
# The Slack Web API method that answers 200 with {"ok": false} when it refuses a message.
SLACK_POST_MESSAGE = "/api/chat.postMessage"
# Microsoft Teams' deprecated Office 365 connectors: host suffix, and the card they take.
TEAMS_CONNECTOR_HOST = ".webhook.office.com"
ADAPTIVE_CARD_VERSION = "1.4"


def _post(target: Target, payload: Any, *extra: tuple[str, str]) -> Outgoing:
    return Outgoing("POST", target.address, json_body(payload), (JSON, *extra))


def _is_error(event: dict[str, Any]) -> bool:
    return event.get("severity") == "error"


def _fields(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"title": k, "value": v, "short": False} for k, v in metadata(event).items()]


def _slack_payload(
    event: dict[str, Any], *, channel: str, username: str, color: str, fallback: bool
) -> dict[str, Any]:
    """Flux's ``SlackPayload``: one attachment, the metadata as its fields."""
    author = object_label(event)
    message = str(event.get("message", ""))
    first_line = message.split("\n")[0]
    return {
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [
            {
                "fallback": f"{author}: {first_line}" if fallback else "",
                "color": color,
                "author_name": author,
                "text": message,
                "mrkdwn_in": ["text"],
                "fields": _fields(event),
            }
        ],
    }


def _slack_api_check(response: httpx.Response) -> str | None:
    """chat.postMessage answers 200 either way; ``ok`` says whether the message was taken."""
    try:
        answer = response.json()
    except ValueError:
        return "Slack answered with a body that is not JSON"
    if isinstance(answer, dict) and answer.get("ok") is True:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return f"Slack responded with error: {error}"


def slack(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """A Slack message: an incoming webhook, or ``chat.postMessage`` with the token as a
    Bearer token (whose ``{"ok": false}`` answers are failures)."""
    payload = _slack_payload(
        event,
        channel=target.channel,
        username=target.username or str(event.get("reportingController", "")),
        color="danger" if _is_error(event) else "good",
        fallback=True,
    )
    headers = [JSON]
    if target.token:
        headers.append(("Authorization", f"Bearer {target.token}"))
    check = _slack_api_check if urlsplit(target.address).path == SLACK_POST_MESSAGE else None
    return [Outgoing("POST", target.address, json_body(payload), tuple(headers), check=check)]


def discord_url(address: str) -> str:
    """Discord's Slack-compatible endpoint: the webhook URL with ``/slack`` appended."""
    if address.endswith("/slack"):
        return address
    parts = urlsplit(address)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/slack"))


def discord(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """A Slack-formatted message to the webhook's ``/slack`` endpoint (no channel: the
    webhook has one)."""
    payload = _slack_payload(
        event,
        channel="",
        username=target.username or str(event.get("reportingController", "")),
        color="danger" if _is_error(event) else "good",
        fallback=False,
    )
    return [Outgoing("POST", discord_url(target.address), json_body(payload), (JSON,))]


def rocket(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """A Slack-formatted message to a Rocket.Chat incoming webhook."""
    payload = _slack_payload(
        event,
        channel=target.channel,
        username=target.username,
        color="#FF0000" if _is_error(event) else "#0076D7",
        fallback=False,
    )
    return [_post(target, payload)]


def msteams(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """An Adaptive Card (Teams workflows, Power Automate), or a MessageCard for the
    deprecated Office 365 connector URLs (``*.webhook.office.com``)."""
    host = urlsplit(target.address).hostname or ""
    if host.endswith(TEAMS_CONNECTOR_HOST):
        return [_post(target, _teams_message_card(event))]
    return [_post(target, _teams_adaptive_card(event))]


def _teams_message_card(event: dict[str, Any]) -> dict[str, Any]:
    label = object_label(event)
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "FF0000" if _is_error(event) else "0076D7",
        "summary": label,
        "sections": [
            {
                "activityTitle": str(event.get("message", "")),
                "activitySubtitle": label,
                "facts": [{"name": k, "value": v} for k, v in metadata(event).items()],
            }
        ],
    }


def _teams_adaptive_card(event: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "TextBlock", "text": str(event.get("message", ""))}
    if _is_error(event):
        message["color"] = "attention"
    message["wrap"] = True
    # "summary" first, then the rest by key, as Flux orders the facts.
    values = metadata(event)
    facts = [{"title": "summary", "value": values.pop("summary")}] if "summary" in values else []
    facts += [{"title": k, "value": v} for k, v in values.items()]
    fact_set: dict[str, Any] = {"type": "FactSet"}
    if facts:
        fact_set["facts"] = facts
    title = {
        "type": "TextBlock",
        "text": object_label(event),
        "size": "large",
        "weight": "bolder",
        "wrap": True,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": ADAPTIVE_CARD_VERSION,
                    "body": [{"type": "Container", "items": [title, message, fact_set]}],
                    "msteams": {"width": "Full"},
                },
            }
        ],
    }


def googlechat(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """A Google Chat card (cards v1): the object as title, the message, the metadata as
    key-value widgets."""
    text = str(event.get("message", ""))
    if _is_error(event):
        text = f'<font color="#ff0000">{text}</font>'
    sections: list[dict[str, Any]] = [
        {"header": "", "widgets": [{"textParagraph": {"text": text}, "keyValue": None}]}
    ]
    values = metadata(event)
    if values:
        widgets = [
            {
                "textParagraph": None,
                "keyValue": {
                    "topLabel": k,
                    "content": v,
                    "contentMultiline": False,
                    "bottomLabel": None,
                    "icon": None,
                },
            }
            for k, v in values.items()
        ]
        sections.append({"header": "", "widgets": widgets})
    header = {
        "title": object_label(event),
        "subtitle": str(event.get("reportingController", "")),
        "imageUrl": None,
        "imageStyle": None,
    }
    return [_post(target, {"cards": [{"header": header, "sections": sections}]})]


# Characters Telegram's MarkdownV2 wants escaped.
_TELEGRAM_SPECIAL = frozenset("\\.-_[]()~>`#+=|{}!*")


def telegram_escape(text: str) -> str:
    """``text`` with MarkdownV2's special characters escaped."""
    return "".join(f"\\{c}" if c in _TELEGRAM_SPECIAL else c for c in text)


def telegram(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """``sendMessage`` of the Bot API (the address is ignored, as by Flux); the channel is a
    chat ID, ``@channel``, or ``<chat>:<topic>`` for a forum topic."""
    emoji = "🚨" if _is_error(event) else "💫"
    obj = involved(event)
    heading = (
        f"{emoji} {str(obj.get('kind', '')).lower()}/{obj.get('name', '')}/"
        f"{obj.get('namespace', '')}"
    )
    lines = "".join(
        f"\\- *{telegram_escape(k)}*: {telegram_escape(v)}\n" for k, v in metadata(event).items()
    )
    text = f"*{telegram_escape(heading)}*\n{telegram_escape(str(event.get('message', '')))}\n"
    chat, has_topic, topic = target.channel.partition(":")
    payload: dict[str, Any] = {"chat_id": chat}
    if has_topic:
        payload["message_thread_id"] = topic
    payload |= {"text": text + lines, "parse_mode": "MarkdownV2"}
    url = f"{TELEGRAM_API}/bot{quote(target.token, safe=':')}/sendMessage"
    return [Outgoing("POST", url, json_body(payload), (JSON,))]


def matrix(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """An ``m.room.message`` text event PUT to the room (the channel); the transaction ID is
    the SHA-1 of the event, so a resent event is the same message."""
    transaction = hashlib.sha1(event_json(event), usedforsecurity=False).hexdigest()
    room = quote(target.channel, safe="!:")
    url = (
        f"{target.address.rstrip('/')}/_matrix/client/r0/rooms/{room}"
        f"/send/m.room.message/{transaction}"
    )
    emoji = "🚨" if _is_error(event) else "💫"
    lines = "".join(f"- {k}: {v}\n" for k, v in metadata(event).items())
    body = f"{emoji} {object_label(event)}\n{event.get('message', '')}\n{lines}"
    headers = (JSON, ("Authorization", f"Bearer {target.token}"))
    return [Outgoing("PUT", url, json_body({"body": body, "msgtype": "m.text"}), headers)]


def webex(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """A Webex message in markdown to the room (the channel), with the bot's token."""
    emoji = "💣" if _is_error(event) else "✅"
    text = f"{emoji} **{object_label(event)}**\n{event.get('message', '')}\n"
    text += "".join(f">**{k}**: {v}\n" for k, v in metadata(event).items())
    payload = {"roomId": target.channel, "markdown": text} if target.channel else {"markdown": text}
    return [_post(target, payload, ("Authorization", f"Bearer {target.token}"))]
