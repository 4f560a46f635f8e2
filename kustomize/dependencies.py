"""``spec.dependsOn`` of a Kustomization: the runtime's dependency check
(``controllers.dependencies``) with the kustomize controller's own rule on top, that a
dependency using the same source has applied the revision this run is about to apply."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from controllers import dependencies
from controllers.dependencies import DependencyNotReady, is_ready
from controllers.reconcile import Read
from kustomize.api_v1 import DependencyReference, Kustomization

__all__ = [
    "DependencyNotReady",
    "check_dependencies",
    "dependents_of_ready",
    "is_ready",
    "why_not_ready",
]


async def check_dependencies(
    read: Read, obj: Kustomization, revision: str, *, additive_cel: bool = False
) -> None:
    """Read each dependency with ``read`` (``RunContext.read``, from the informer's cache as
    Flux reads them) and raise ``DependencyNotReady`` for the first dependency that is not ready, as
    ``why_not_ready`` says; ``InvalidExpression`` for a ``readyExpr`` that does not compile."""
    await dependencies.check_dependencies(
        obj.to_dict(),
        obj.spec.depends_on or [],
        partial(read, Kustomization.info),
        extra_check=_same_revision(obj, revision),
        additive_cel=additive_cel,
    )


def why_not_ready(
    obj: Kustomization,
    ref: DependencyReference,
    dependency: dict[str, Any] | None,
    revision: str,
    *,
    additive_cel: bool = False,
) -> str | None:
    """Why ``obj``'s dependency ``ref`` (``dependency``, None when missing) is not ready, in
    Flux's words; None when it is. Flux's rules: it exists; its ``readyExpr``, if any, is
    true; and, unless a ``readyExpr`` replaces them (``additive_cel``, Flux's
    AdditiveCELDependencyCheck gate, keeps them), it has observed its generation, is Ready,
    and, when it uses the same source, has applied ``revision``, the artifact revision this
    run is about to apply.

    Raises ``InvalidExpression`` for a ``readyExpr`` that does not compile."""
    return dependencies.why_not_ready(
        obj.to_dict(),
        ref,
        dependency,
        extra_check=_same_revision(obj, revision),
        additive_cel=additive_cel,
    )


def dependents_of_ready(
    old: dict[str, Any] | None, new: dict[str, Any] | None, kustomizations: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the Kustomizations depending on ``new`` to look at again now rather than after
    ``--requeue-dependency``: all of them when it applied a new revision, and those still
    waiting (not ready) when it has just become ready again."""
    return dependencies.dependents_to_requeue(old, new, kustomizations, revision_of=_applied)


def _same_revision(obj: Kustomization, revision: str) -> dependencies.ExtraCheck:
    """The kustomize controller's rule: a dependency on the same source has applied
    ``revision``."""

    def check(key: str, dependency: dict[str, Any]) -> str | None:
        # The raw object, not the model: a dependency whose spec the model now rejects is
        # still judged by its status.
        if _raw_source_key(dependency) == _source_key(obj) and _applied(dependency) != revision:
            return f"dependency '{key}' revision is not up to date"
        return None

    return check


def _applied(raw: dict[str, Any]) -> Any:
    return (raw.get("status") or {}).get("lastAppliedRevision")


def _raw_source_key(raw: dict[str, Any]) -> tuple[str, str, str]:
    ref = (raw.get("spec") or {}).get("sourceRef") or {}
    namespace = ref.get("namespace") or (raw.get("metadata") or {}).get("namespace") or ""
    return (ref.get("kind", ""), namespace, ref.get("name", ""))


def _source_key(obj: Kustomization) -> tuple[str, str, str]:
    ref = obj.spec.source_ref
    return (ref.kind, ref.namespace or obj.metadata.namespace or "", ref.name)
