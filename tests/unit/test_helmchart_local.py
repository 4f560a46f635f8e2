"""Charts built from a GitRepository or Bucket artifact: the build metadata Flux puts on the
version, the chart path kept inside the artifact, and which charts a new source artifact
requeues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from source.chartbuild import ChartBuildError
from source.chartlocal import locate_chart, version_metadata
from source.helmchart import charts_of_new_artifact

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "fedcba9876543210" * 4


@pytest.mark.parametrize(
    ("strategy", "kind", "revision", "values_files", "expected"),
    [
        pytest.param("ChartVersion", "GitRepository", f"main@sha1:{COMMIT}", False, "", id="none"),
        pytest.param(
            "ChartVersion", "GitRepository", f"main@sha1:{COMMIT}", True, "7", id="values"
        ),
        pytest.param(
            "Revision", "GitRepository", f"main@sha1:{COMMIT}", False, COMMIT[:12], id="git"
        ),
        pytest.param(
            "Revision",
            "GitRepository",
            f"v1.0.0@sha1:{COMMIT}",
            True,
            f"{COMMIT[:12]}.7",
            id="git-and-values",
        ),
        pytest.param(
            "Revision", "GitRepository", f"main/{COMMIT}", False, COMMIT[:12], id="legacy"
        ),
        pytest.param("Revision", "Bucket", f"sha256:{DIGEST}", False, DIGEST[:12], id="bucket"),
    ],
)
def test_version_metadata(
    strategy: str, kind: str, revision: str, values_files: bool, expected: str
) -> None:
    found = version_metadata(
        strategy=strategy, kind=kind, revision=revision, values_files=values_files, generation=7
    )
    assert found == expected


@pytest.mark.parametrize(
    ("path", "words"),
    [
        pytest.param("../outside", "is outside the source artifact", id="dot-dot"),
        pytest.param("charts/../../x", "is outside the source artifact", id="inner-dot-dot"),
        pytest.param("/etc", "must be relative", id="absolute"),
        pytest.param("link", "is outside the source artifact", id="link-out"),
        pytest.param("missing", "no chart found at path 'missing'", id="missing"),
        pytest.param("nochart", "no Chart.yaml found", id="no-chart-yaml"),
    ],
)
def test_a_chart_path_must_name_a_chart_inside_the_artifact(
    tmp_path: Path, path: str, words: str
) -> None:
    root = tmp_path / "artifact"
    (root / "nochart").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ChartBuildError) as caught:
        locate_chart(root, path, tmp_path / "work")
    assert caught.value.reason == "InvalidChartReference"
    assert words in caught.value.message


def test_a_chart_directory_gives_name_version_and_locked_dependencies(tmp_path: Path) -> None:
    chart = tmp_path / "charts" / "app"
    chart.mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: app\nversion: 1.2.3\n"
        "dependencies:\n- name: lib\n  version: ~1\n  repository: file://../lib\n"
    )
    (chart / "Chart.lock").write_text(
        "dependencies:\n- name: lib\n  version: 1.0.4\n  repository: file://../lib\n"
    )
    found = locate_chart(tmp_path, "./charts/app/", tmp_path / "work")
    assert (found.name, found.version, found.archive) == ("app", "1.2.3", None)
    assert [(d.name, d.version) for d in found.dependencies] == [("lib", "1.0.4")]


def chart(name: str, kind: str, source: str, observed: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"sourceRef": {"kind": kind, "name": source}},
        "status": {"observedSourceArtifactRevision": observed} if observed else {},
    }


def source(name: str, revision: str | None) -> dict[str, Any]:
    status = {"artifact": {"revision": revision}} if revision else {}
    return {"metadata": {"name": name, "namespace": "ns"}, "status": status}


def test_a_new_source_artifact_requeues_the_charts_built_from_it() -> None:
    charts = [
        chart("behind", "GitRepository", "repo", "main@sha1:old"),
        chart("current", "GitRepository", "repo", "main@sha1:new"),
        chart("never", "GitRepository", "repo", None),
        chart("other-kind", "Bucket", "repo", "main@sha1:old"),
        chart("other-source", "GitRepository", "other", "main@sha1:old"),
    ]
    requeue = charts_of_new_artifact("GitRepository")
    assert requeue(None, source("repo", "main@sha1:new"), charts) == ["ns/behind", "ns/never"]
    assert requeue(None, source("repo", None), charts) == []
    assert requeue(source("repo", "x"), None, charts) == []
