"""The CustomResourceDefinitions a packaged chart installs apart from its manifest: the files of
its own ``crds/`` directory, not its subcharts' nor its templates."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from helm.inventory import chart_crds

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}
"""


def package(path: Path, files: dict[str, str], binary: dict[str, bytes] | None = None) -> Path:
    contents = {name: text.encode() for name, text in files.items()} | (binary or {})
    with tarfile.open(path, "w:gz") as archive:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_the_charts_crds_then_its_subcharts_in_file_order(tmp_path: Path) -> None:
    packaged_sub = package(
        tmp_path / "packed-0.1.0.tgz",
        {
            "packed/Chart.yaml": "apiVersion: v2\nname: packed\nversion: 0.1.0\n",
            "packed/crds/e.yaml": CRD.format(name="es.example.com"),
        },
    ).read_bytes()
    chart = package(
        tmp_path / "app-1.0.0.tgz",
        {
            "app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
            "app/crds/b.yaml": CRD.format(name="bs.example.com"),
            "app/crds/a.yaml": CRD.format(name="as.example.com"),
            "app/templates/crd.yaml": CRD.format(name="templated.example.com"),
            "app/charts/sub/crds/d.yaml": CRD.format(name="ds.example.com"),
            "app/charts/sub/templates/x.yaml": CRD.format(name="not.example.com"),
        },
        binary={"app/charts/packed-0.1.0.tgz": packaged_sub},
    )

    names = [crd["metadata"]["name"] for crd in chart_crds(chart)]

    assert names == ["as.example.com", "bs.example.com", "es.example.com", "ds.example.com"]


def test_the_charts_own_crds_in_file_order(tmp_path: Path) -> None:
    chart = package(
        tmp_path / "app-1.0.0.tgz",
        {
            "app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
            "app/crds/b.yaml": CRD.format(name="bs.example.com"),
            "app/crds/a.yaml": CRD.format(name="as.example.com")
            + "---\n"
            + CRD.format(name="cs.example.com"),
            "app/crds/README.md": "not a manifest",
            "app/templates/crd.yaml": CRD.format(name="templated.example.com"),
            "app/charts/sub/crds/d.yaml": CRD.format(name="ds.example.com"),
        },
    )

    names = [crd["metadata"]["name"] for crd in chart_crds(chart)]

    assert names == ["as.example.com", "cs.example.com", "bs.example.com", "ds.example.com"]
