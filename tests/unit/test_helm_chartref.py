"""``chartRef`` of kind OCIRepository: the source's readiness, Flux's version-with-digest rule,
the packaged chart rewritten with that version, and which releases a changed OCIRepository
requeues."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from helm.chart import (
    OCI_REPOSITORY,
    ChartMutateError,
    ChartNotReady,
    InvalidChart,
    artifact_of,
    chart_metadata,
    oci_chart_version,
    releases_of_changed_oci_repository,
    set_chart_version,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("version", "revision", "expected"),
    [
        pytest.param("1.2.0", f"1.2.0@{DIGEST}", ("1.2.0+0123456789ab", DIGEST), id="tag"),
        pytest.param("1.2.0", DIGEST, ("1.2.0+0123456789ab", DIGEST), id="digest-only"),
        pytest.param(
            "1.2.0-rc.1+build",
            f"1.2.0-rc.1_build@{DIGEST}",
            ("1.2.0-rc.1+0123456789ab", DIGEST),
            id="prerelease-and-metadata-replaced",
        ),
        pytest.param("v1.2", f"1.2.0@{DIGEST}", ("1.2.0+0123456789ab", DIGEST), id="lenient"),
        pytest.param("1.2.0", f"latest@{DIGEST}", ("1.2.0+0123456789ab", DIGEST), id="not-semver"),
    ],
)
def test_oci_chart_version(version: str, revision: str, expected: tuple[str, str]) -> None:
    assert oci_chart_version(version, revision) == expected


@pytest.mark.parametrize(
    ("version", "revision", "message"),
    [
        pytest.param(
            "1.2.0",
            f"1.3.0@{DIGEST}",
            "artifact revision 1.3.0 does not match chart version 1.2.0",
            id="other-version",
        ),
        pytest.param("one", DIGEST, "invalid chart version one", id="bad-version"),
        pytest.param(
            "1.2.0", "1.2.0@sha256:abc", "invalid artifact revision sha256:abc", id="short"
        ),
        pytest.param("1.2.0", "main@abc", "invalid artifact revision abc", id="no-algorithm"),
    ],
)
def test_oci_chart_version_refused(version: str, revision: str, message: str) -> None:
    with pytest.raises(ChartMutateError) as err:
        oci_chart_version(version, revision)
    assert str(err.value) == message


def packaged(path: Path, chart_yaml: str, files: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in {"demo/Chart.yaml": chart_yaml, **(files or {})}.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def test_set_chart_version_rewrites_only_the_version(tmp_path: Path) -> None:
    chart = packaged(
        tmp_path / "demo.tgz",
        "apiVersion: v2\nname: demo\nversion: 1.2.0\nappVersion: '7'\n",
        {
            "demo/templates/cm.yaml": "kind: ConfigMap\n",
            "demo/charts/sub/Chart.yaml": "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
        },
    )
    set_chart_version(chart, "1.2.0+0123456789ab")
    assert chart_metadata(chart).version == "1.2.0+0123456789ab"
    with tarfile.open(chart) as archive:
        texts = {m.name: archive.extractfile(m).read().decode() for m in archive}  # type: ignore[union-attr]
    assert "appVersion: '7'" in texts["demo/Chart.yaml"]
    assert texts["demo/templates/cm.yaml"] == "kind: ConfigMap\n"
    assert texts["demo/charts/sub/Chart.yaml"].endswith("version: 0.1.0\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.tgz"]


def test_set_chart_version_without_chart_yaml(tmp_path: Path) -> None:
    chart = tmp_path / "empty.tgz"
    with tarfile.open(chart, "w:gz"):
        pass
    with pytest.raises(InvalidChart):
        set_chart_version(chart, "1.0.0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tgz"]


def oci_repository(
    revision: str | None, *, ready: str = "True", generation: int = 1, observed: int = 1
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": [{"type": "Ready", "status": ready, "message": "pulling"}],
    }
    if revision:
        status["artifact"] = {"revision": revision, "url": "http://x/chart.tgz"}
    return {
        "metadata": {"namespace": "apps", "name": "podinfo", "generation": generation},
        "status": status,
    }


def test_artifact_of_an_oci_repository() -> None:
    repo = oci_repository(f"1.2.0@{DIGEST}")
    assert artifact_of(repo, OCI_REPOSITORY.kind)["revision"] == f"1.2.0@{DIGEST}"
    with pytest.raises(ChartNotReady) as err:
        artifact_of(oci_repository(None), OCI_REPOSITORY.kind)
    assert str(err.value) == (
        "OCIRepository 'apps/podinfo' is not ready: does not have an artifact"
    )
    with pytest.raises(ChartNotReady) as err:
        artifact_of(oci_repository(DIGEST, ready="False", generation=2), OCI_REPOSITORY.kind)
    assert str(err.value) == "OCIRepository 'apps/podinfo' is not ready: pulling"


def release(
    name: str,
    ref: dict[str, Any],
    *,
    namespace: str = "apps",
    ready: str = "True",
    digest: str | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"chartRef": ref},
        "status": {
            "conditions": [{"type": "Ready", "status": ready}],
            "lastAttemptedRevisionDigest": digest,
        },
    }


NEW = f"1.2.0@{DIGEST}"
OTHER_DIGEST = "sha256:" + "f" * 64
RELEASES = [
    release("same-namespace", {"kind": "OCIRepository", "name": "podinfo"}),
    release(
        "elsewhere",
        {"kind": "OCIRepository", "name": "podinfo", "namespace": "apps"},
        namespace="team",
    ),
    release("up-to-date", {"kind": "OCIRepository", "name": "podinfo"}, digest=DIGEST),
    release("failing", {"kind": "OCIRepository", "name": "podinfo"}, ready="False", digest=DIGEST),
    release("helmchart", {"kind": "HelmChart", "name": "podinfo"}),
    release("other-repo", {"kind": "OCIRepository", "name": "nginx"}),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            oci_repository(f"1.1.0@{OTHER_DIGEST}"),
            oci_repository(NEW),
            ["apps/same-namespace", "team/elsewhere", "apps/failing"],
            id="new-revision",
        ),
        pytest.param(
            oci_repository(None),
            oci_repository(NEW),
            ["apps/same-namespace", "team/elsewhere", "apps/failing"],
            id="first-artifact",
        ),
        pytest.param(
            oci_repository(NEW, ready="False"),
            oci_repository(NEW),
            ["apps/same-namespace", "team/elsewhere", "apps/failing"],
            id="became-ready",
        ),
        pytest.param(oci_repository(NEW), oci_repository(NEW), [], id="unchanged"),
        pytest.param(oci_repository(NEW), oci_repository(None), [], id="artifact-gone"),
        pytest.param(oci_repository(NEW), None, [], id="deleted"),
    ],
)
def test_releases_of_changed_oci_repository(
    old: dict[str, Any] | None, new: dict[str, Any] | None, expected: list[str]
) -> None:
    assert releases_of_changed_oci_repository(old, new, RELEASES) == expected
