"""The HelmRelease remediation decisions, as Flux's atomic release takes them: after a failed
install or upgrade, remediate (uninstall, roll back), retry, or stall, retries exhausted."""

from __future__ import annotations

from typing import Any

import pytest

from helm.api_v2 import Snapshot
from helm.client import Release
from helm.history import config_digest, previous, snapshot
from helm.settings import unsupported_settings
from helm.state import next_action
from tests.unit.test_helmrelease import CHART, VALUES_DIGEST, helmrelease, release

NEW_VALUES = config_digest({"replicas": 3})


def history_of(*entries: tuple[int, str, str]) -> list[dict[str, Any]]:
    """Snapshots of release revisions (version, Helm status, action), newest first."""
    return [snapshot(release(v, s), action).to_dict() for v, s, action in entries]


FAILED_UPGRADE = history_of((2, "failed", "upgrade"), (1, "deployed", "install"))
FAILED_INSTALL = history_of((1, "failed", "install"))
ROLLED_BACK = history_of((3, "deployed", "rollback"), (2, "superseded", "upgrade"))


def upgraded(failures: int, **status: Any) -> dict[str, Any]:
    return {
        "history": FAILED_UPGRADE,
        "lastAttemptedReleaseAction": "upgrade",
        "upgradeFailures": failures,
        "failures": failures,
        **status,
    }


def installed(failures: int) -> dict[str, Any]:
    return {
        "history": FAILED_INSTALL,
        "lastAttemptedReleaseAction": "install",
        "installFailures": failures,
        "failures": failures,
    }


@pytest.mark.parametrize(
    ("spec", "status", "stored", "digest", "expected"),
    [
        # Upgrade remediation: roll back (the default strategy) while retries remain.
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1}}},
            upgraded(1),
            release(2, "failed"),
            VALUES_DIGEST,
            "rollback",
            id="upgrade-failed-retries-left-rollback",
        ),
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1, "strategy": "uninstall"}}},
            upgraded(1),
            release(2, "failed"),
            VALUES_DIGEST,
            "uninstall",
            id="upgrade-failed-strategy-uninstall",
        ),
        # remediateLastFailure is true by default when retries > 0: the last failure is
        # rolled back too.
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1}}},
            upgraded(2),
            release(2, "failed"),
            VALUES_DIGEST,
            "rollback",
            id="upgrade-exhausted-remediate-last-failure-default",
        ),
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1, "remediateLastFailure": False}}},
            upgraded(2),
            release(2, "failed"),
            VALUES_DIGEST,
            "stalled",
            id="upgrade-exhausted-last-failure-left",
        ),
        pytest.param(
            {},
            upgraded(1),
            release(2, "failed"),
            VALUES_DIGEST,
            "stalled",
            id="upgrade-no-retries-last-failure-left",
        ),
        pytest.param(
            {"upgrade": {"remediation": {"retries": -1}}},
            upgraded(40),
            release(2, "failed"),
            VALUES_DIGEST,
            "rollback",
            id="upgrade-unlimited-retries",
        ),
        # After a rollback the release is deployed but out of sync: upgrade again, or stall.
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1}}},
            upgraded(1, history=ROLLED_BACK),
            release(3),
            NEW_VALUES,
            "upgrade",
            id="rolled-back-retry-upgrade",
        ),
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1}}},
            upgraded(2, history=ROLLED_BACK),
            release(3),
            NEW_VALUES,
            "stalled",
            id="rolled-back-retries-exhausted",
        ),
        # Install remediation: always an uninstall; remediateLastFailure off by default.
        pytest.param(
            {"install": {"remediation": {"retries": 2}}},
            installed(1),
            release(1, "failed"),
            VALUES_DIGEST,
            "uninstall",
            id="install-failed-retries-left-uninstall",
        ),
        pytest.param(
            {"install": {"remediation": {"retries": 2}}},
            installed(3),
            release(1, "failed"),
            VALUES_DIGEST,
            "stalled",
            id="install-exhausted",
        ),
        pytest.param(
            {"install": {"remediation": {"retries": 2, "remediateLastFailure": True}}},
            installed(3),
            release(1, "failed"),
            VALUES_DIGEST,
            "uninstall",
            id="install-exhausted-remediate-last-failure",
        ),
        pytest.param(
            {"install": {"remediation": {"retries": 2}}},
            {**installed(2), "history": None},
            None,
            VALUES_DIGEST,
            "install",
            id="uninstalled-install-again",
        ),
        pytest.param(
            {"install": {"remediation": {"retries": 2}}},
            {**installed(3), "history": None},
            None,
            VALUES_DIGEST,
            "stalled",
            id="uninstalled-install-exhausted",
        ),
        # RetryOnFailure: the failed release is upgraded again, whatever the counters say.
        pytest.param(
            {"upgrade": {"strategy": {"name": "RetryOnFailure", "retryInterval": "1s"}}},
            upgraded(7),
            release(2, "failed"),
            VALUES_DIGEST,
            "upgrade",
            id="retry-on-failure-upgrade",
        ),
        pytest.param(
            {"install": {"strategy": {"name": "RetryOnFailure"}}},
            installed(3),
            release(1, "failed"),
            VALUES_DIGEST,
            "upgrade",
            id="retry-on-failure-install-retried-as-upgrade",
        ),
        # Counters reset (a new desired state): the failed release is upgraded.
        pytest.param(
            {"upgrade": {"remediation": {"retries": 1}}},
            upgraded(0),
            release(2, "failed"),
            VALUES_DIGEST,
            "upgrade",
            id="failed-counters-reset",
        ),
    ],
)
def test_remediation_decision(
    spec: dict[str, Any],
    status: dict[str, Any],
    stored: Release | None,
    digest: str,
    expected: str,
) -> None:
    assert next_action(helmrelease(spec, **status), stored, CHART, digest) == expected


def test_retry_interval_only_after_a_failure_with_retry_on_failure() -> None:
    retry = {"upgrade": {"strategy": {"name": "RetryOnFailure", "retryInterval": "42s"}}}
    assert helmrelease(retry, **upgraded(1)).retry_interval_seconds == 42
    assert helmrelease(retry, **upgraded(0)).retry_interval_seconds is None
    assert helmrelease({}, **upgraded(1)).retry_interval_seconds is None  # backoff
    default = {"upgrade": {"strategy": {"name": "RetryOnFailure"}}}
    assert helmrelease(default, **upgraded(1)).retry_interval_seconds == 300


def test_previous_is_the_last_release_that_served() -> None:
    entries = [Snapshot.model_validate(e) for e in FAILED_UPGRADE]
    assert [e.version for e in filter(None, [previous(entries)])] == [1]
    assert previous([Snapshot.model_validate(e) for e in FAILED_INSTALL]) is None
    rolled = [Snapshot.model_validate(e) for e in ROLLED_BACK + history_of((1, "superseded", "x"))]
    assert [e.version for e in filter(None, [previous(rolled)])] == [2]


def test_remediation_settings_are_accepted() -> None:
    spec = {
        "install": {
            "strategy": {"name": "RetryOnFailure", "retryInterval": "1m"},
            "remediation": {"retries": -1, "remediateLastFailure": True},
        },
        "upgrade": {
            "strategy": {"name": "RemediateOnFailure"},
            "remediation": {"retries": 3, "strategy": "uninstall", "remediateLastFailure": False},
        },
    }
    assert unsupported_settings(helmrelease(spec)) == []
