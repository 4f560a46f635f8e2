"""Events in, and which Alerts take them: Flux's event model and its matching rules.

Pure functions over the event and the Alert, as Flux's notification-controller applies them
(``internal/server/event_server.go``, ``event_handlers.go``): the metadata kept from an
event, the key that makes two events duplicates, which Alerts select an event (severity,
event sources, ``matchLabels``, inclusion and exclusion lists) and the metadata an Alert
adds to what it sends. The event server does the I/O around them.

Inclusion and exclusion lists are Go RE2 expressions, and are compiled by RE2 itself
(``google-re2``): the same syntax Flux accepts, and matching in linear time, so an Alert
cannot stall the event loop with a pattern that backtracks.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator

from controllers import goregexp
from controllers.api import KubeModel, parse_time
from notification.api_v1beta3 import Alert

__all__ = [
    "COMMIT_STATUS_TYPES",
    "EVENT_GROUP",
    "DuplicateFilter",
    "FluxEvent",
    "InvalidAlert",
    "InvolvedObject",
    "MessageFilter",
    "Selection",
    "clean_metadata",
    "combined_metadata",
    "duplicate_key",
    "message_filter",
    "notification",
    "provider_skips",
    "select",
    "without_internal_metadata",
]

# The Event API's own group: metadata keys under it come from the object's annotations.
EVENT_GROUP = "event.toolkit.fluxcd.io"
MAX_MESSAGE = 39_000
SUMMARY_KEY = "summary"

# Provider types that set commit statuses, and those that comment on change requests
# (Flux's isCommitStatusProvider, isChangeRequestProvider).
COMMIT_STATUS_TYPES = frozenset(
    {"github", "gitlab", "gitea", "bitbucketserver", "bitbucket", "azuredevops"}
)
CHANGE_REQUEST_TYPES = frozenset(
    {"githubpullrequestcomment", "gitlabmergerequestcomment", "giteapullrequestcomment"}
)
GENERIC_TYPES = frozenset({"generic", "generic-hmac"})

# Where each metadata key of a notification came from, lowest precedence first (Flux RFC 0008).
FROM_ANNOTATIONS = "involved object annotations"
FROM_EVENT_METADATA = "Alert object .spec.eventMetadata"
FROM_SUMMARY = "Alert object .spec.summary"
FROM_CONTROLLER = "involved object controller metadata"


class InvolvedObject(KubeModel):
    """The object an event is about (corev1.ObjectReference)."""

    kind: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None

    @property
    def group(self) -> str:
        """The API group of ``apiVersion`` (``""`` for the core group or none given)."""
        return (self.api_version or "").rpartition("/")[0]

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


class FluxEvent(KubeModel):
    """An event as Flux controllers POST it (``fluxcd/pkg/apis/event/v1beta1``)."""

    involved_object: InvolvedObject
    severity: Literal["trace", "info", "error"]
    timestamp: str
    message: str = Field(max_length=MAX_MESSAGE)
    reason: str
    metadata: dict[str, str] | None = None
    reporting_controller: str = ""
    reporting_instance: str = ""

    @field_validator("timestamp")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        # As Go parses a metav1.Time and writes it back: UTC, to the second.
        parsed = parse_time(value)
        if parsed is None:
            raise ValueError("not an RFC 3339 time")
        return parsed.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def go_json(self) -> dict[str, Any]:
        """The event as Go's encoding/json writes eventv1.Event: fields in Go's order, empty
        optional ones left out. This is the body the generic providers send."""
        involved = self.involved_object
        reference = {
            "kind": involved.kind,
            "namespace": involved.namespace,
            "name": involved.name,
            "uid": involved.uid,
            "apiVersion": involved.api_version,
            "resourceVersion": involved.resource_version,
            "fieldPath": involved.field_path,
        }
        body: dict[str, Any] = {
            "involvedObject": {key: value for key, value in reference.items() if value},
            "severity": self.severity,
            "timestamp": self.timestamp,
            "message": self.message,
            "reason": self.reason,
        }
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        body["reportingController"] = self.reporting_controller
        if self.reporting_instance:
            body["reportingInstance"] = self.reporting_instance
        return body


# What the event server does with an event before any Alert sees it.


def clean_metadata(event: FluxEvent) -> FluxEvent:
    """``event`` with only the metadata alerting uses (Flux's cleanupMetadata): keys under the
    Event API group or the involved object's group, without the object's checksum and digest."""
    object_prefix = f"{event.involved_object.group}/"
    dropped = {f"{object_prefix}checksum", f"{object_prefix}digest"}
    kept = {
        key: value
        for key, value in (event.metadata or {}).items()
        if key.lower() not in dropped
        and (key.startswith(f"{EVENT_GROUP}/") or key.startswith(object_prefix))
    }
    return event.model_copy(update={"metadata": kept})


def duplicate_key(event: FluxEvent) -> str:
    """The key under which events are duplicates of each other (Flux's eventKeyFunc): the
    involved object, the message, and the revision, origin revision and token metadata the
    object's controller set. Severity and reason are not part of it, as in Flux."""
    involved = event.involved_object
    parts = [
        "event",
        f"name={involved.name}",
        f"namespace={involved.namespace}",
        f"kind={involved.kind}",
        f"message={event.message}",
    ]
    metadata = event.metadata or {}
    for key in ("originRevision", "revision", "token"):
        value = metadata.get(f"{involved.group}/{key}")
        if value is not None:
            parts.append(f"{key}={value}")
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def without_internal_metadata(event: FluxEvent) -> FluxEvent:
    """``event`` without the token its controller set for duplicate detection only."""
    metadata = dict(event.metadata or {})
    metadata.pop(f"{event.involved_object.group}/token", None)
    return event.model_copy(update={"metadata": metadata})


class DuplicateFilter:
    """Admits a key at most once per ``interval`` seconds (Flux's rate limiter, one token per
    key and interval). Keys older than the interval are forgotten, and at most ``max_keys``
    are kept (the oldest go first), so a flood of distinct keys cannot grow it without end."""

    def __init__(
        self,
        interval: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._max_keys = max_keys
        self._clock = clock
        # key -> when it was admitted; insertion order is admission order.
        self._admitted: dict[str, float] = {}

    def admit(self, key: str) -> bool:
        """True if ``key`` was not admitted within the interval (and admit it now)."""
        now = self._clock()
        self._forget_before(now - self.interval)
        if key in self._admitted:
            return False
        self._admitted[key] = now
        if len(self._admitted) > self._max_keys:
            del self._admitted[next(iter(self._admitted))]
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` is admitted again (0 if it would be now)."""
        admitted = self._admitted.get(key)
        if admitted is None:
            return 0.0
        return max(0.0, admitted + self.interval - self._clock())

    def _forget_before(self, oldest: float) -> None:
        while self._admitted:
            key, admitted = next(iter(self._admitted.items()))
            if admitted > oldest:
                return
            del self._admitted[key]


# Which Alerts select an event.


class InvalidAlert(Exception):
    """An Alert that cannot be applied (a message filter that does not compile); the message
    says what is wrong, and is safe to show."""

    def __init__(self, message: str, *, reason: str = "InvalidConfig") -> None:
        super().__init__(message)
        self.reason = reason


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


def compile_pattern(pattern: str) -> Pattern:
    """``pattern`` compiled by RE2 (``controllers.goregexp``); ``ValueError`` with RE2's
    reason if it does not compile."""
    compiled: Pattern = goregexp.compile_pattern(pattern)
    return compiled


@dataclass(frozen=True)
class MessageFilter:
    """An Alert's inclusion and exclusion lists, compiled."""

    include: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()

    def allows(self, message: str) -> bool:
        """Whether a message passes: it matches one inclusion pattern (when there are any)
        and no exclusion pattern."""
        if self.include and not any(p.search(message) for p in self.include):
            return False
        return not any(p.search(message) for p in self.exclude)


def message_filter(alert: Alert) -> MessageFilter:
    """``alert``'s message filter; ``InvalidAlert`` naming the first pattern that does not
    compile. (Flux skips such a pattern, which lets through what a broken exclusion meant to
    stop; weir sends nothing through the Alert until it is fixed.)"""

    def compiled(patterns: list[str] | None, which: str) -> tuple[Pattern, ...]:
        result = []
        for pattern in patterns or ():
            try:
                result.append(compile_pattern(pattern))
            except ValueError as err:
                raise InvalidAlert(f"failed to compile {which} regex '{pattern}': {err}") from None
        return tuple(result)

    spec = alert.spec
    return MessageFilter(
        compiled(spec.inclusion_list, "inclusion"), compiled(spec.exclusion_list, "exclusion")
    )


class Selection(enum.Enum):
    """Whether an Alert selects an event."""

    NO = "no"
    YES = "yes"
    # Only a source with matchLabels could select it: the object's labels decide.
    NEEDS_LABELS = "needs labels"


def select(alert: Alert, event: FluxEvent, labels: Mapping[str, str] | None = None) -> Selection:
    """Whether one of ``alert``'s event sources selects ``event``, as Flux's
    eventMatchesAlertSource: the same kind, the same namespace (the Alert's when the source
    names none; there is no wildcard), the same name or ``*``, and the severity (an ``info``
    Alert takes every event, an ``error`` one only errors). A source with ``matchLabels``
    also needs the object's ``labels``; without them the answer is ``NEEDS_LABELS`` unless
    another source selects the event. Suspension, message filters and namespace boundaries
    are checked elsewhere."""
    if alert.spec.event_severity != "info" and event.severity != alert.spec.event_severity:
        return Selection.NO
    involved = event.involved_object
    needs_labels = False
    for source in alert.spec.event_sources:
        namespace = source.namespace or alert.metadata.namespace
        if (source.kind, namespace) != (involved.kind, involved.namespace):
            continue
        if source.name not in ("*", involved.name):
            continue
        if source.match_labels is None:
            return Selection.YES
        if labels is None:
            needs_labels = True
        elif all(labels.get(key) == value for key, value in source.match_labels.items()):
            return Selection.YES
    return Selection.NEEDS_LABELS if needs_labels else Selection.NO


# What an Alert sends.


def combined_metadata(
    event: FluxEvent, alert: Alert
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The metadata of the notification ``alert`` sends for ``event``, and the keys set by
    more than one source (with those sources). Lowest precedence first, as Flux's
    combineEventMetadata (RFC 0008): the object's annotations (``event.toolkit.fluxcd.io/``
    keys), the Alert's ``eventMetadata``, its ``summary`` (key ``summary``), then what the
    object's controller set (keys under the object's group); prefixes are stripped."""
    metadata: dict[str, str] = {}
    sources: dict[str, list[str]] = {}

    def put(key: str, value: str, source: str) -> None:
        metadata[key] = value
        sources.setdefault(key, []).append(source)

    event_prefix = f"{EVENT_GROUP}/"
    object_prefix = f"{event.involved_object.group}/"
    for key, value in (event.metadata or {}).items():
        if key.startswith(event_prefix):
            put(key.removeprefix(event_prefix), value, FROM_ANNOTATIONS)
    for key, value in (alert.spec.event_metadata or {}).items():
        put(key, value, FROM_EVENT_METADATA)
    if alert.spec.summary:
        put(SUMMARY_KEY, alert.spec.summary, FROM_SUMMARY)
    for key, value in (event.metadata or {}).items():
        if key.startswith(object_prefix):
            put(key.removeprefix(object_prefix), value, FROM_CONTROLLER)
    conflicts = {key: found for key, found in sorted(sources.items()) if len(found) > 1}
    return metadata, conflicts


def notification(event: FluxEvent, alert: Alert) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The event ``alert`` sends (a copy with the combined metadata, as Go's JSON), and the
    metadata keys in conflict (see ``combined_metadata``)."""
    metadata, conflicts = combined_metadata(event, alert)
    return event.model_copy(update={"metadata": metadata}).go_json(), conflicts


def provider_skips(provider_type: str, event: FluxEvent) -> str | None:
    """Why a Provider of ``provider_type`` does not take ``event``, or None if it does (Flux's
    getNotificationParams): commit status updates only go to Git hosts and the generic
    webhooks; a Git host's commit status needs the commit, a status update or an error; a
    change request comment needs the change request."""
    metadata = event.metadata or {}
    status_update = metadata.get(f"{event.involved_object.group}/commit_status") == "update"
    generic = provider_type in GENERIC_TYPES
    if status_update and provider_type not in COMMIT_STATUS_TYPES and not generic:
        return "a commit status update is only for Git hosts and generic webhooks"
    if (
        provider_type in COMMIT_STATUS_TYPES
        and not metadata.get(f"{EVENT_GROUP}/commit")
        and not status_update
        and event.severity != "error"
    ):
        return "no commit in the event metadata"
    if provider_type in CHANGE_REQUEST_TYPES and not metadata.get(f"{EVENT_GROUP}/change_request"):
        return "no change request in the event metadata"
    return None
