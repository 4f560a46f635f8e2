"""Charts built from a GitRepository or Bucket artifact, as Flux's local chart builder does.

- :func:`locate_chart`: ``spec.chart`` is a path in the unpacked artifact, to a chart directory
  or a packaged chart; it may not leave the artifact (Flux clamps such a path to the root with
  ``securejoin``; weir refuses it, so that a typo is not silently another chart). Its
  ``Chart.yaml`` gives the name and version.
- :func:`version_metadata`: the SemVer build metadata Flux puts on the version: with
  ``reconcileStrategy: Revision`` the first 12 hex digits of the source revision's hash (a Git
  commit, a Bucket's sha256), with values files the generation, both joined by ``.``.
- :func:`prepare_chart`: values files (paths relative to the artifact root) merged into the
  chart's ``values.yaml``, and the dependencies of a chart directory that are missing from its
  ``charts/`` resolved: a ``file://`` one (a path relative to the chart, inside the artifact)
  is packaged into ``charts/`` by Helm, if its version satisfies the constraint; the remote
  ones are returned for the reconciler to download.
- :func:`package` (:mod:`source.chartbuild`) packages it at the version.

Which dependencies are missing is Helm's own answer (``helm dependency list``); packaging is
Helm's ``helm package``, which refuses a chart whose dependencies are still not all there.
Blocking functions: run them in a thread.
"""

from __future__ import annotations

import posixpath
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python

from controllers.artifact import ArtifactError, extract_tarball
from controllers.safeyaml import YAMLLoadError, load
from controllers.semver import InvalidConstraint, parse_constraints, parse_version
from source.chartbuild import ChartBuildError, merge_files, package, write_values

__all__ = [
    "Dependency",
    "LocalChart",
    "copy_packaged",
    "locate_chart",
    "prepare_chart",
    "version_metadata",
]

INVALID_CHART_REFERENCE = "InvalidChartReference"
DEPENDENCY_BUILD_ERROR = "DependencyBuildError"
_MAX_UNPACKED = 100 * 1024 * 1024
_MAX_CHART_YAML = 1024 * 1024
_HASH_LENGTH = 12


@dataclass(frozen=True)
class Dependency:
    """A dependency of ``Chart.yaml`` (or ``Chart.lock``, which takes precedence)."""

    name: str
    version: str
    repository: str
    alias: str = ""


@dataclass
class LocalChart:
    """A chart found in the artifact: its metadata, and where it is unpacked."""

    name: str
    version: str
    directory: Path  # the chart's directory (unpacked into the work dir when packaged)
    archive: Path | None = None  # the packaged chart in the artifact, if it is one
    dependencies: list[Dependency] = field(default_factory=list)


def version_metadata(
    *, strategy: str, kind: str, revision: str, values_files: bool, generation: int | None
) -> str:
    """Flux's build metadata for a chart from a GitRepository or Bucket: the source revision's
    hash (12 hex digits) with the ``Revision`` strategy, then the generation with values
    files; empty for none."""
    parts = []
    if strategy == "Revision":
        hash_ = revision
        if kind == "GitRepository":
            # <ref>@sha1:<hex> (or the older <ref>/<hex>): the commit's hex.
            hash_ = revision.rpartition("@")[2] if "@" in revision else revision.rpartition("/")[2]
            hash_ = hash_.rpartition(":")[2]
        elif ":" in revision:
            hash_ = revision.partition(":")[2]
        parts.append(hash_[:_HASH_LENGTH])
    if values_files:
        parts.append(str(generation or 0))
    return ".".join(parts)


def locate_chart(root: Path, path: str, workdir: Path) -> LocalChart:
    """The chart at ``path`` in the artifact unpacked at ``root``; a packaged chart is
    unpacked into ``workdir``."""
    target = _inside(root, path)
    if target.is_dir():
        chart = LocalChart("", "", target)
    elif target.is_file():
        unpacked = workdir / "unpacked"
        try:
            extract_tarball(target, unpacked, _MAX_UNPACKED)
        except ArtifactError as err:
            raise _invalid(f"failed to load chart '{path}': {err}") from None
        found = sorted(unpacked.glob("*/Chart.yaml"))
        if not found:
            raise _invalid(f"failed to load chart '{path}': no Chart.yaml in the archive")
        chart = LocalChart("", "", found[0].parent, archive=target)
    else:
        raise _invalid(f"no chart found at path '{path}' in the source artifact")
    metadata = _chart_yaml(chart.directory / "Chart.yaml", path)
    chart.name = str(metadata.get("name") or "")
    chart.version = str(metadata.get("version") or "")
    if not chart.name or not chart.version:
        raise _invalid(f"chart at path '{path}': Chart.yaml needs a name and a version")
    if parse_version(chart.version) is None:
        raise _invalid(
            f"chart at path '{path}': version '{chart.version}' is not a valid semantic version"
        )
    requirements = metadata.get("dependencies")
    lock = chart.directory / "Chart.lock"
    if lock.is_file() and not lock.is_symlink():
        # As Flux: the lock file's exact versions take precedence.
        requirements = _chart_yaml(lock, f"{path}/Chart.lock").get("dependencies")
    chart.dependencies = [_dependency(item) for item in requirements or [] if item]
    return chart


def prepare_chart(
    root: Path,
    chart: LocalChart,
    files: Sequence[str],
    *,
    ignore_missing: bool,
) -> tuple[list[str], int, list[Dependency]]:
    """Merge the values ``files`` (relative to ``root``) into the chart, and add to the
    ``charts/`` of a chart directory the missing dependencies found in the artifact. Returns
    the files merged, the number of dependencies added, and the missing remote ones."""
    used: list[str] = []
    if files:
        merged, used = merge_files(root, files, ignore_missing=ignore_missing)
        write_values(chart.directory, merged)
    if chart.archive is not None or not chart.dependencies:
        return used, 0, []
    missing = _missing(chart)
    added, remote = 0, []
    for dependency in missing:
        if dependency.repository and not dependency.repository.startswith("file://"):
            remote.append(dependency)
            continue
        _add_local(root, chart.directory, dependency)
        added += 1
    return used, added, remote


def copy_packaged(chart: LocalChart, destination: Path) -> Path:
    """The packaged chart of the artifact, copied as it is into ``destination``."""
    assert chart.archive is not None
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / f"{chart.name}-{chart.version}.tgz"
    shutil.copyfile(chart.archive, target)
    return target


def _missing(chart: LocalChart) -> list[Dependency]:
    """The dependencies Helm finds missing from ``charts/``."""
    try:
        statuses = helm_python.dependency_list(chart.directory)
    except helm_python.HelmError as err:
        raise ChartBuildError(
            f"failed to list dependencies: {_first_line(err)}", DEPENDENCY_BUILD_ERROR
        ) from None
    missing = {str(item.get("name")) for item in statuses if item.get("status") == "missing"}
    return [dependency for dependency in chart.dependencies if dependency.name in missing]


def _add_local(root: Path, chart_dir: Path, dependency: Dependency) -> None:
    """Package the dependency found in the artifact into the chart's ``charts/``."""
    name = dependency.alias or dependency.name

    def failed(problem: str, *, stalled: bool = False) -> ChartBuildError:
        return ChartBuildError(
            f"failed to add local dependency '{name}': {problem}",
            DEPENDENCY_BUILD_ERROR,
            stalled=stalled,
        )

    relative_chart = chart_dir.relative_to(root).as_posix()
    if dependency.repository:
        url = urlsplit(dependency.repository)
        reference = posixpath.join(relative_chart, url.netloc + url.path)
    else:
        reference = posixpath.join(relative_chart, "charts", dependency.name)
    try:
        source = _inside(root, reference)
    except ChartBuildError:
        raise failed(
            f"'{dependency.repository}' is outside the source artifact", stalled=True
        ) from None
    if not (source / "Chart.yaml").is_file():
        shown = posixpath.normpath(reference)
        raise failed(f"no chart found at '{shown}' (reference '{dependency.repository}')")
    try:
        constraints = parse_constraints(dependency.version or "*")
    except InvalidConstraint as err:
        raise failed(f"invalid version/constraint format '{dependency.version}': {err}") from None
    try:
        metadata = _chart_yaml(source / "Chart.yaml", reference)
    except ChartBuildError as err:
        raise failed(err.message) from None
    version = parse_version(str(metadata.get("version") or ""))
    if version is None or not constraints.check(version):
        raise failed(f"can't get a valid version for constraint '{dependency.version}'")
    package(source, chart_dir / "charts", None)


def _inside(root: Path, path: str) -> Path:
    """``root``/``path``, refused when ``path`` is absolute or leads (through ``..`` or a
    link) out of ``root``."""
    if not path or posixpath.isabs(path):
        raise _invalid(f"chart path '{path}' must be relative to the source artifact")
    relative = posixpath.normpath(path)
    if relative == ".." or relative.startswith("../"):
        raise _invalid(f"chart path '{path}' is outside the source artifact")
    target = root / relative
    if not target.resolve().is_relative_to(root.resolve()):
        raise _invalid(f"chart path '{path}' is outside the source artifact")
    return target


def _chart_yaml(path: Path, shown: str) -> dict[str, Any]:
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"no {path.name} found")
        if path.stat().st_size > _MAX_CHART_YAML:
            raise ValueError(f"{path.name} is larger than {_MAX_CHART_YAML} bytes")
        data = path.read_bytes()
        metadata = load(data, what=path.name) if data.strip() else None
    except (YAMLLoadError, ValueError, OSError) as err:
        raise _invalid(f"failed to load chart metadata at '{shown}': {err}") from None
    if not isinstance(metadata, dict):
        raise _invalid(f"failed to load chart metadata at '{shown}': not a mapping")
    return metadata


def _dependency(item: Any) -> Dependency:
    if not isinstance(item, dict) or not item.get("name"):
        raise _invalid("a dependency in Chart.yaml has no name")
    return Dependency(
        name=str(item["name"]),
        version=str(item.get("version") or ""),
        repository=str(item.get("repository") or ""),
        alias=str(item.get("alias") or ""),
    )


def _invalid(message: str) -> ChartBuildError:
    return ChartBuildError(message, INVALID_CHART_REFERENCE)


def _first_line(err: Exception) -> str:
    return (str(err).strip() or type(err).__name__).splitlines()[0]
