"""``spec.dependsOn``: whether a Kustomization's dependencies are ready, and which
Kustomizations to look at again when one of them becomes ready."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controllers.api import object_key
from controllers.cel import EvaluationError, InvalidExpression, compile_expression
from controllers.reconcile import Read
from kustomize.api_v1 import DependencyReference, Kustomization

__all__ = ["DependencyNotReady", "check_dependencies", "dependents_of_ready", "why_not_ready"]


class DependencyNotReady(Exception):
    """A dependency is missing, not ready, or behind on the shared source."""


async def check_dependencies(
    read: Read, obj: Kustomization, revision: str, *, additive_cel: bool = False
) -> None:
    """Read each dependency with ``read`` (``RunContext.read``, from the informer's cache as
    Flux reads them) and raise ``DependencyNotReady`` for the first dependency that is not ready, as
    ``why_not_ready`` says; ``InvalidExpression`` for a ``readyExpr`` that does not compile."""
    namespace = obj.metadata.namespace or ""
    for ref in obj.spec.depends_on or []:
        raw = await read(Kustomization.info, ref.namespace or namespace, ref.name)
        problem = why_not_ready(obj, ref, raw, revision, additive_cel=additive_cel)
        if problem is not None:
            raise DependencyNotReady(problem)


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
    key = f"{ref.namespace or obj.metadata.namespace or ''}/{ref.name}"
    if dependency is None:
        return f"dependency '{key}' not found"
    if ref.ready_expr:
        try:
            expression = compile_expression(ref.ready_expr)
        except InvalidExpression as err:
            raise InvalidExpression(f"failed to evaluate dependency {ref.name}: {err}") from err
        try:
            ready = expression.evaluate_bool({"self": obj.to_dict(), "dep": dependency})
        except EvaluationError as err:
            return str(err)
        if not ready:
            return f"dependency '{key}' is not ready according to readyExpr eval"
        if not additive_cel:
            return None
    if not is_ready(dependency):
        return f"dependency '{key}' is not ready"
    # The raw object, not the model: a dependency whose spec the model now rejects is still
    # judged by its status.
    if _raw_source_key(dependency) == _source_key(obj) and _applied(dependency) != revision:
        return f"dependency '{key}' revision is not up to date"
    return None


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
                keys.append(object_key(ks))
                break
    return keys


def _applied(raw: dict[str, Any]) -> Any:
    return (raw.get("status") or {}).get("lastAppliedRevision")


def _raw_source_key(raw: dict[str, Any]) -> tuple[str, str, str]:
    ref = (raw.get("spec") or {}).get("sourceRef") or {}
    namespace = ref.get("namespace") or (raw.get("metadata") or {}).get("namespace") or ""
    return (ref.get("kind", ""), namespace, ref.get("name", ""))


def _source_key(obj: Kustomization) -> tuple[str, str, str]:
    ref = obj.spec.source_ref
    return (ref.kind, ref.namespace or obj.metadata.namespace or "", ref.name)
