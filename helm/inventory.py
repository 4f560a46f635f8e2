"""A release's ``status.inventory``, as Flux's helm-controller builds it (``internal/inventory``):
the objects of the release manifest, hooks left out, each namespaced one without a namespace
given the release's, then the CustomResourceDefinitions of the chart's ``crds/`` directory
(Helm installs those apart from the manifest). Entries are Flux's ids
(``<namespace>_<name>_<group>_<kind>``) with the version.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers import safeyaml
from controllers.discovery import RestMapper, UnknownKind
from controllers.inventory import ObjectRef, entries_for
from helm.api_v2 import ResourceInventory, ResourceRef
from helm.drift import release_objects

__all__ = ["Inventory", "chart_crds", "release_inventory"]

HOOK_ANNOTATION = "helm.sh/hook"
# A chart's CRD files are a few hundred KiB at most; the chart itself is capped at 10 MiB.
_MAX_CRD_BYTES = 10 * 1024 * 1024
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Inventory:
    """The inventory, and the kinds whose scope could not be told (their objects are listed
    without a namespace, as Flux does, with a warning)."""

    inventory: ResourceInventory
    warnings: list[str] = field(default_factory=list)


async def release_inventory(
    mapper: RestMapper,
    manifest: str,
    release_namespace: str,
    crds: Sequence[dict[str, Any]] = (),
) -> Inventory:
    """The inventory of a release whose manifest is ``manifest``; ``crds`` from
    :func:`chart_crds`. Raises ``safeyaml.YAMLLoadError`` for an unreadable manifest."""
    objects = [
        obj
        for obj in release_objects(manifest)
        if HOOK_ANNOTATION not in ((obj.get("metadata") or {}).get("annotations") or {})
    ]
    warnings: list[str] = []
    namespaced: dict[tuple[str, str], bool | None] = {}
    refs = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        if not ref.namespace:
            key = (str(obj.get("apiVersion") or ""), ref.kind)
            if key not in namespaced:
                try:
                    namespaced[key] = (await mapper.resource_for(*key)).namespaced
                except UnknownKind as err:
                    namespaced[key] = None
                    warnings.append(
                        f"failed to determine if {ref.kind} is namespace scoped, skipping "
                        f"namespace: {err}"
                    )
            if namespaced[key]:
                ref = ObjectRef(release_namespace, ref.name, ref.group, ref.kind, ref.version)
        refs.append(ref)
    refs.extend(ObjectRef.of(crd) for crd in crds)
    entries = [ResourceRef(id=e["id"], v=e["v"]) for e in entries_for(refs)]
    return Inventory(ResourceInventory(entries=entries), warnings)


def chart_crds(chart: Path) -> list[dict[str, Any]]:
    """The objects of the files in the packaged chart's ``crds/`` directory and in its
    subcharts' (Helm's ``CRDObjects``: the chart's own first), in file order. Raises
    ``safeyaml.YAMLLoadError``."""
    with tarfile.open(chart, "r:gz") as archive:
        return _crds_of(archive)


def _crds_of(archive: tarfile.TarFile) -> list[dict[str, Any]]:
    own: list[tuple[str, dict[str, Any]]] = []
    dependencies: list[tuple[str, dict[str, Any]]] = []
    for member in sorted(archive.getmembers(), key=lambda m: m.name):
        if not member.isfile():
            continue
        parts = member.name.split("/")[1:]  # below the chart's own directory
        # charts/<sub>/.../crds/<file>, or a packaged subchart charts/<sub>.tgz
        while parts[:1] == ["charts"] and len(parts) > 2:
            parts = parts[2:]
        packaged = member.name.split("/")[1:2] == ["charts"] and member.name.endswith(".tgz")
        handle = archive.extractfile(member)
        if handle is None:
            continue
        if packaged:
            with tarfile.open(fileobj=io.BytesIO(handle.read(_MAX_CRD_BYTES)), mode="r:gz") as sub:
                dependencies.extend((member.name, crd) for crd in _crds_of(sub))
            continue
        if len(parts) != 2 or parts[0] != "crds" or not parts[1].endswith(_MANIFEST_SUFFIXES):
            continue
        text = handle.read(_MAX_CRD_BYTES).decode("utf-8", errors="replace")
        documents = safeyaml.load_all(text, what=f"chart file {member.name}")
        into = own if member.name.split("/")[1] == "crds" else dependencies
        into.extend((member.name, doc) for doc in documents if isinstance(doc, dict) and doc)
    return [crd for _, crd in own] + [crd for _, crd in dependencies]
