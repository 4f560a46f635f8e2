"""Validating a webhook request for a Receiver's type, as Flux's receiver server does.

``validate`` is pure: it gets the Receiver's type, its token and ``spec.events``, and the
request's headers and body, and returns a ``Verdict``: accepted (reconcile the resources),
ignored (authentic, but an event the Receiver does not handle: 200 and nothing else) or refused
with the status to answer (401 when the request is not authentic, 400 when its payload is not
what the sender type sends). Every comparison with the token is constant-time. A verdict's
``why`` is a fixed phrase for the log: it never holds a header value, the token or the body.

Where weir answers differently from Flux (which answers 400 for all of these): a bad signature
or token is 401, an event outside ``spec.events`` and GitHub's ``ping`` are 200 with no effect.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCEPTED",
    "HMAC_ALGORITHMS",
    "Verdict",
    "content_type",
    "hmac_signature_valid",
    "validate",
]

# The prefixes go-github's signature check knows (X-Signature, X-Hub-Signature[-256]).
HMAC_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
# An event name is logged (it comes from an authenticated request), cut to this length.
MAX_EVENT_SHOWN = 64


@dataclass(frozen=True)
class Verdict:
    """What to do with a request: ``status`` to answer, whether to reconcile (``accepted``),
    ``why`` (a fixed phrase, for the log) and the ``event`` type the sender named, if any."""

    status: int
    accepted: bool
    why: str
    event: str = ""


ACCEPTED = Verdict(200, True, "accepted")


def _refused(status: int, why: str) -> Verdict:
    return Verdict(status, False, why)


def _ignored(event: str, why: str) -> Verdict:
    return Verdict(200, False, why, _shown(event))


def _shown(event: str) -> str:
    printable = "".join(c if c.isprintable() else "?" for c in event)
    return printable[:MAX_EVENT_SHOWN]


def content_type(headers: Mapping[str, str]) -> str:
    """The media type of ``Content-Type``, lower-case, without parameters; '' if none."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def hmac_signature_valid(signature: str | None, body: bytes, token: str) -> bool:
    """Whether ``signature`` (``<sha1|sha256|sha512>=<hex HMAC of body keyed by token>``) is
    right, as go-github's ValidateSignature checks it; compared in constant time."""
    if not signature:
        return False
    algorithm, sep, digest = signature.partition("=")
    new = HMAC_ALGORITHMS.get(algorithm)
    if not sep or new is None:
        return False
    try:
        given = bytes.fromhex(digest)
    except ValueError:
        return False
    expected = hmac.new(token.encode(), body, new).digest()
    return hmac.compare_digest(expected, given)


def _token_equal(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _event_allowed(event: str, events: Sequence[str]) -> bool:
    """Flux's filter: every event when ``spec.events`` is empty, else a case-insensitive match."""
    return not events or any(event.casefold() == allowed.casefold() for allowed in events)


def _filtered(event: str, events: Sequence[str]) -> Verdict:
    if not _event_allowed(event, events):
        return _ignored(event, "event not in spec.events")
    return Verdict(200, True, "accepted", _shown(event))


# Payload shapes: the fields of the structs Flux decodes each body into. A body must be a JSON
# object whose known fields, when present and not null, have these types (Go's decoder refuses
# a mismatch, and matches names case-insensitively).
Shape = Mapping[str, Any]
_DOCKERHUB: Shape = {"push_data": {"tag": str}, "repository": {"repo_url": str}}
_QUAY: Shape = {"docker_url": str, "updated_tags": [str]}
_ACR: Shape = {"action": str, "target": {"repository": str, "tag": str}}
_NEXUS: Shape = {"action": str, "repositoryName": str}


def _fits(value: Any, shape: Any) -> bool:
    if value is None:
        return True
    if isinstance(shape, Mapping):
        if not isinstance(value, dict):
            return False
        fields = {name.casefold(): inner for name, inner in shape.items()}
        return all(
            _fits(item, fields[key.casefold()])
            for key, item in value.items()
            if key.casefold() in fields
        )
    if isinstance(shape, list):
        return isinstance(value, list) and all(_fits(item, shape[0]) for item in value)
    return isinstance(value, shape)


def _decoded(body: bytes, shape: Shape) -> bool:
    """Whether ``body`` is a JSON object that decodes into ``shape``."""
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and _fits(value, shape)


def _is_cdevent(body: bytes) -> bool:
    """A CDEvent's envelope: ``context`` with its id, source, type (``dev.cdevents.*``),
    spec version and RFC 3339 timestamp, and a ``subject`` with an id."""
    try:
        event = json.loads(body)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    context, subject = event.get("context"), event.get("subject")
    if not isinstance(context, dict) or not isinstance(subject, dict):
        return False
    texts = [context.get(key) for key in ("id", "source", "type", "timestamp")]
    texts.append(context.get("specversion") or context.get("version"))
    texts.append(subject.get("id"))
    if not all(isinstance(text, str) and text for text in texts):
        return False
    if not str(context["type"]).startswith("dev.cdevents."):
        return False
    try:
        datetime.datetime.fromisoformat(str(context["timestamp"]).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _hub_signature(headers: Mapping[str, str]) -> str | None:
    """GitHub's signature header: the SHA-256 one, else the legacy SHA-1 one."""
    return headers.get("x-hub-signature-256") or headers.get("x-hub-signature")


def _github_style(headers: Mapping[str, str], body: bytes, token: str) -> Verdict | None:
    """A refusal for a request that is not signed by the token as GitHub signs (the
    signature first: nothing else is looked at before it), else None."""
    if not hmac_signature_valid(_hub_signature(headers), body, token):
        return _refused(401, "signature mismatch")
    if content_type(headers) not in ("application/json", "application/x-www-form-urlencoded"):
        return _refused(400, "unsupported content type")
    return None


def validate(
    receiver_type: str,
    *,
    token: str,
    events: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
) -> Verdict:
    """The verdict on a request to a Receiver of ``receiver_type`` with ``token``. Types
    validated elsewhere (generic-oidc, with the network) or not at all are refused 400."""
    match receiver_type:
        case "generic":
            return ACCEPTED
        case "generic-hmac":
            if not hmac_signature_valid(headers.get("x-signature"), body, token):
                return _refused(401, "signature mismatch")
            return ACCEPTED
        case "github":
            refusal = _github_style(headers, body, token)
            if refusal is not None:
                return refusal
            event = headers.get("x-github-event", "")
            if event == "ping":
                return _ignored(event, "github ping")
            return _filtered(event, events)
        case "bitbucket":
            refusal = _github_style(headers, body, token)
            if refusal is not None:
                return refusal
            return _filtered(headers.get("x-event-key", ""), events)
        case "gitlab":
            if not _token_equal(headers.get("x-gitlab-token"), token):
                return _refused(401, "token mismatch")
            return _filtered(headers.get("x-gitlab-event", ""), events)
        case "harbor":
            if not _token_equal(headers.get("authorization"), token):
                return _refused(401, "token mismatch")
            return ACCEPTED
        case "nexus":
            signature = headers.get("x-nexus-webhook-signature", "")
            expected = hmac.new(token.encode(), body, hashlib.sha1).hexdigest()
            if not hmac.compare_digest(signature.encode(), expected.encode()):
                return _refused(401, "signature mismatch")
            return ACCEPTED if _decoded(body, _NEXUS) else _refused(400, "payload not nexus")
        case "dockerhub":
            if not _decoded(body, _DOCKERHUB):
                return _refused(400, "payload not dockerhub")
            return ACCEPTED
        case "quay":
            return ACCEPTED if _decoded(body, _QUAY) else _refused(400, "payload not quay")
        case "acr":
            return ACCEPTED if _decoded(body, _ACR) else _refused(400, "payload not acr")
        case "cdevents":
            if not _is_cdevent(body):
                return _refused(400, "payload not a cdevent")
            return _filtered(headers.get("ce-type", ""), events)
    return _refused(400, "receiver type not handled here")
