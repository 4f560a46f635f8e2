"""The Helm chart's files that follow from the rest of the repository: its CRD templates, made
from crds/ by hack/generate_chart_crds.py, and its versions. (helm itself lints and renders the
chart in tests/integration/test_chart.py.)"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from hack.generate_chart_crds import (
    CHART_CRDS_DIR,
    CRDS_DIR,
    chart_template,
    main,
    rendered_templates,
    stale_files,
    values_key,
    write_templates,
)
from weir.bundle import COMPONENTS

CHART_YAML = CHART_CRDS_DIR.parents[1] / "Chart.yaml"
VALUES_YAML = CHART_CRDS_DIR.parents[1] / "values.yaml"


def test_chart_crds_are_up_to_date() -> None:
    assert stale_files() == [], "the chart's CRDs are stale: run python hack/generate_chart_crds.py"


def test_every_crd_has_a_chart_template() -> None:
    assert sorted(rendered_templates()) == sorted(path.name for path in CRDS_DIR.glob("*.yaml"))


@pytest.mark.parametrize(
    ("damage", "stale"),
    [
        pytest.param("edit", ["source.toolkit.fluxcd.io_buckets.yaml"], id="edited"),
        pytest.param("remove", ["source.toolkit.fluxcd.io_buckets.yaml"], id="missing"),
        pytest.param("extra", ["stray.yaml"], id="no-such-crd"),
    ],
)
def test_check_names_stale_templates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, stale: list[str]
) -> None:
    assert sorted(write_templates(tmp_path)) == sorted(rendered_templates())
    target = tmp_path / "source.toolkit.fluxcd.io_buckets.yaml"
    if damage == "edit":
        target.write_text(target.read_text().replace("Bucket", "Bukket"))
    elif damage == "remove":
        target.unlink()
    else:
        (tmp_path / "stray.yaml").write_text("{}\n")
    assert stale_files(tmp_path) == stale
    assert main(["--check", f"--dir={tmp_path}"]) == 1
    assert stale[0] in capsys.readouterr().err
    assert main([f"--dir={tmp_path}"]) == 0
    assert stale_files(tmp_path) == []


def test_a_template_is_the_crd_with_the_chart_labels_under_its_switches() -> None:
    text = (CRDS_DIR / "kustomize.toolkit.fluxcd.io_kustomizations.yaml").read_text()
    owners = {("kustomize.toolkit.fluxcd.io", "Kustomization"): "kustomize-controller"}
    lines = chart_template("k.yaml", text, owners).splitlines()
    assert lines[1] == "{{- if and .Values.installCRDs .Values.kustomizeController.create }}"
    assert lines[-1] == "{{- end }}"
    labels = lines.index("  labels:")
    assert lines[labels - 1] == "metadata:"
    assert '"component" "kustomize-controller"' in lines[labels + 1]
    # Everything else is the CRD file, line for line.
    assert [*lines[2:labels], *lines[labels + 2 : -1]] == text.splitlines()


def test_template_delimiters_in_a_crd_are_escaped() -> None:
    text = (CRDS_DIR / "kustomize.toolkit.fluxcd.io_kustomizations.yaml").read_text()
    text = text.replace("kind: Kustomization\n", "kind: Kustomization\n    x: '{{ .y }}'\n", 1)
    owners = {("kustomize.toolkit.fluxcd.io", "Kustomization"): "kustomize-controller"}
    assert """'{{ "{{" }} .y }}'""" in chart_template("k.yaml", text, owners)


def test_a_crd_no_component_reconciles_is_refused() -> None:
    text = (CRDS_DIR / "kustomize.toolkit.fluxcd.io_kustomizations.yaml").read_text()
    with pytest.raises(ValueError, match=r"no component of weir/bundle\.py reconciles"):
        chart_template("k.yaml", text, {})


def test_every_component_has_its_values() -> None:
    values = yaml.safe_load(VALUES_YAML.read_text())
    # Off for the extras, as Flux's chart and flux install leave its image controllers out.
    for name, component in COMPONENTS.items():
        assert values[values_key(name)]["create"] is not component.extra, name
        assert values[values_key(name)]["resources"]["requests"]["cpu"] == component.cpu_request


def test_the_chart_versions_are_weirs() -> None:
    chart = yaml.safe_load(CHART_YAML.read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == version("weir")
