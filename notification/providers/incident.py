"""Alerting and incident providers: ``alertmanager``, ``grafana``, ``opsgenie`` and
``pagerduty``, with the payloads Flux's notifiers send."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from notification.providers.event import (
    PROGRESSING,
    involved,
    metadata,
    name_and_description,
    object_label,
    rfc3339,
    timestamp,
)
from notification.providers.http import JSON, Outgoing, basic_auth, json_body
from notification.providers.target import Target

__all__ = ["alertmanager", "grafana", "opsgenie", "opsgenie_alias", "pagerduty"]

# Go's zero time.Time as Flux's AlertManagerTime writes it: Flux always sends an endsAt, and
# Alertmanager reads the zero time as "not set".
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def alertmanager(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """One ``firing`` alert: the metadata and the object as labels, the message (and the
    ``summary`` metadata) as annotations, the event's time as ``startsAt``."""
    obj = involved(event)
    labels = metadata(event)
    annotations = {"message": str(event.get("message", ""))}
    if "summary" in labels:
        annotations["summary"] = labels.pop("summary")
    reason = str(event.get("reason", ""))
    labels |= {
        # Go's cases.Title: the first letter of each word upper-cased, the rest lower-cased.
        "alertname": f"Flux{obj.get('kind', '')}{reason.title()}",
        "severity": str(event.get("severity", "")),
        "reason": reason,
        "kind": str(obj.get("kind", "")),
        "name": str(obj.get("name", "")),
        "namespace": str(obj.get("namespace", "")),
        "reportingcontroller": str(event.get("reportingController", "")),
    }
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(timestamp(event)),
        "endsAt": GO_ZERO_TIME,
    }
    headers = [JSON]
    if target.token:
        headers.append(("Authorization", f"Bearer {target.token}"))
    if target.username and target.password:
        # Flux sets basic auth after the token: with both, basic auth is what is sent.
        headers.append(basic_auth(target.username, target.password))
    return [Outgoing("POST", target.address, json_body([alert]), tuple(headers))]


def grafana(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """A Grafana annotation (graphite format) tagged ``flux``, the reporting controller, the
    metadata as ``key: value`` (``:`` inside either written ``|``) and the object."""
    obj = involved(event)
    tags = ["flux", str(event.get("reportingController", ""))]
    tags += [f"{k.replace(':', '|')}: {v.replace(':', '|')}" for k, v in metadata(event).items()]
    tags += [
        f"kind: {obj.get('kind', '')}",
        f"name: {obj.get('name', '')}",
        f"namespace: {obj.get('namespace', '')}",
    ]
    payload = {
        # Seconds, as Flux sends them.
        "when": int(timestamp(event).timestamp()),
        "text": object_label(event),
        "tags": tags,
    }
    headers = [JSON]
    if target.token:
        headers.append(("Authorization", f"Bearer {target.token}"))
    elif target.username and target.password:
        headers.append(basic_auth(target.username, target.password))
    return [Outgoing("POST", target.address, json_body(payload), tuple(headers))]


def opsgenie_alias(provider_uid: str, event: dict[str, Any]) -> str:
    """The alias Opsgenie deduplicates alerts by: SHA-256 of the Provider's UID, the object
    and the reason, so one cluster's repeated failure is one alert."""
    obj = involved(event)
    key = "/".join(
        str(part)
        for part in (
            provider_uid,
            obj.get("kind", ""),
            obj.get("namespace", ""),
            obj.get("name", ""),
            event.get("reason", ""),
        )
    )
    return hashlib.sha256(key.encode()).hexdigest()


def opsgenie(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """An Opsgenie alert, authenticated with ``GenieKey <token>``."""
    obj = involved(event)
    details = metadata(event) | {"severity": str(event.get("severity", ""))}
    payload = {
        "message": f"{obj.get('kind', '')}/{obj.get('name', '')}",
        "alias": opsgenie_alias(target.provider_uid, event),
        "description": str(event.get("message", "")),
        "details": details,
    }
    headers = (JSON, ("Authorization", f"GenieKey {target.token}"))
    return [Outgoing("POST", target.address, json_body(payload), headers)]


def pagerduty(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """Events API v2 on the address's host, routed by the channel (the integration key): an
    error triggers an incident, anything else resolves it and is also sent as a change
    event. Progressing events are skipped."""
    if event.get("reason") == PROGRESSING:
        return []
    parts = urlsplit(target.address)
    base = f"{parts.scheme}://{parts.netloc}"
    name, description = name_and_description(event)
    summary = f"{description}: {name}"
    source = f"Flux {event.get('reportingController', '')}"
    when = rfc3339(timestamp(event))
    details = {"message": str(event.get("message", "")), "metadata": metadata(event) or None}
    obj = involved(event)
    alert: dict[str, Any] = {"routing_key": target.channel, "event_action": "resolve"}
    if obj.get("uid"):
        alert["dedup_key"] = str(obj["uid"])
    if event.get("severity") == "error":
        alert["event_action"] = "trigger"
        payload = {"summary": summary, "source": source, "severity": "error", "timestamp": when}
        for key, value in (("component", obj.get("name")), ("group", obj.get("kind"))):
            if value:
                payload[key] = str(value)
        alert["payload"] = payload | {"custom_details": details}
    requests = [Outgoing("POST", f"{base}/v2/enqueue", json_body(alert), (JSON,))]
    if event.get("severity") == "info":
        change = {
            "routing_key": target.channel,
            "payload": {
                "source": source,
                "summary": summary,
                "timestamp": when,
                "custom_details": details,
            },
        }
        requests.append(Outgoing("POST", f"{base}/v2/change/enqueue", json_body(change), (JSON,)))
    return requests
