"""HelmChart: the version Flux would choose from an index, where a chart URL points, which
HelmCharts a HelmRepository change requeues, and the model's defaults."""

from __future__ import annotations

from typing import Any

import pytest

from source.api_v1 import HelmChart
from source.conditions import FetchError
from source.helmchart import ChartVersion, chart_url, charts_of_new_index, select_version


def entry(version: str, created: str = "2026-01-01T00:00:00Z", name: str = "podinfo") -> Any:
    return {"name": name, "version": version, "created": created, "urls": [f"{name}-{version}.tgz"]}


INDEX = {
    "apiVersion": "v1",
    "entries": {
        "podinfo": [
            entry("2.0.0-rc.1"),
            entry("1.10.0"),
            entry("1.2.0"),
            entry("1.2.0+build.2", created="2026-02-01T00:00:00Z"),
            entry("0.9.0"),
        ],
        "empty": [],
    },
}


@pytest.mark.parametrize(
    ("wanted", "version"),
    [
        pytest.param("*", "1.10.0", id="star-is-highest-stable"),
        pytest.param("", "1.10.0", id="empty-is-highest-stable"),
        pytest.param("1.x", "1.10.0", id="range-numeric-order"),
        pytest.param("<1.5.0", "1.2.0+build.2", id="tie-broken-by-later-created"),
        pytest.param(">=2.0.0-0", "2.0.0-rc.1", id="prerelease-when-asked"),
        pytest.param("0.9.0", "0.9.0", id="exact"),
        pytest.param("1.2.0", "1.2.0", id="exact-string-before-range"),
        pytest.param("~0.9", "0.9.0", id="tilde"),
    ],
)
def test_the_version_chosen_is_fluxs(wanted: str, version: str) -> None:
    chosen = select_version(INDEX, "podinfo", wanted)
    assert chosen == ChartVersion("podinfo", version, (f"podinfo-{version}.tgz",))


@pytest.mark.parametrize(
    ("name", "wanted", "message"),
    [
        pytest.param(
            "podinfo",
            "3.x",
            "invalid chart reference: failed to get chart version for remote reference: "
            "no 'podinfo' chart with version matching '3.x' found",
            id="no-match",
        ),
        pytest.param(
            "nginx",
            "*",
            "invalid chart reference: failed to get chart version for remote reference: "
            "no chart name found",
            id="no-name",
        ),
        pytest.param(
            "empty",
            "*",
            "invalid chart reference: failed to get chart version for remote reference: "
            "no chart version found",
            id="no-versions",
        ),
        pytest.param(
            "Podinfo",
            "*",
            "invalid chart reference: invalid chart name 'Podinfo': a valid name must be lower "
            "case letters and numbers and MAY be separated with dashes (-), slashes (/) or "
            "periods (.)",
            id="bad-name",
        ),
    ],
)
def test_no_version_is_a_stalling_invalid_reference(name: str, wanted: str, message: str) -> None:
    with pytest.raises(FetchError) as caught:
        select_version(INDEX, name, wanted)
    assert (caught.value.reason, caught.value.message, caught.value.stalled) == (
        "InvalidChartReference",
        message,
        True,
    )


def test_a_bad_range_is_an_invalid_reference() -> None:
    with pytest.raises(FetchError) as caught:
        select_version(INDEX, "podinfo", ">=1.0.0 <<2")
    assert caught.value.reason == "InvalidChartReference"
    assert caught.value.stalled


def test_a_long_near_miss_name_is_refused_quickly() -> None:
    # Python's regex engine backtracks exponentially on Flux's pattern unless it is atomic.
    with pytest.raises(FetchError):
        select_version(INDEX, "a." * 40 + "A", "*")


@pytest.mark.parametrize(
    ("repository", "reference", "expected"),
    [
        pytest.param(
            "https://charts.example/",
            "podinfo-1.0.0.tgz",
            "https://charts.example/podinfo-1.0.0.tgz",
        ),
        pytest.param(
            "https://charts.example/stable",
            "podinfo-1.0.0.tgz",
            "https://charts.example/stable/podinfo-1.0.0.tgz",
            id="base-is-a-directory",
        ),
        pytest.param(
            "https://charts.example/stable/",
            "../other/podinfo-1.0.0.tgz",
            "https://charts.example/other/podinfo-1.0.0.tgz",
            id="relative-up",
        ),
        pytest.param(
            "https://charts.example/stable?token=t",
            "podinfo-1.0.0.tgz",
            "https://charts.example/stable/podinfo-1.0.0.tgz?token=t",
            id="query-kept",
        ),
        pytest.param(
            "https://charts.example/",
            "https://cdn.example/podinfo-1.0.0.tgz",
            "https://cdn.example/podinfo-1.0.0.tgz",
            id="absolute",
        ),
    ],
)
def test_chart_urls_resolve_as_helm_does(repository: str, reference: str, expected: str) -> None:
    assert str(chart_url(repository, reference)) == expected


def helmchart(name: str, source: str, observed: str | None, namespace: str = "apps") -> Any:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"sourceRef": {"kind": "HelmRepository", "name": source}},
        "status": {"observedSourceArtifactRevision": observed} if observed else {},
    }


def repository(revision: str | None, namespace: str = "apps") -> Any:
    status = {"artifact": {"revision": revision}} if revision else {}
    return {"metadata": {"name": "charts", "namespace": namespace}, "status": status}


def test_a_new_index_requeues_the_charts_that_have_not_seen_it() -> None:
    charts = [
        helmchart("fresh", "charts", None),
        helmchart("behind", "charts", "sha256:old"),
        helmchart("current", "charts", "sha256:new"),
        helmchart("other-source", "other", None),
        helmchart("other-namespace", "charts", None, namespace="elsewhere"),
    ]
    keys = charts_of_new_index(repository("sha256:old"), repository("sha256:new"), charts)
    assert keys == ["apps/fresh", "apps/behind"]
    assert charts_of_new_index(repository(None), repository(None), charts) == []
    assert charts_of_new_index(repository("sha256:new"), None, charts) == []


def test_the_model_has_fluxs_defaults() -> None:
    chart = HelmChart.model_validate(
        {
            "metadata": {"name": "podinfo", "namespace": "apps"},
            "spec": {
                "chart": "podinfo",
                "interval": "5m",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            },
        }
    )
    assert (chart.spec.version, chart.spec.reconcile_strategy) == ("*", "ChartVersion")
    assert chart.interval_seconds == 300
    assert not chart.suspended
