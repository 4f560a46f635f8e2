"""Choosing a chart's tag in a registry, and the values merge and version metadata of a build."""

from __future__ import annotations

from typing import Any

import pytest

from source.chartbuild import ChartBuildError, merge_values, values_files, with_metadata
from source.conditions import FetchError
from source.helmoci import chart_tag, select_tag

TAGS = ["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest", "1.1.5+build.3"]


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        pytest.param("", "2.0.0", id="empty-is-highest-stable"),
        pytest.param("*", "2.0.0", id="star-is-highest-stable"),
        pytest.param("1.x", "1.1.5+build.3", id="range"),
        pytest.param("~1.2.0-rc.0", "1.2.0-rc.1", id="prerelease-range"),
        pytest.param("latest", "latest", id="exact-tag"),
    ],
)
def test_select_tag(wanted: str, chosen: str) -> None:
    assert select_tag(TAGS, wanted) == chosen


def test_no_tag_in_range_is_a_retried_pull_error() -> None:
    with pytest.raises(FetchError) as caught:
        select_tag(TAGS, ">=3.0.0")
    assert caught.value.reason == "ChartPullError"
    assert not caught.value.stalled


def test_a_version_with_metadata_is_pushed_with_an_underscore() -> None:
    assert chart_tag("1.2.0+build.7") == "1.2.0_build.7"


@pytest.mark.parametrize(
    ("base", "override", "merged"),
    [
        pytest.param({"a": 1}, {"b": 2}, {"a": 1, "b": 2}, id="new-key"),
        pytest.param({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}, id="deep"),
        pytest.param({"a": {"x": 1}}, {"a": [1]}, {"a": [1]}, id="list-replaces-map"),
        pytest.param({"a": [1, 2]}, {"a": [3]}, {"a": [3]}, id="lists-replace"),
    ],
)
def test_merge_values(base: dict[str, Any], override: dict[str, Any], merged: Any) -> None:
    assert merge_values(base, override) == merged


@pytest.mark.parametrize(
    ("files", "listed"),
    [
        pytest.param(None, [], id="none"),
        pytest.param(["values.yaml"], [], id="values-yaml-alone"),
        pytest.param(["./values.yaml"], [], id="values-yaml-alone-dotted"),
        pytest.param(["values.yaml", "prod.yaml"], ["values.yaml", "prod.yaml"], id="two"),
    ],
)
def test_values_files(files: list[str] | None, listed: list[str]) -> None:
    assert values_files(files) == listed


@pytest.mark.parametrize(
    ("version", "result"),
    [
        pytest.param("1.0.0", "1.0.0+4", id="plain"),
        pytest.param("1.0.0+old", "1.0.0+4", id="metadata-replaced"),
        pytest.param("1.0.0-rc.1", "1.0.0-rc.1+4", id="prerelease-kept"),
    ],
)
def test_with_metadata(version: str, result: str) -> None:
    assert with_metadata(version, "4") == result


def test_with_metadata_refuses_a_non_semver_version() -> None:
    with pytest.raises(ChartBuildError) as caught:
        with_metadata("not-a-version", "4")
    assert caught.value.reason == "MetadataPatchError"
