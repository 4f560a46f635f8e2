"""Shared API types: Go-style durations, and the custom resource base via GitRepository."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controllers.api import CustomResource, format_duration, parse_duration
from controllers.secrets import SecretError, proxy_url
from source.api_v1 import GitRepository


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("1m30s", 90.0, id="compound"),
        pytest.param("750ms", 0.75, id="milliseconds"),
        pytest.param("1h", 3600.0, id="hour"),
        pytest.param("1.5h", 5400.0, id="fractional-hour"),
        pytest.param("5m0s", 300.0, id="as-the-api-server-prints-it"),
        pytest.param("1h30m", 5400.0, id="hours-and-minutes"),
        pytest.param("1s500ms", 1.5, id="seconds-and-milliseconds"),
        pytest.param("10m", 600.0, id="minutes-not-milliseconds"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param("0.5s", 0.5, id="fractional-second"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("10", id="no-unit"),
        pytest.param("5d", id="days"),
        pytest.param("", id="empty"),
        pytest.param("-1s", id="negative"),
        pytest.param("+1s", id="plus-sign"),
        pytest.param("1 m", id="space"),
        pytest.param(" 1m", id="leading-space"),
        pytest.param("1m30", id="trailing-number"),
        pytest.param("s", id="unit-only"),
        pytest.param("1.s", id="dot-without-fraction"),
        pytest.param("1e3s", id="exponent"),
        pytest.param("1M", id="upper-case"),
        pytest.param("1us", id="microseconds"),
        pytest.param("5 minutes", id="words"),
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid duration {re.escape(repr(text))}: use e\.g\."):
        parse_duration(text)


def gitrepository(metadata: dict[str, Any], **spec: Any) -> GitRepository:
    return GitRepository.model_validate(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": metadata,
            "spec": {"url": "https://github.com/stefanprodan/podinfo", "interval": "5m", **spec},
        }
    )


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        pytest.param(
            {"name": "podinfo", "namespace": "flux-system"}, "flux-system/podinfo", id="ns"
        ),
        pytest.param({"name": "podinfo"}, "podinfo", id="cluster-scoped"),
        pytest.param({"name": "podinfo", "namespace": ""}, "podinfo", id="empty-namespace"),
    ],
)
def test_key_is_namespace_slash_name(metadata: dict[str, Any], key: str) -> None:
    assert gitrepository(metadata).key == key


@pytest.mark.parametrize(
    ("spec", "suspended"),
    [
        pytest.param({}, False, id="unset"),
        pytest.param({"suspend": False}, False, id="false"),
        pytest.param({"suspend": True}, True, id="true"),
    ],
)
def test_suspended_reads_spec_suspend(spec: dict[str, Any], suspended: bool) -> None:
    assert gitrepository({"name": "podinfo", "namespace": "default"}, **spec).suspended is suspended


def test_a_kind_without_spec_is_never_suspended() -> None:
    resource = CustomResource.model_validate({"metadata": {"name": "x"}, "suspend": True})

    assert resource.suspended is False


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"address": "http://proxy:3128"}, "http://proxy:3128", id="no-credentials"),
        pytest.param(
            {"address": "http://proxy:3128", "username": "u", "password": "p"},
            "http://u:p@proxy:3128",
            id="credentials",
        ),
        pytest.param(
            {"address": "http://proxy:3128", "username": "me@corp", "password": "a/b@c:d"},
            "http://me%40corp:a%2Fb%40c%3Ad@proxy:3128",
            id="credentials-that-need-quoting",
        ),
    ],
)
def test_proxy_url(data: dict[str, str], expected: str) -> None:
    assert proxy_url(data, "ns/proxy") == expected


def test_proxy_secret_without_address_names_the_secret_only() -> None:
    with pytest.raises(SecretError, match="proxy secret 'ns/proxy' has no 'address'") as err:
        proxy_url({"username": "u", "password": "hunter2"}, "ns/proxy")
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (30, "30s"),
        (300, "5m0s"),
        (90.125, "1m30.125s"),
        (3600, "1h0m0s"),
        (5430, "1h30m30s"),
    ],
)
def test_format_duration_reads_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
