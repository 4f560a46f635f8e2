"""Durations read as Go's ``time.ParseDuration`` reads them, and the models that reject what Go
rejects.

The expected values and messages below were produced by Go 1.26's ``time.ParseDuration`` (a
throwaway program, run once; these tests do not need Go). Weir appends a hint after Go's
message, and cuts long values in the middle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controllers.api import MAX_DURATION_NS, CustomResource, parse_duration, parse_go_duration
from controllers.cmd import build_parser, parse_options
from kustomize.api_v1 import Kustomization
from source import git
from source.api_v1 import Bucket, GitRepository, OCIRepository
from tests.gitserver import GitRepos

LIMIT_HINT = "durations are at most 2562047h47m16.854775807s"
FOUR_HUNDRED_ONES = "1" * 400 + "s"


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        pytest.param("0", 0, id="lone-zero"),
        pytest.param("+0", 0, id="plus-zero"),
        pytest.param("-0", 0, id="minus-zero"),
        pytest.param("0s", 0, id="zero-seconds"),
        pytest.param("1ns", 1, id="nanosecond"),
        pytest.param("1us", 1_000, id="microsecond-us"),
        pytest.param("1\u00b5s", 1_000, id="microsecond-micro-sign"),
        pytest.param("1\u03bcs", 1_000, id="microsecond-greek-mu"),
        pytest.param("1ms", 1_000_000, id="millisecond"),
        pytest.param("1s", 1_000_000_000, id="second"),
        pytest.param("1m", 60_000_000_000, id="minute"),
        pytest.param("1h", 3_600_000_000_000, id="hour"),
        pytest.param("1h30m", 5_400_000_000_000, id="compound"),
        pytest.param("5m0s", 300_000_000_000, id="as-go-prints-it"),
        pytest.param("1.5h", 5_400_000_000_000, id="fractional-hour"),
        pytest.param(".5s", 500_000_000, id="fraction-without-whole"),
        pytest.param("1.s", 1_000_000_000, id="dot-without-fraction"),
        pytest.param("-1.5h", -5_400_000_000_000, id="negative"),
        pytest.param("+5s", 5_000_000_000, id="plus-sign"),
        pytest.param("1h2m3s4ms5us6ns", 3_723_004_005_006, id="every-unit"),
        pytest.param("0.000000001s", 1, id="one-nanosecond-as-fraction"),
        pytest.param("0.0000000001s", 0, id="below-a-nanosecond-truncates"),
        pytest.param("1.0000000000000000000000001s", 1_000_000_000, id="fraction-past-uint64"),
        pytest.param("0.1h", 360_000_000_000, id="float64-fraction"),
        pytest.param("3.3333333333333333333h", 12_000_000_000_000, id="float64-rounding"),
        pytest.param("2562047h47m16.854775807s", MAX_DURATION_NS, id="longest"),
        pytest.param("9223372036854775807ns", MAX_DURATION_NS, id="longest-in-ns"),
        pytest.param("-9223372036854775808ns", -(2**63), id="shortest"),
        pytest.param("2562047h", 9_223_369_200_000_000_000, id="most-whole-hours"),
        pytest.param(
            "9223372036854775808ns9223372036854775808ns", 0, id="go-uint64-sum-wraps-to-zero"
        ),
    ],
)
def test_parse_go_duration(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "go_message"),
    [
        pytest.param("", 'time: invalid duration ""', id="empty"),
        pytest.param("10", 'time: missing unit in duration "10"', id="no-unit"),
        pytest.param("1.5", 'time: missing unit in duration "1.5"', id="fraction-no-unit"),
        pytest.param("5d", 'time: unknown unit "d" in duration "5d"', id="days"),
        pytest.param("1 m", 'time: unknown unit " m" in duration "1 m"', id="space"),
        pytest.param("1h-1m", 'time: unknown unit "h-" in duration "1h-1m"', id="inner-sign"),
        pytest.param("1e3s", 'time: unknown unit "e" in duration "1e3s"', id="exponent"),
        pytest.param("1M", 'time: unknown unit "M" in duration "1M"', id="upper-case"),
        pytest.param("-", 'time: invalid duration "-"', id="sign-only"),
        pytest.param("+", 'time: invalid duration "+"', id="plus-only"),
        pytest.param(".s", 'time: invalid duration ".s"', id="dot-only"),
        pytest.param("-.s", 'time: invalid duration "-.s"', id="signed-dot-only"),
        pytest.param("s", 'time: invalid duration "s"', id="unit-only"),
        pytest.param(
            "1\u00e9s",
            'time: unknown unit "\\xc3\\xa9s" in duration "1\\xc3\\xa9s"',
            id="non-ascii-quoted-as-go",
        ),
        pytest.param("\u00b5s", 'time: invalid duration "\\xc2\\xb5s"', id="micro-unit-only"),
        pytest.param('1h"', 'time: unknown unit "h\\"" in duration "1h\\""', id="quote-escaped"),
        pytest.param(
            "2562047h47m16.854775808s",
            'time: invalid duration "2562047h47m16.854775808s"',
            id="longest-plus-one",
        ),
        pytest.param(
            "9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"', id="2^63ns"
        ),
        pytest.param(
            "-9223372036854775809ns",
            'time: invalid duration "-9223372036854775809ns"',
            id="shortest-minus-one",
        ),
        pytest.param(
            "9223372036854775807ns1ns",
            'time: invalid duration "9223372036854775807ns1ns"',
            id="sum-overflows",
        ),
        pytest.param(
            "99999999999999999999ns",
            'time: invalid duration "99999999999999999999ns"',
            id="number-past-uint64",
        ),
        pytest.param("1000000000h", 'time: invalid duration "1000000000h"', id="billion-hours"),
        pytest.param("2562048h", 'time: invalid duration "2562048h"', id="one-hour-too-many"),
        pytest.param("-1000000000h", 'time: invalid duration "-1000000000h"', id="negative-too"),
    ],
)
def test_parse_go_duration_rejects_as_go_does(text: str, go_message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(go_message)}: "):
        parse_go_duration(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1000000000h", id="billion-hours"),
        pytest.param("2562047h47m16.854775808s", id="longest-plus-one"),
        pytest.param(FOUR_HUNDRED_ONES, id="four-hundred-ones"),
    ],
)
def test_an_overflow_says_what_the_limit_is(text: str) -> None:
    with pytest.raises(ValueError, match=rf"{LIMIT_HINT} \(about 292 years\)$"):
        parse_go_duration(text)


def test_a_long_value_is_cut_in_the_middle_of_the_message() -> None:
    shown = '"' + "1" * 40 + "\u2026" + "1" * 15 + 's" (401 characters)'
    message = f"time: invalid duration {shown}: {LIMIT_HINT} (about 292 years)"

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_go_duration(FOUR_HUNDRED_ONES)


def test_parsing_a_huge_value_takes_linear_time() -> None:
    # A megabyte of "1s" components: index-based parsing, no quadratic slicing.
    assert parse_go_duration("1s" * 500_000) == 500_000 * 10**9


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2562047h47m16.854775807s", 9223372036.854775807, id="longest"),
        pytest.param("1000ms", 1.0, id="milliseconds"),
        pytest.param("0s", 0.0, id="zero"),
    ],
)
def test_parse_duration_is_seconds_of_go_nanoseconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1000000000h", id="billion-hours"),
        pytest.param(FOUR_HUNDRED_ONES, id="four-hundred-ones"),
        pytest.param("2562047h47m16.854775808s", id="longest-plus-one"),
    ],
)
def test_parse_duration_rejects_what_matches_the_schema_but_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^time: invalid duration .*: {LIMIT_HINT}"):
        parse_duration(text)


def test_parse_duration_cuts_a_long_value_that_breaks_the_schema() -> None:
    with pytest.raises(
        ValueError, match=r"^invalid duration \"1{40}\u2026.*\(401 characters\)"
    ) as err:
        parse_duration("1" * 400 + "x")

    assert len(str(err.value)) < 200


# Every duration field of every kind: what matches the CRD pattern but Go rejects fails when
# the object is read, and names the field.


def manifest(model: type[CustomResource], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": model.info.api_version,
        "kind": model.info.kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": spec,
    }


GIT = {"url": "https://example.invalid/repo.git", "interval": "1m"}
OCI = {"url": "oci://registry.invalid/app", "interval": "1m"}
BUCKET = {"bucketName": "b", "endpoint": "s3.invalid", "interval": "1m"}
KUSTOMIZATION = {
    "interval": "1m",
    "prune": True,
    "sourceRef": {"kind": "GitRepository", "name": "app"},
}
TOO_LONG_FOR_HOURS = "1000000000h"


@pytest.mark.parametrize(
    ("model", "spec", "field", "value"),
    [
        pytest.param(GitRepository, GIT, "interval", TOO_LONG_FOR_HOURS, id="git-interval"),
        pytest.param(GitRepository, GIT, "timeout", FOUR_HUNDRED_ONES, id="git-timeout"),
        pytest.param(OCIRepository, OCI, "interval", FOUR_HUNDRED_ONES, id="oci-interval"),
        pytest.param(OCIRepository, OCI, "timeout", "153722867281m", id="oci-timeout"),
        pytest.param(Bucket, BUCKET, "interval", TOO_LONG_FOR_HOURS, id="bucket-interval"),
        pytest.param(Bucket, BUCKET, "timeout", FOUR_HUNDRED_ONES, id="bucket-timeout"),
        pytest.param(Kustomization, KUSTOMIZATION, "interval", FOUR_HUNDRED_ONES, id="ks-interval"),
        pytest.param(
            Kustomization, KUSTOMIZATION, "retryInterval", "2562048h", id="ks-retry-interval"
        ),
        pytest.param(Kustomization, KUSTOMIZATION, "timeout", TOO_LONG_FOR_HOURS, id="ks-timeout"),
    ],
)
def test_a_model_rejects_a_duration_go_rejects(
    model: type[CustomResource], spec: dict[str, Any], field: str, value: str
) -> None:
    with pytest.raises(ValidationError) as err:
        model.from_dict(manifest(model, {**spec, field: value}))

    [error] = err.value.errors()
    assert error["loc"] == ("spec", field)
    assert LIMIT_HINT in error["msg"]


@pytest.mark.parametrize(
    ("model", "spec"),
    [
        pytest.param(GitRepository, {**GIT, "timeout": "2562047m"}, id="git"),
        pytest.param(OCIRepository, {**OCI, "interval": "0s"}, id="oci"),
        pytest.param(Bucket, {**BUCKET, "interval": "2562047h47m16.854775807s"}, id="bucket"),
        pytest.param(
            Kustomization,
            {**KUSTOMIZATION, "retryInterval": "0s", "timeout": "2562047h"},
            id="kustomization",
        ),
    ],
)
def test_a_model_accepts_durations_up_to_gos_limit(
    model: type[CustomResource], spec: dict[str, Any]
) -> None:
    assert model.from_dict(manifest(model, spec)).metadata.name == "x"


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """A local bare repository with one commit on ``main``."""
    repos = GitRepos(tmp_path)
    repos.create("repo")
    repos.commit("repo", {"README": "one"}, "one")
    return repos.path("repo")


async def test_a_git_timeout_longer_than_libgit2_holds_still_works(bare_repo: Path) -> None:
    # 2562047m is a valid Git timeout (no "h" unit allowed), far past libgit2's int of ms.
    timeout = parse_duration("2562047m")

    heads = await git.list_heads(str(bare_repo), {}, proxy=None, timeout=timeout)

    assert "refs/heads/main" in heads


@pytest.mark.parametrize(
    "flag",
    [
        pytest.param("--min-retry-delay=0s", id="min-retry-delay"),
        pytest.param("--max-retry-delay=0s", id="max-retry-delay"),
        pytest.param("--leader-election-retry-period=0s", id="leader-election-retry-period"),
    ],
)
def test_a_zero_delay_flag_that_would_loop_is_refused(flag: str) -> None:
    args = build_parser("test-controller").parse_args([flag])

    with pytest.raises(SystemExit, match=f"{flag.split('=')[0]} must be above zero"):
        parse_options("test-controller", args)
