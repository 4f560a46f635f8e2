"""Write the CRD of every weir kind to crds/, or check that crds/ is up to date.

    python hack/generate_crds.py           # regenerate crds/
    python hack/generate_crds.py --check   # exit 1 and name the stale files

Kinds are the CustomResource subclasses defined in the modules of API_MODULES; a new API
group/version is one more line there. Files are named as in Flux: ``<group>_<plural>.yaml``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Run as a script, Python puts hack/ on sys.path, not the repository root the packages live in.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from controllers.api import CustomResource  # noqa: E402
from controllers.crd import render_yaml  # noqa: E402

API_MODULES = (
    "source.api_v1",
    "kustomize.api_v1",
    "helm.api_v2",
    "notification.api_v1",
    "notification.api_v1beta3",
    "image_automation.api_v1",
)

CRDS_DIR = REPO_ROOT / "crds"


def kinds() -> list[list[type[CustomResource]]]:
    """Every kind's models, one list of versions per kind, in API_MODULES order."""
    by_kind: dict[tuple[str, str], list[type[CustomResource]]] = {}
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, CustomResource)
                and value.__module__ == module_name
                and "info" in vars(value)
            ):
                by_kind.setdefault((value.info.group, value.info.kind), []).append(value)
    return list(by_kind.values())


def crd_file_name(model: type[CustomResource]) -> str:
    """Flux's CRD file name: ``<group>_<plural>.yaml``."""
    return f"{model.info.group}_{model.info.plural}.yaml"


def rendered_crds() -> dict[str, str]:
    """File name to YAML for every kind."""
    return {crd_file_name(versions[0]): render_yaml(versions) for versions in kinds()}


def stale_files(crds_dir: Path = CRDS_DIR) -> list[str]:
    """Names of the files in ``crds_dir`` that are missing, differ, or belong to no kind."""
    expected = rendered_crds()
    stale = [
        name
        for name, text in expected.items()
        if not (crds_dir / name).is_file() or (crds_dir / name).read_text() != text
    ]
    stale += [path.name for path in crds_dir.glob("*.yaml") if path.name not in expected]
    return sorted(stale)


def write_crds(crds_dir: Path = CRDS_DIR) -> list[str]:
    """Bring ``crds_dir`` up to date; returns the names of the files written or removed."""
    crds_dir.mkdir(parents=True, exist_ok=True)
    expected = rendered_crds()
    changed = stale_files(crds_dir)
    for name in changed:
        path = crds_dir / name
        if name in expected:
            path.write_text(expected[name])
        else:
            path.unlink()
    return changed


def generator_main(
    argv: Sequence[str] | None,
    *,
    description: str | None,
    default_dir: Path,
    stale: Callable[[Path], list[str]],
    write: Callable[[Path], list[str]],
    script: str,
) -> int:
    """The command line of a script that keeps a directory of generated files: rewrite it, or
    with ``--check`` name the stale files and exit 1."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--check", action="store_true", help="only report stale files; exit 1 if there are any"
    )
    parser.add_argument("--dir", type=Path, default=default_dir, help="the generated directory")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.dir)
        for name in names:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        if names:
            print(f"run: python {script}", file=sys.stderr)
        return 1 if names else 0
    for name in write(args.dir):
        print(f"updated: {args.dir / name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return generator_main(
        argv,
        description=__doc__.splitlines()[0] if __doc__ else None,
        default_dir=CRDS_DIR,
        stale=stale_files,
        write=write_crds,
        script="hack/generate_crds.py",
    )


if __name__ == "__main__":
    sys.exit(main())
