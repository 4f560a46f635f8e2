"""Alert matching, duplicate keys and metadata, as Flux's notification-controller applies them
(tables after ``internal/server/event_handlers_test.go`` and ``event_server_test.go``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from notification.alerts import (
    DuplicateFilter,
    FluxEvent,
    InvalidAlert,
    Selection,
    clean_metadata,
    combined_metadata,
    duplicate_key,
    message_filter,
    notification,
    provider_skips,
    select,
    without_internal_metadata,
)
from notification.api_v1beta3 import Alert

KS_GROUP = "kustomize.toolkit.fluxcd.io"


def make_alert(
    sources: list[dict[str, Any]] | None = None, namespace: str = "apps", **spec: Any
) -> Alert:
    return Alert.model_validate(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "alert", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "hook"},
                "eventSources": sources
                if sources is not None
                else [{"kind": "Kustomization", "name": "*"}],
                **spec,
            },
        }
    )


def make_event(
    name: str = "web",
    namespace: str = "apps",
    kind: str = "Kustomization",
    severity: str = "info",
    message: str = "Reconciliation finished",
    metadata: dict[str, str] | None = None,
    **extra: Any,
) -> FluxEvent:
    return FluxEvent.model_validate(
        {
            "involvedObject": {
                "kind": kind,
                "namespace": namespace,
                "name": name,
                "apiVersion": f"{KS_GROUP}/v1",
            },
            "severity": severity,
            "timestamp": "2026-01-02T03:04:05Z",
            "message": message,
            "reason": "ReconciliationSucceeded",
            "metadata": metadata,
            "reportingController": "kustomize-controller",
            **extra,
        }
    )


# select: kinds, names, namespaces, severity, matchLabels


@pytest.mark.parametrize(
    ("sources", "severity", "event", "labels", "expected"),
    [
        pytest.param(None, "info", make_event(), None, Selection.YES, id="wildcard-name"),
        pytest.param(
            [{"kind": "Kustomization", "name": "web"}],
            "info",
            make_event(),
            None,
            Selection.YES,
            id="exact-name",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "api"}],
            "info",
            make_event(),
            None,
            Selection.NO,
            id="other-name",
        ),
        pytest.param(
            [{"kind": "GitRepository", "name": "*"}],
            "info",
            make_event(),
            None,
            Selection.NO,
            id="other-kind",
        ),
        pytest.param(
            None,
            "info",
            make_event(namespace="infra"),
            None,
            Selection.NO,
            id="unset-namespace-is-the-alerts",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "namespace": "infra"}],
            "info",
            make_event(namespace="infra"),
            None,
            Selection.YES,
            id="named-namespace",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "namespace": "*"}],
            "info",
            make_event(namespace="infra"),
            None,
            Selection.NO,
            id="no-wildcard-namespace",
        ),
        pytest.param(
            None, "info", make_event(severity="error"), None, Selection.YES, id="info-takes-errors"
        ),
        pytest.param(
            None, "error", make_event(severity="info"), None, Selection.NO, id="error-drops-info"
        ),
        pytest.param(
            None,
            "error",
            make_event(severity="error"),
            None,
            Selection.YES,
            id="error-takes-errors",
        ),
        pytest.param(
            [
                {"kind": "GitRepository", "name": "*"},
                {"kind": "Kustomization", "name": "web"},
            ],
            "info",
            make_event(),
            None,
            Selection.YES,
            id="second-source",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}],
            "info",
            make_event(),
            None,
            Selection.NEEDS_LABELS,
            id="labels-unknown",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}],
            "info",
            make_event(),
            {"team": "a", "tier": "web"},
            Selection.YES,
            id="labels-match",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}],
            "info",
            make_event(),
            {"team": "b"},
            Selection.NO,
            id="labels-differ",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a", "tier": "db"}}],
            "info",
            make_event(),
            {"team": "a"},
            Selection.NO,
            id="labels-all-needed",
        ),
        pytest.param(
            [{"kind": "GitRepository", "name": "*", "matchLabels": {"team": "a"}}],
            "info",
            make_event(),
            None,
            Selection.NO,
            id="labels-not-needed-for-other-kind",
        ),
        pytest.param(
            [
                {"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}},
                {"kind": "Kustomization", "name": "web"},
            ],
            "info",
            make_event(),
            None,
            Selection.YES,
            id="labels-not-needed-when-another-source-selects",
        ),
        pytest.param(
            [{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}],
            "error",
            make_event(),
            None,
            Selection.NO,
            id="severity-before-labels",
        ),
    ],
)
def test_select(
    sources: list[dict[str, Any]] | None,
    severity: str,
    event: FluxEvent,
    labels: dict[str, str] | None,
    expected: Selection,
) -> None:
    alert = make_alert(sources, eventSeverity=severity)
    assert select(alert, event, labels) is expected


# inclusion and exclusion lists (RE2)


@pytest.mark.parametrize(
    ("inclusion", "exclusion", "message", "allowed"),
    [
        pytest.param(None, None, "anything", True, id="no-lists"),
        pytest.param([".*failed.*"], None, "health check failed", True, id="included"),
        pytest.param(["^apply"], None, "health check failed", False, id="not-included"),
        pytest.param(["^apply", "failed"], None, "health check failed", True, id="one-of-many"),
        pytest.param(None, ["failed"], "health check failed", False, id="excluded"),
        pytest.param(None, ["^apply"], "health check failed", True, id="not-excluded"),
        pytest.param(["failed"], ["health"], "health check failed", False, id="exclusion-wins"),
        pytest.param(["(?i)FAILED"], None, "health check failed", True, id="case-flag"),
        # Go's $ without (?m) is the end of the text; Python's re would also match before a
        # final newline.
        pytest.param(["failed$"], None, "check failed\n", False, id="dollar-is-end-of-text"),
        pytest.param([r"failed\z"], None, "check failed", True, id="re2-end-of-text"),
        pytest.param(
            [r"^[[:digit:]]+ objects"], None, "12 objects applied", True, id="posix-class"
        ),
        pytest.param([r"\p{Greek}"], None, "αβγ", True, id="unicode-class"),
        pytest.param([r"\d+"], None, "٣", False, id="digits-are-ascii"),
    ],
)
def test_message_filter(
    inclusion: list[str] | None, exclusion: list[str] | None, message: str, allowed: bool
) -> None:
    alert = make_alert(inclusionList=inclusion, exclusionList=exclusion)
    assert message_filter(alert).allows(message) is allowed


@pytest.mark.parametrize(
    ("field", "pattern"),
    [
        pytest.param("inclusionList", "(unclosed", id="syntax"),
        pytest.param("exclusionList", r"(a)\1", id="backreference"),
        pytest.param("exclusionList", "foo(?=bar)", id="lookahead"),
        pytest.param("inclusionList", "(?<!x)y", id="lookbehind"),
        pytest.param("inclusionList", "a{1001}", id="repeat-over-1000"),
    ],
)
def test_a_pattern_re2_refuses_makes_the_alert_invalid(field: str, pattern: str) -> None:
    spec: dict[str, Any] = {field: ["ok", pattern]}
    alert = make_alert(**spec)
    with pytest.raises(InvalidAlert) as raised:
        message_filter(alert)
    which = "inclusion" if field == "inclusionList" else "exclusion"
    assert str(raised.value).startswith(f"failed to compile {which} regex '{pattern}': ")
    assert raised.value.reason == "InvalidConfig"


def test_a_backtracking_pattern_runs_in_linear_time() -> None:
    # Exponential for a backtracking engine; RE2 answers at once.
    alert = make_alert(inclusionList=["^(a+)+$"])
    assert message_filter(alert).allows("a" * 5000 + "b") is False


# metadata: what the server keeps, what an Alert sends


def test_clean_metadata_keeps_the_event_and_object_groups() -> None:
    event = make_event(
        metadata={
            f"{KS_GROUP}/foo": "fooval",
            f"{KS_GROUP}/checksum": "aaaaa",
            f"{KS_GROUP}/digest": "bbbbbbbb",
            f"{KS_GROUP}/aa/bb": "cc",
            "source.toolkit.fluxcd.io/baz": "bazval",
            "event.toolkit.fluxcd.io/baz": "foo",
            "unprefixed": "x",
        }
    )
    assert clean_metadata(event).metadata == {
        f"{KS_GROUP}/foo": "fooval",
        f"{KS_GROUP}/aa/bb": "cc",
        "event.toolkit.fluxcd.io/baz": "foo",
    }


def test_the_token_is_removed_after_the_duplicate_key() -> None:
    event = make_event(metadata={f"{KS_GROUP}/token": "t1", f"{KS_GROUP}/revision": "r1"})
    assert without_internal_metadata(event).metadata == {f"{KS_GROUP}/revision": "r1"}


@pytest.mark.parametrize(
    ("event_metadata", "alert_spec", "expected", "conflicts"),
    [
        pytest.param({}, {}, {}, {}, id="empty"),
        pytest.param(
            {
                f"{KS_GROUP}/revision": "main@sha1:abc",
                "event.toolkit.fluxcd.io/team": "payments",
            },
            {"summary": "prod cluster", "eventMetadata": {"env": "prod"}},
            {
                "revision": "main@sha1:abc",
                "team": "payments",
                "summary": "prod cluster",
                "env": "prod",
            },
            {},
            id="all-sources",
        ),
        pytest.param(
            {"event.toolkit.fluxcd.io/summary": "objectSummary"},
            {"summary": "alertSummary"},
            {"summary": "alertSummary"},
            {"summary": ["involved object annotations", "Alert object .spec.summary"]},
            id="summary-over-annotation",
        ),
        pytest.param(
            {},
            {"summary": "alertSummary", "eventMetadata": {"summary": "fromMetadata"}},
            {"summary": "alertSummary"},
            {"summary": ["Alert object .spec.eventMetadata", "Alert object .spec.summary"]},
            id="summary-over-event-metadata",
        ),
        pytest.param(
            {f"{KS_GROUP}/summary": "controllerSummary"},
            {"summary": "alertSummary"},
            {"summary": "controllerSummary"},
            {"summary": ["Alert object .spec.summary", "involved object controller metadata"]},
            id="controller-over-summary",
        ),
        pytest.param(
            {f"{KS_GROUP}/revision": "r2", "event.toolkit.fluxcd.io/env": "annotated"},
            {"eventMetadata": {"revision": "r1", "env": "prod"}},
            {"revision": "r2", "env": "prod"},
            {
                "env": ["involved object annotations", "Alert object .spec.eventMetadata"],
                "revision": [
                    "Alert object .spec.eventMetadata",
                    "involved object controller metadata",
                ],
            },
            id="event-keys-win-over-the-alerts",
        ),
    ],
)
def test_combined_metadata(
    event_metadata: dict[str, str],
    alert_spec: dict[str, Any],
    expected: dict[str, str],
    conflicts: dict[str, list[str]],
) -> None:
    got, found = combined_metadata(make_event(metadata=event_metadata), make_alert(**alert_spec))
    assert got == expected
    assert found == conflicts


def test_the_notification_is_the_event_with_the_combined_metadata() -> None:
    event = make_event(
        severity="error",
        message="health check failed",
        metadata={f"{KS_GROUP}/revision": "main@sha1:abc"},
        reportingInstance="kustomize-controller-1",
    )
    alert = make_alert(summary="prod", eventMetadata={"cluster": "eu-1"})
    body, conflicts = notification(event, alert)
    assert body == {
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": "apps",
            "name": "web",
            "apiVersion": f"{KS_GROUP}/v1",
        },
        "severity": "error",
        "timestamp": "2026-01-02T03:04:05Z",
        "message": "health check failed",
        "reason": "ReconciliationSucceeded",
        "metadata": {"revision": "main@sha1:abc", "summary": "prod", "cluster": "eu-1"},
        "reportingController": "kustomize-controller",
        "reportingInstance": "kustomize-controller-1",
    }
    assert conflicts == {}
    assert event.metadata == {f"{KS_GROUP}/revision": "main@sha1:abc"}, "the event is a copy"


def test_empty_metadata_is_left_out_as_go_does() -> None:
    body, _ = notification(make_event(), make_alert())
    assert "metadata" not in body
    assert "reportingInstance" not in body


# duplicate keys and the rate limit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def revision(value: str, key: str = "revision") -> dict[str, str]:
    return {f"{KS_GROUP}/{key}": value}


# One sequence, as Flux's TestEventKeyFunc: whether each event is a duplicate of one before.
DUPLICATE_SEQUENCE = [
    (make_event(name="1"), False),
    (make_event(name="1"), True),
    (make_event(name="1", severity="error", message="Health check timed out"), False),
    (make_event(name="1", severity="error"), True),  # severity is not part of the key
    (make_event(name="1", reason="Progressing"), True),  # neither is the reason
    (make_event(name="2"), False),
    (make_event(name="1", namespace="other"), False),
    (make_event(name="1", kind="GitRepository"), False),
    (make_event(name="4", metadata=revision("rev1")), False),
    (make_event(name="4", metadata=revision("rev1")), True),
    (make_event(name="4", metadata=revision("rev2")), False),
    (make_event(name="4", metadata=revision("orev1", "originRevision")), False),
    (make_event(name="4", metadata=revision("orev1", "originRevision")), True),
    (make_event(name="4", metadata=revision("t1", "token")), False),
    (make_event(name="4", metadata=revision("t1", "token")), True),
    (make_event(name="4", metadata=revision("t2", "token")), False),
    # Other metadata is not part of the key.
    (make_event(name="4", metadata={**revision("rev1"), f"{KS_GROUP}/x": "y"}), True),
]


def test_duplicates_within_the_interval() -> None:
    admitted = DuplicateFilter(300, clock=Clock())
    seen = [not admitted.admit(duplicate_key(event)) for event, _ in DUPLICATE_SEQUENCE]
    assert seen == [duplicate for _, duplicate in DUPLICATE_SEQUENCE]


def test_an_event_is_admitted_again_after_the_interval() -> None:
    clock = Clock()
    admitted = DuplicateFilter(300, clock=clock)
    key = duplicate_key(make_event())
    assert admitted.admit(key)
    clock.now += 299
    assert not admitted.admit(key)
    assert admitted.retry_after(key) == pytest.approx(1)
    clock.now += 1
    assert admitted.admit(key), "the interval counts from the admitted event"
    clock.now += 150
    assert not admitted.admit(key)


def test_no_interval_admits_everything() -> None:
    admitted = DuplicateFilter(0, clock=Clock())
    assert admitted.admit("k")
    assert admitted.admit("k")


def test_the_filter_holds_at_most_max_keys() -> None:
    admitted = DuplicateFilter(300, max_keys=3, clock=Clock())
    for key in "abcd":
        assert admitted.admit(key)
    assert admitted.admit("a"), "the oldest key was forgotten"
    assert not admitted.admit("d")


# which provider types take which events


@pytest.mark.parametrize(
    ("provider_type", "severity", "metadata", "skipped"),
    [
        pytest.param("slack", "info", {}, False, id="chat-takes-info"),
        pytest.param(
            "slack", "info", {f"{KS_GROUP}/commit_status": "update"}, True, id="chat-no-status"
        ),
        pytest.param(
            "generic", "info", {f"{KS_GROUP}/commit_status": "update"}, False, id="generic-status"
        ),
        pytest.param("github", "info", {}, True, id="git-host-needs-commit"),
        pytest.param("github", "error", {}, False, id="git-host-takes-errors"),
        pytest.param(
            "gitea", "info", {f"{KS_GROUP}/commit_status": "update"}, False, id="git-host-update"
        ),
        pytest.param(
            "gitlab", "info", {"event.toolkit.fluxcd.io/commit": "abc"}, False, id="git-host-commit"
        ),
        pytest.param("githubpullrequestcomment", "error", {}, True, id="comment-needs-request"),
        pytest.param(
            "githubpullrequestcomment",
            "info",
            {"event.toolkit.fluxcd.io/change_request": "12"},
            False,
            id="comment-with-request",
        ),
    ],
)
def test_provider_skips(
    provider_type: str, severity: str, metadata: dict[str, str], skipped: bool
) -> None:
    event = make_event(severity=severity, metadata=metadata)
    assert (provider_skips(provider_type, event) is not None) is skipped


# the event model


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"involvedObject": {"kind": "Kustomization", "name": "x"}}, "namespace"),
        pytest.param({"involvedObject": {"namespace": "a", "name": "x"}}, "kind"),
        pytest.param({"severity": "warning"}, "severity"),
        pytest.param({"timestamp": "yesterday"}, "timestamp"),
        pytest.param({"message": "x" * 39_001}, "message"),
        pytest.param({"metadata": {"revision": 3}}, "metadata"),
    ],
)
def test_what_is_not_an_event(change: dict[str, Any], field: str) -> None:
    body = make_event().go_json() | change
    with pytest.raises(ValidationError) as raised:
        FluxEvent.model_validate(body)
    assert field in str(raised.value)


def test_the_timestamp_is_kept_as_go_writes_it_back() -> None:
    event = make_event(timestamp="2026-01-02T04:04:05.123456+01:00")
    assert event.timestamp == "2026-01-02T03:04:05Z"
