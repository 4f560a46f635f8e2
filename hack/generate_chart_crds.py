"""Write the Helm chart's CRD templates from crds/, or check that they are up to date.

    python hack/generate_chart_crds.py           # regenerate charts/weir/templates/crds/
    python hack/generate_chart_crds.py --check   # exit 1 and name the stale files

Each file of crds/ (itself generated from the models by hack/generate_crds.py) becomes a
template of the same name: the CRD as it is, with the chart's labels added to its metadata,
rendered only when ``installCRDs`` and the create value of the controller that owns the kind
(``COMPONENTS`` in weir/bundle.py) are both true. CRDs are templates rather than the chart's
``crds/`` directory because Helm installs that directory once and never upgrades it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

# Run as a script, Python puts hack/ on sys.path, not the repository root the packages live in.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hack.generate_crds import generator_main  # noqa: E402
from weir.bundle import COMPONENTS  # noqa: E402

CRDS_DIR = REPO_ROOT / "crds"
CHART_CRDS_DIR = REPO_ROOT / "charts" / "weir" / "templates" / "crds"


def values_key(component: str) -> str:
    """The chart's values key of a component: ``source-controller`` -> ``sourceController``."""
    first, *rest = component.split("-")
    return first + "".join(word.capitalize() for word in rest)


def _owners() -> dict[tuple[str, str], str]:
    """(group, kind) -> the name of the component that reconciles it."""
    return {
        (model.info.group, model.info.kind): component.name
        for component in COMPONENTS.values()
        for model in component.kinds
    }


def chart_template(name: str, text: str, owners: dict[tuple[str, str], str]) -> str:
    """The chart template of the CRD file ``name`` whose YAML is ``text``."""
    crd = yaml.safe_load(text)
    key = (crd["spec"]["group"], crd["spec"]["names"]["kind"])
    if key not in owners:
        raise ValueError(f"crds/{name}: no component of weir/bundle.py reconciles {key[1]}")
    if "labels" in crd["metadata"]:
        raise ValueError(f"crds/{name}: has labels of its own; the chart sets them")
    component = owners[key]
    lines = text.replace("{{", '{{ "{{" }}').splitlines()
    metadata = lines.index("metadata:")
    lines[metadata + 1 : metadata + 1] = [
        "  labels:",
        f'    {{{{- include "weir.labels" (dict "context" $ "component" "{component}")'
        " | nindent 4 }}",
    ]
    head = [
        f"{{{{- /* Generated from crds/{name} by hack/generate_chart_crds.py: do not edit. */}}}}",
        f"{{{{- if and .Values.installCRDs .Values.{values_key(component)}.create }}}}",
    ]
    return "\n".join([*head, *lines, "{{- end }}", ""])


def rendered_templates(crds_dir: Path = CRDS_DIR) -> dict[str, str]:
    """File name to chart template for every CRD file in ``crds_dir``."""
    owners = _owners()
    return {
        path.name: chart_template(path.name, path.read_text(), owners)
        for path in sorted(crds_dir.glob("*.yaml"))
    }


def stale_files(chart_dir: Path = CHART_CRDS_DIR, crds_dir: Path = CRDS_DIR) -> list[str]:
    """Names of the files in ``chart_dir`` that are missing, differ, or match no CRD file."""
    expected = rendered_templates(crds_dir)
    stale = [
        name
        for name, text in expected.items()
        if not (chart_dir / name).is_file() or (chart_dir / name).read_text() != text
    ]
    stale += [path.name for path in chart_dir.glob("*.yaml") if path.name not in expected]
    return sorted(stale)


def write_templates(chart_dir: Path = CHART_CRDS_DIR, crds_dir: Path = CRDS_DIR) -> list[str]:
    """Bring ``chart_dir`` up to date; returns the names of the files written or removed."""
    chart_dir.mkdir(parents=True, exist_ok=True)
    expected = rendered_templates(crds_dir)
    changed = stale_files(chart_dir, crds_dir)
    for name in changed:
        path = chart_dir / name
        if name in expected:
            path.write_text(expected[name])
        else:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return generator_main(
        argv,
        description=__doc__.splitlines()[0] if __doc__ else None,
        default_dir=CHART_CRDS_DIR,
        stale=stale_files,
        write=write_templates,
        script="hack/generate_chart_crds.py",
    )


if __name__ == "__main__":
    sys.exit(main())
