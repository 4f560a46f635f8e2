"""The break-glass record (``controllers.suspension``) and the pieces of ``weir suspend``,
``weir resume`` and ``weir get`` that show it, the reminder flag and the suspended-since
series."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from click.testing import CliRunner

from controllers.cmd import build_parser, parse_options
from controllers.inventory import ObjectRef
from controllers.metrics import Metrics
from controllers.suspension import (
    SUSPENDED_AT,
    SUSPENDED_BY,
    SUSPENDED_REASON,
    Suspension,
    describe_age,
)
from kustomize.api_v1 import Kustomization
from weir.cli import main
from weir.cli.drift import Change, ObjectDrift
from weir.cli.get import coarse_age, suspended_by
from weir.cli.suspend import MAX_REASON, drift_lines

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
AT = "2026-03-01T09:55:00Z"
FULL = {SUSPENDED_BY: "jane", SUSPENDED_REASON: "INC-1234: hotfix image", SUSPENDED_AT: AT}


@pytest.mark.parametrize(
    ("annotations", "who_and_why"),
    [
        pytest.param(FULL, "by jane: INC-1234: hotfix image", id="full record"),
        pytest.param(
            {SUSPENDED_BY: "jane", SUSPENDED_AT: AT}, "by jane: no reason was given", id="no reason"
        ),
        pytest.param(
            {SUSPENDED_AT: AT}, "by an unknown user: no reason was given", id="user unknown"
        ),
        pytest.param(
            None,
            "by an unknown user (not suspended with weir suspend): no reason recorded",
            id="no record",
        ),
        pytest.param(
            {SUSPENDED_REASON: "why"},
            "by an unknown user (not suspended with weir suspend): no reason recorded",
            id="a reason alone is no record",
        ),
    ],
)
def test_who_and_why(annotations: dict[str, str] | None, who_and_why: str) -> None:
    assert Suspension.from_annotations(annotations).who_and_why() == who_and_why


def test_the_record_round_trips_through_annotations_and_tells_its_age() -> None:
    record = Suspension.from_annotations(FULL)
    assert record.to_annotations() == FULL
    assert record.age(NOW) == 2 * 3600 + 5 * 60
    # Another machine's clock ahead of this one's: no negative age.
    assert record.age(NOW - datetime.timedelta(hours=3)) == 0
    assert Suspension.from_annotations({SUSPENDED_AT: "yesterday"}).age(NOW) is None
    assert describe_age(7500.4) == "2h5m0s"


def test_resuming_removes_every_annotation_of_the_record() -> None:
    assert Suspension().to_annotations() == dict.fromkeys(FULL)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        pytest.param(0, "<1m", id="now"),
        pytest.param(59.9, "<1m", id="under a minute"),
        pytest.param(60, "1m", id="a minute"),
        pytest.param(3599, "59m", id="under an hour"),
        pytest.param(7500, "2h5m", id="hours"),
        pytest.param(3 * 86400 + 4 * 3600 + 59, "3d4h", id="days"),
    ],
)
def test_coarse_age(seconds: float, shown: str) -> None:
    assert coarse_age(seconds) == shown


def suspended(annotations: dict[str, str] | None, suspend: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": "apps", "annotations": annotations}, "spec": {"suspend": suspend}}


@pytest.mark.parametrize(
    ("obj", "cell"),
    [
        pytest.param(suspended(FULL), "jane, 2h5m ago: INC-1234: hotfix image", id="recorded"),
        pytest.param(
            suspended({**FULL, SUSPENDED_REASON: "x" * 100}),
            f"jane, 2h5m ago: {'x' * 60}...",
            id="long reason cut",
        ),
        pytest.param(
            suspended({SUSPENDED_BY: "jane", SUSPENDED_AT: AT}), "jane, 2h5m ago", id="no reason"
        ),
        pytest.param(
            suspended({SUSPENDED_BY: "jane", SUSPENDED_REASON: "why"}), "jane: why", id="no time"
        ),
        pytest.param(suspended(None), "unknown (not weir suspend)", id="flux suspend"),
        pytest.param(suspended(FULL, suspend=False), "", id="resumed by hand, record left"),
    ],
)
def test_the_suspended_by_column(obj: dict[str, Any], cell: str) -> None:
    assert suspended_by(obj, NOW) == cell


def test_the_drift_listing_names_each_field_with_its_live_value() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "apps"},
        "data": {"image": "nginx:hotfix", "big": "y" * 200, "list": "a"},
        "spec": {"items": [{"name": "a", "value": 1}]},
    }
    changes = (
        Change(("data", "image")),
        Change(("data", "big")),
        Change(("data", "gone"), removed=True),
        Change(("spec", "items", "0")),
    )
    ref = ObjectRef.parse("apps_settings__ConfigMap")
    drift = ObjectDrift(ref, {}, live, changes, "settings", "apps")
    secret = ObjectRef.parse("apps_creds__Secret")
    lines = drift_lines([drift], [secret])
    assert lines == [
        "► ConfigMap/apps/settings drifted",
        '  /data/image: "nginx:hotfix"',
        f'  /data/big: "{"y" * 119}...',
        "  /data/gone: removed",
        '  /spec/items/0: {"name": "a", "value": 1}',
        "► Secret/apps/creds drifted (Secret values are not shown)",
    ]


def test_a_reason_past_the_limit_is_refused_before_anything_is_written() -> None:
    # No kubeconfig is read: the refusal comes first.
    result = CliRunner().invoke(
        main,
        ["suspend", "ks", "apps", "--reason", "x" * (MAX_REASON + 1), "--kubeconfig=/nowhere"],
    )
    assert result.exit_code == 2
    assert f"--reason is longer than {MAX_REASON} characters" in result.output


def test_every_controller_takes_the_reminder_interval() -> None:
    parser = build_parser("probe-controller")
    assert parse_options("p", parser.parse_args([])).suspended_reminder_interval == 3600
    flag = ["--suspended-reminder-interval=90s"]
    assert parse_options("p", parser.parse_args(flag)).suspended_reminder_interval == 90


def test_the_suspended_since_series_lives_while_suspended() -> None:
    metrics = Metrics()
    spec = {"interval": "10m", "prune": True, "sourceRef": {"kind": "GitRepository", "name": "a"}}
    obj = Kustomization.model_validate(
        {"metadata": {"name": "apps", "namespace": "ops"}, "spec": spec}
    )
    series = (
        'weir_suspended_since_timestamp_seconds{kind="Kustomization",name="apps",namespace="ops"}'
    )

    metrics.record_suspend(obj, True, since=1_772_000_000.0)
    assert f"{series} 1.772e+09" in metrics.exposition().decode()
    metrics.record_suspend(obj, False)
    assert series not in metrics.exposition().decode()
    metrics.record_suspend(obj, True, since=1_772_000_000.0)
    metrics.forget("Kustomization", "ops", "apps")
    assert series not in metrics.exposition().decode()
