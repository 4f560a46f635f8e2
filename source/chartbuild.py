"""Packaging a chart as Flux's chart builders do: values files merged into ``values.yaml``, and
build metadata on the version.

- :func:`values_files`: the list ``spec.valuesFiles`` asks to merge; ``["values.yaml"]`` alone
  is the chart as it is (Flux's ``GetValuesFiles``).
- :func:`with_metadata`: a version with SemVer build metadata set (Flux's ``SetMetadata``:
  any metadata the version had is replaced), e.g. ``6.0.0+3`` for generation 3.
- :func:`repackage`: unpack a packaged chart, overwrite its ``values.yaml`` with the merged
  values files (in order, the later winning, maps merged deeply; the chart's own values only
  when ``values.yaml`` is listed) and package it again at the given version.

Packaging is real Helm (``helm_python.package``, Helm's Go SDK in process: ``helm package``
with ``--version``), run in a thread; packaging needs none of Helm's home directories.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import helm_python
import yaml

from controllers.artifact import ArtifactError, extract_tarball
from controllers.safeyaml import YAMLLoadError, load
from controllers.semver import parse_version

__all__ = [
    "ChartBuildError",
    "merge_files",
    "merge_values",
    "package",
    "repackage",
    "values_files",
    "with_metadata",
    "write_values",
]

VALUES_FILE = "values.yaml"
# A chart is at most 10 MiB packed; what it unpacks to is bounded too.
_MAX_UNPACKED = 100 * 1024 * 1024
# A values file bigger than this is not one Flux would merge sensibly either.
_MAX_VALUES_FILE = 10 * 1024 * 1024


class ChartBuildError(Exception):
    """The chart could not be built: ``reason`` is Flux's build error reason
    (``ValuesFilesError``, ``PackageError``, ``MetadataPatchError``)."""

    def __init__(self, message: str, reason: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        # Beyond Flux's persistent reasons: what no retry can mend (a path leaving the source).
        self.stalled = stalled


def values_files(files: Sequence[str] | None) -> list[str]:
    """The values files to merge; empty when there is nothing to change."""
    listed = list(files or [])
    if len(listed) == 1 and posixpath.normpath(listed[0]) == VALUES_FILE:
        return []
    return listed


def with_metadata(version: str, metadata: str) -> str:
    """``version`` with its build metadata set to ``metadata``."""
    parsed = parse_version(version)
    if parsed is None:
        raise ChartBuildError(
            "failed to parse version from chart metadata as SemVer: "
            f"invalid semantic version '{version}'",
            "MetadataPatchError",
        )
    base = str(parsed).split("+", 1)[0]
    return f"{base}+{metadata}"


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base`` (Flux's ``transform.MergeMaps``): maps merge
    key by key, any other value replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_values(current, value)
        else:
            merged[key] = value
    return merged


def repackage(
    archive: Path,
    workdir: Path,
    files: Sequence[str],
    *,
    ignore_missing: bool,
    version: str,
) -> tuple[Path, list[str]]:
    """The chart ``archive`` packaged again into ``workdir`` at ``version``, its values the
    merge of ``files``; returns the new archive and the files that were merged. Blocking:
    call it in a thread."""
    unpacked = workdir / "unpacked"
    try:
        extract_tarball(archive, unpacked, _MAX_UNPACKED)
    except ArtifactError as err:
        raise ChartBuildError(
            f"failed to load downloaded chart: {err}", "ChartPackageError"
        ) from None
    found = sorted(unpacked.glob("*/Chart.yaml"))
    if not found:
        raise ChartBuildError(
            "failed to load downloaded chart: no Chart.yaml in the archive", "ChartPackageError"
        )
    chart_dir = found[0].parent
    used = merge_into_chart(chart_dir, files, ignore_missing=ignore_missing)
    return package(chart_dir, workdir / "packaged", version), used


def merge_into_chart(chart_dir: Path, files: Sequence[str], *, ignore_missing: bool) -> list[str]:
    """Overwrite ``values.yaml`` of the chart at ``chart_dir`` with the merge of ``files``
    (paths relative to the chart); the files merged, in order."""
    merged, used = merge_files(chart_dir, files, ignore_missing=ignore_missing)
    write_values(chart_dir, merged)
    return used


def merge_files(
    base: Path, files: Sequence[str], *, ignore_missing: bool
) -> tuple[dict[str, Any], list[str]]:
    """The merge of the values ``files`` (paths relative to ``base``, which they may not
    leave), in order, the later winning; and the files merged."""
    merged: dict[str, Any] = {}
    used: list[str] = []
    for name in files:
        values = _read_values(base, name, ignore_missing=ignore_missing)
        if values is None:
            continue
        merged = merge_values(merged, values)
        used.append(name)
    return merged, used


def write_values(chart_dir: Path, values: dict[str, Any]) -> None:
    """Replace the chart's ``values.yaml`` with ``values``."""
    text = yaml.safe_dump(values, sort_keys=True, allow_unicode=True) if values else "{}\n"
    (chart_dir / VALUES_FILE).write_text(text, encoding="utf-8")


def package(chart_dir: Path, destination: Path, version: str | None) -> Path:
    """``helm package`` of ``chart_dir`` into ``destination`` (``--version`` when given)."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        return Path(helm_python.package(chart_dir, destination=destination, version=version))
    except helm_python.HelmError as err:
        raise ChartBuildError(
            f"failed to package chart: {_first_line(err)}", "ChartPackageError"
        ) from None


def _read_values(base: Path, name: str, *, ignore_missing: bool) -> dict[str, Any] | None:
    relative = posixpath.normpath(name.lstrip("/"))
    if relative.startswith("../") or relative == "..":
        raise ChartBuildError(
            f"failed to merge chart values: values file '{name}' is outside the chart source",
            "ValuesFilesError",
        )
    path = base / relative
    if not path.is_file() or path.is_symlink():
        if ignore_missing:
            return None
        raise ChartBuildError(
            f"failed to merge chart values: no values file found at path '{name}'",
            "ValuesFilesError",
        )
    if path.stat().st_size > _MAX_VALUES_FILE:
        raise ChartBuildError(
            f"failed to merge chart values: values file '{name}' is larger than "
            f"{_MAX_VALUES_FILE} bytes",
            "ValuesFilesError",
        )
    try:
        data = path.read_bytes()
        values = load(data, what=name) if data.strip() else {}
    except (YAMLLoadError, OSError) as err:
        raise ChartBuildError(
            f"failed to merge chart values: unmarshaling values from '{name}' failed: {err}",
            "ValuesFilesError",
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ChartBuildError(
            f"failed to merge chart values: unmarshaling values from '{name}' failed: "
            "not a mapping",
            "ValuesFilesError",
        )
    return values


def _first_line(err: Exception) -> str:
    return (str(err).strip() or type(err).__name__).splitlines()[0]
