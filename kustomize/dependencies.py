"""``spec.dependsOn``: whether a Kustomization's dependencies are ready, and which
Kustomizations to look at again when one of them becomes ready."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization

__all__ = ["DependencyNotReady", "check_dependencies", "dependents_of_ready"]


class DependencyNotReady(Exception):
    """A dependency is missing, not ready, or behind on the shared source."""


async def check_dependencies(client: KubeClient, obj: Kustomization, revision: str) -> None:
    """Raise ``DependencyNotReady`` for the first dependency that is not ready (Flux's rules):
    it exists, has observed its generation, is Ready, and, when it uses the same source,
    has applied ``revision``, the artifact revision this run is about to apply."""
    namespace = obj.metadata.namespace or ""
    for ref in obj.spec.depends_on or []:
        key = f"{ref.namespace or namespace}/{ref.name}"
        raw = await client.get_or_none(Kustomization.info, ref.namespace or namespace, ref.name)
        if raw is None:
            raise DependencyNotReady(f"dependency '{key}' not found")
        if not is_ready(raw):
            raise DependencyNotReady(f"dependency '{key}' is not ready")
        dependency = Kustomization.from_dict(raw)
        if _source_key(dependency) == _source_key(obj) and (
            dependency.status.last_applied_revision != revision
        ):
            raise DependencyNotReady(f"dependency '{key}' revision is not up to date")


def is_ready(raw: dict[str, Any]) -> bool:
    """Ready=True for the object's current generation."""
    meta, status = raw.get("metadata") or {}, raw.get("status") or {}
    conditions = status.get("conditions") or []
    if not conditions or status.get("observedGeneration") != meta.get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def dependents_of_ready(
    old: dict[str, Any] | None, new: dict[str, Any] | None, kustomizations: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the Kustomizations depending on ``new`` to look at again now rather than after
    ``--requeue-dependency``: all of them when it applied a new revision, and those still
    waiting (not ready) when it has just become ready again."""
    if new is None or not is_ready(new):
        return []
    new_revision = old is None or _applied(old) != _applied(new)
    if not new_revision and is_ready(old or {}):
        return []
    meta = new.get("metadata") or {}
    target = (meta.get("namespace"), meta.get("name"))
    keys = []
    for ks in kustomizations:
        if not new_revision and is_ready(ks):
            continue
        ks_meta = ks.get("metadata") or {}
        for ref in (ks.get("spec") or {}).get("dependsOn") or []:
            if (ref.get("namespace") or ks_meta.get("namespace"), ref.get("name")) == target:
                keys.append(f"{ks_meta.get('namespace')}/{ks_meta.get('name')}")
                break
    return keys


def _applied(raw: dict[str, Any]) -> Any:
    return (raw.get("status") or {}).get("lastAppliedRevision")


def _source_key(obj: Kustomization) -> tuple[str, str, str]:
    ref = obj.spec.source_ref
    return (ref.kind, ref.namespace or obj.metadata.namespace or "", ref.name)
