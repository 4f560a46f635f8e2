"""``spec.dependsOn`` for any kind that has it (Flux's Kustomization and HelmRelease): whether
an object's dependencies are ready, and which dependents to look at again when one of them
becomes ready.

What is the same for every kind lives here: the dependency exists; its ``readyExpr``, if any,
is true (``self`` the dependent, ``dep`` the dependency); unless a ``readyExpr`` replaces it
(Flux's AdditiveCELDependencyCheck gate keeps it), it has observed its generation and is Ready.
A kind adds its own rule (the kustomize controller: the same source revision) through
``extra_check``. The reconciler turns ``DependencyNotReady`` into its ``Waiting``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from controllers.api import object_key
from controllers.cel import EvaluationError, InvalidExpression, compile_expression

__all__ = [
    "DependencyNotReady",
    "DependencyReference",
    "ExtraCheck",
    "NotFound",
    "ReadDependency",
    "check_dependencies",
    "cross_namespace_dependency",
    "dependents_to_requeue",
    "is_ready",
    "why_not_ready",
]

ReadDependency = Callable[[str, str], Awaitable[dict[str, Any] | None]]
"""A dependency by namespace and name (``RunContext.read`` for the kind); None when missing."""

ExtraCheck = Callable[[str, dict[str, Any]], str | None]
"""A kind's own rule: given the dependency's key and object, why it is not ready, or None."""

NotFound = Callable[[str, str], str]
"""The kind's message for a missing dependency, given its key (``namespace/name``) and name."""


class DependencyReference(Protocol):
    """A ``dependsOn`` entry, as each kind's API model declares it."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def ready_expr(self) -> str | None: ...


class DependencyNotReady(Exception):
    """A dependency is missing or not ready; the message says which, in Flux's words."""


def _not_found(key: str, name: str) -> str:
    return f"dependency '{key}' not found"


async def check_dependencies(
    subject: dict[str, Any],
    refs: Sequence[DependencyReference],
    read: ReadDependency,
    *,
    extra_check: ExtraCheck | None = None,
    not_found: NotFound = _not_found,
    additive_cel: bool = False,
) -> None:
    """Read each dependency of ``subject`` (the dependent as the API returns it; its namespace
    is the default of each ``ref``) in order and raise ``DependencyNotReady`` for the first
    that is not ready, as ``why_not_ready`` says; ``InvalidExpression`` for a ``readyExpr``
    that does not compile."""
    namespace = (subject.get("metadata") or {}).get("namespace") or ""
    for ref in refs:
        dependency = await read(ref.namespace or namespace, ref.name)
        problem = why_not_ready(
            subject,
            ref,
            dependency,
            extra_check=extra_check,
            not_found=not_found,
            additive_cel=additive_cel,
        )
        if problem is not None:
            raise DependencyNotReady(problem)


def why_not_ready(
    subject: dict[str, Any],
    ref: DependencyReference,
    dependency: dict[str, Any] | None,
    *,
    extra_check: ExtraCheck | None = None,
    not_found: NotFound = _not_found,
    additive_cel: bool = False,
) -> str | None:
    """Why ``subject``'s dependency ``ref`` (``dependency``, None when missing) is not ready, in
    Flux's words; None when it is.

    Raises ``InvalidExpression`` for a ``readyExpr`` that does not compile."""
    namespace = ref.namespace or (subject.get("metadata") or {}).get("namespace") or ""
    key = f"{namespace}/{ref.name}"
    if dependency is None:
        return not_found(key, ref.name)
    if ref.ready_expr:
        try:
            expression = compile_expression(ref.ready_expr)
        except InvalidExpression as err:
            raise InvalidExpression(f"failed to evaluate dependency {ref.name}: {err}") from err
        try:
            ready = expression.evaluate_bool({"self": subject, "dep": dependency})
        except EvaluationError as err:
            return str(err)
        if not ready:
            return f"dependency '{key}' is not ready according to readyExpr eval"
        if not additive_cel:
            return None
    if not is_ready(dependency):
        return f"dependency '{key}' is not ready"
    return extra_check(key, dependency) if extra_check is not None else None


def is_ready(raw: dict[str, Any]) -> bool:
    """Ready=True for the object's current generation."""
    meta, status = raw.get("metadata") or {}, raw.get("status") or {}
    conditions = status.get("conditions") or []
    if not conditions or status.get("observedGeneration") != meta.get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def dependents_to_requeue(
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    dependents: Iterable[dict[str, Any]],
    *,
    revision_of: Callable[[dict[str, Any]], Any] | None = None,
) -> list[str]:
    """Keys of the ``dependents`` (objects of the kind, as the informer holds them) that
    depend on ``new`` and are to be looked at again now rather than after
    ``--requeue-dependency``: those still waiting (not ready) when ``new`` has just become
    ready, and all of them when ``revision_of`` (the kind's applied revision, if it has a rule
    on it) differs between ``old`` and ``new``, a ready ``new`` having been created counting as
    a new revision then."""
    if new is None or not is_ready(new):
        return []
    new_revision = revision_of is not None and (old is None or revision_of(old) != revision_of(new))
    if not new_revision and is_ready(old or {}):
        return []
    meta = new.get("metadata") or {}
    target = (meta.get("namespace"), meta.get("name"))
    keys = []
    for dependent in dependents:
        # dependsOn first: most objects have none, and this runs over all of them per change.
        refs = (dependent.get("spec") or {}).get("dependsOn")
        if not refs or (not new_revision and is_ready(dependent)):
            continue
        own = (dependent.get("metadata") or {}).get("namespace")
        if any((ref.get("namespace") or own, ref.get("name")) == target for ref in refs):
            keys.append(object_key(dependent))
    return keys


def cross_namespace_dependency(
    kind: str, namespace: str, refs: Iterable[DependencyReference]
) -> str:
    """With ``--no-cross-namespace-refs``: why a dependency of an object in ``namespace`` may
    not be used, as Flux's access check says it; empty when every one is in ``namespace``."""
    for ref in refs:
        if ref.namespace and ref.namespace != namespace:
            return (
                f"can't access '{kind}/{ref.namespace}/{ref.name}', "
                "cross-namespace references have been blocked"
            )
    return ""
