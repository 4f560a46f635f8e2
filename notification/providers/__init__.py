"""Providers: sending alerts out, to chat tools, incident tools, webhooks and Git hosts'
commit statuses, with the payloads, auth and rules of Flux's notifiers.

Two steps: :func:`resolve_target` combines a Provider with its Secrets into a :class:`Target`
(refusing, with a ``ProviderError``, a Provider that can never send), and :func:`deliver`
sends one event through it (a ``DeliveryError`` when that fails).

Errors:

- ``ProviderError``: from ``resolve_target``; the Provider cannot be used until it or its
  Secrets change (a type weir does not implement, workload identity, an address that is not
  one, a missing token, a malformed Secret key, a ``commitStatusExpr`` that does not compile).
- ``DeliveryError``: from ``deliver``; the endpoint failed after the retries, refused the
  alert, or did not answer within the Provider's timeout; or this event could not be turned
  into a commit status (a revision without a commit SHA, a ``commitStatusExpr`` that fails on
  it).

Neither message holds a token, password, header value, signature, or an address's path or
query (a webhook URL's secret part).

The retry policy is the Target's ``retry`` (Flux's: 4 retries, 2 s doubling to 30 s), which
``dataclasses.replace`` changes, e.g. to keep a test's backoff short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from notification.api_v1beta3 import Alert
from notification.providers import chat, generic, incident
from notification.providers.commitstatus import COMMIT_STATUS_TYPES, plan_status, post_status
from notification.providers.http import Outgoing, Session
from notification.providers.resolve import SUPPORTED_TYPES, resolve_target
from notification.providers.target import (
    FLUX_RETRY,
    DeliveryError,
    ProviderError,
    RetryPolicy,
    Target,
    endpoint_of,
)

__all__ = [
    "FLUX_RETRY",
    "SUPPORTED_TYPES",
    "DeliveryError",
    "ProviderError",
    "RetryPolicy",
    "Target",
    "deliver",
    "requests_for",
    "resolve_target",
]

# The providers whose alert is a fixed list of requests, made from the event alone.
_REQUESTS: dict[str, Callable[[Target, dict[str, Any]], list[Outgoing]]] = {
    "generic": generic.forward,
    "generic-hmac": generic.forward,
    "slack": chat.slack,
    "discord": chat.discord,
    "rocket": chat.rocket,
    "msteams": chat.msteams,
    "googlechat": chat.googlechat,
    "telegram": chat.telegram,
    "matrix": chat.matrix,
    "webex": chat.webex,
    "alertmanager": incident.alertmanager,
    "grafana": incident.grafana,
    "opsgenie": incident.opsgenie,
    "pagerduty": incident.pagerduty,
}


def requests_for(target: Target, event: dict[str, Any]) -> list[Outgoing]:
    """The requests ``deliver`` sends for ``event`` through a non-commit-status target, in
    order (none for an event the type skips)."""
    return _REQUESTS[target.type](target, event)


async def deliver(target: Target, event: dict[str, Any], alert: Alert) -> bool:
    """Send ``event`` (Flux's event JSON, the Alert's metadata merged in) through ``target``,
    retrying as ``target.retry`` says, all within ``target.timeout``; True once sent. False at
    once for an event the type ignores (a commit-status type and an event without a revision;
    a progressing event for PagerDuty, GitHub, GitLab, Bitbucket). Raises ``DeliveryError``."""
    commit_status = target.type in COMMIT_STATUS_TYPES
    update = plan_status(target, event, alert) if commit_status else None
    requests = [] if commit_status else requests_for(target, event)
    if update is None and not requests:
        return False
    where = endpoint_of(requests[0].url) if requests else target.endpoint
    try:
        async with asyncio.timeout(target.timeout), Session(target) as session:
            if update is not None:
                await post_status(session, target, update)
            for request in requests:
                await session.send(request)
    except TimeoutError:
        raise DeliveryError(
            f"sending to {where} did not finish within {target.timeout:g}s"
        ) from None
    return True
