"""``generic`` and ``generic-hmac``: the event JSON, POSTed as Flux's forwarder posts it.

Headers, in Flux's order (a later one replaces an earlier one of the same name):
``Content-Type: application/json``, ``Gotk-Component: <reporting controller>``, the Secret's
``headers``, and for ``generic-hmac`` ``X-Signature: sha256=<hex HMAC-SHA256 of the body keyed
by the token>``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from notification.providers.event import event_json
from notification.providers.http import JSON, Outgoing
from notification.providers.target import Target

__all__ = ["COMPONENT_HEADER", "forward", "sign"]

COMPONENT_HEADER = "Gotk-Component"


def sign(body: bytes, key: str) -> str:
    """The ``X-Signature`` value of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def forward(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """The one POST of ``event`` to the target's address."""
    body = event_json(event)
    headers: dict[str, tuple[str, str]] = {}
    pairs = [
        JSON,
        (COMPONENT_HEADER, str(event.get("reportingController", ""))),
        *target.headers,
    ]
    if target.type == "generic-hmac":
        pairs.append(("X-Signature", sign(body, target.token)))
    for name, value in pairs:
        headers[name.lower()] = (name, value)
    return [Outgoing("POST", target.address, body, tuple(headers.values()))]
