"""A Helm repository's ``index.yaml``, loaded as Flux's source-controller loads it.

:func:`load_index` reads the bytes fetched from a repository (JSON, else YAML, through
:mod:`controllers.safeyaml`) and returns the index Flux keeps (``IndexFromBytes``): an
``apiVersion`` is required; each chart version gets ``apiVersion: v1`` when it has none, and
is dropped when its metadata fails Helm's checks (a name, no path in it, a SemVer version, a
known type, dependency aliases); each chart's versions are sorted highest first, as Helm's
``SortEntries`` does. :func:`index_json` is the artifact Flux stores: that index as indented
JSON (which is YAML too).

Timestamps stay the strings they were in the file (``created``, ``generated``): Helm writes
nanoseconds, which a Python datetime would cut.
"""

from __future__ import annotations

import json
import re
from typing import Any

from controllers.safeyaml import Limits, Loader, YAMLLoadError, load
from controllers.semver import Version, parse_version

__all__ = ["MAX_INDEX_SIZE", "InvalidIndex", "index_json", "load_index"]

MAX_INDEX_SIZE = 50 * 1024 * 1024
"""Flux's ``helm.MaxIndexSize``: the largest index fetched."""

# A real index spends 10 to 30 bytes per node; this bounds what a hostile one may build.
_LIMITS = Limits(max_bytes=MAX_INDEX_SIZE, max_nodes=5_000_000)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Helm's aliasNameFormat.
_ALIAS = re.compile(r"^[a-zA-Z0-9_-]+$")
_CHART_TYPES = ("", "application", "library")


class InvalidIndex(ValueError):
    """The bytes are no Helm repository index; the message never quotes them."""


class _IndexLoader(Loader):
    """The safe loader without the timestamp type: timestamps stay strings, as in JSON."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class attribute
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in Loader.yaml_implicit_resolvers.items()
    }


def load_index(data: bytes) -> dict[str, Any]:
    """The index in ``data`` as Flux keeps it (see the module docstring); raises
    :class:`InvalidIndex`."""
    if not data:
        raise InvalidIndex("empty index.yaml file")
    index = _parse(data)
    if not isinstance(index, dict):
        raise InvalidIndex("the index is not a mapping")
    if not index.get("apiVersion"):
        raise InvalidIndex("no API version specified")
    entries = index.get("entries") or {}
    if not isinstance(entries, dict):
        raise InvalidIndex("'entries' is not a mapping")
    index["entries"] = {str(name): _valid_versions(versions) for name, versions in entries.items()}
    return index


def index_json(index: dict[str, Any]) -> bytes:
    """The artifact Flux stores for ``index``: JSON indented by two spaces."""
    return json.dumps(index, indent=2, ensure_ascii=False, default=str).encode()


def _parse(data: bytes) -> Any:
    # Flux's jsonOrYamlUnmarshal: JSON when it is valid JSON, else YAML.
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidIndex("the index nests too deeply") from None
    except ValueError:
        pass
    try:
        return load(data, what="index.yaml", loader=_IndexLoader, limits=_LIMITS)
    except YAMLLoadError as err:
        raise InvalidIndex(str(err)) from None


def _valid_versions(versions: Any) -> list[dict[str, Any]]:
    """The chart versions Helm keeps, highest first; versions parse, since invalid ones go."""
    if not isinstance(versions, list):
        return []
    kept: list[tuple[Version, dict[str, Any]]] = []
    for entry in versions:
        if not isinstance(entry, dict):
            continue
        entry.setdefault("apiVersion", "v1")
        if not entry["apiVersion"]:
            entry["apiVersion"] = "v1"
        version = _checked_version(entry)
        if version is not None:
            kept.append((version, entry))
    # Stable, highest first: sort.Reverse of Helm's ChartVersions.Less.
    ordered = sorted(kept, key=lambda pair: _SortKey(pair[0]), reverse=True)
    return [entry for _, entry in ordered]


def _checked_version(entry: dict[str, Any]) -> Version | None:
    """The parsed version of a chart version whose metadata passes Helm's Validate; else
    None. Helm skips one check for indexes: duplicate dependency names (JFrog strips
    aliases)."""
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
        return None
    if entry.get("type", "") not in _CHART_TYPES:
        return None
    if any(maintainer is None for maintainer in entry.get("maintainers") or []):
        return None
    for dependency in entry.get("dependencies") or []:
        if not isinstance(dependency, dict):
            return None
        alias = dependency.get("alias")
        if alias and not (isinstance(alias, str) and _ALIAS.fullmatch(alias)):
            return None
    if not isinstance(version, str) or not version:
        return None
    return parse_version(version)


class _SortKey:
    """Orders versions as SemVer does (build metadata ignored)."""

    __slots__ = ("version",)

    def __init__(self, version: Version) -> None:
        self.version = version

    def __lt__(self, other: _SortKey) -> bool:
        return self.version.compare(other.version) < 0
