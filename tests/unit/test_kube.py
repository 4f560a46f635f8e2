"""The Kubernetes client's rules that need no server: when an answer is sent again."""

from __future__ import annotations

import pytest

from controllers.kube import MAX_RETRY_AFTER_SECONDS, _retry_after


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        pytest.param(429, {"Retry-After": "1"}, 1.0, id="throttled"),
        pytest.param(503, {"Retry-After": "2"}, 2.0, id="unavailable"),
        pytest.param(429, {}, None, id="throttled-without-retry-after"),
        pytest.param(409, {"Retry-After": "1"}, None, id="conflict-is-not-retried"),
        pytest.param(200, {"Retry-After": "1"}, None, id="success"),
        pytest.param(429, {"Retry-After": "3600"}, MAX_RETRY_AFTER_SECONDS, id="capped"),
        pytest.param(429, {"Retry-After": "-5"}, 0.0, id="negative"),
        pytest.param(429, {"Retry-After": "nan"}, None, id="not-a-number"),
        pytest.param(429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None, id="http-date"),
    ],
)
def test_retry_after(status: int, headers: dict[str, str], wait: float | None) -> None:
    assert _retry_after(status, headers) == wait
