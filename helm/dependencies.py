"""``spec.dependsOn`` of a HelmRelease: the runtime's dependency check
(``controllers.dependencies``) as Flux's helm-controller applies it: each dependency, a
HelmRelease (in the release's namespace unless it names one), exists, passes its
``readyExpr`` and, unless the expression replaces it, is Ready for its generation."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from controllers import dependencies
from controllers.api import format_duration
from controllers.cel import INVALID_CEL_EXPRESSION, TERMINAL_ERROR_MESSAGE, InvalidExpression
from controllers.reconcile import RunContext, Stalling, Waiting
from helm.api_v2 import HelmRelease

__all__ = ["ACCESS_DENIED", "DEPENDENCY_NOT_READY", "check", "dependents_of_ready"]

# Flux's reasons.
DEPENDENCY_NOT_READY = "DependencyNotReady"
ACCESS_DENIED = "AccessDenied"


async def check(
    ctx: RunContext[Any],
    obj: HelmRelease,
    *,
    requeue_after: float,
    no_cross_namespace_refs: bool = False,
    additive_cel: bool = False,
) -> None:
    """Return when every dependency of ``obj`` is ready. Raise ``Waiting``
    (``DependencyNotReady``, looked at again after ``requeue_after``, or sooner when the
    dependency becomes ready) for the first that is not; ``Stalling`` for a ``readyExpr`` that
    does not compile, and, with ``no_cross_namespace_refs``, for a dependency in another
    namespace."""
    refs = obj.spec.depends_on or []
    if not refs:
        return
    own = obj.metadata.namespace or ""
    if no_cross_namespace_refs:
        refused = dependencies.cross_namespace_dependency(HelmRelease.info.kind, own, refs)
        if refused:
            raise Stalling(refused, reason=ACCESS_DENIED)
    ctx.log.info("checking dependencies", count=len(refs))
    try:
        await dependencies.check_dependencies(
            obj.to_dict(),
            refs,
            partial(ctx.read, HelmRelease.info),
            not_found=_not_found,
            additive_cel=additive_cel,
        )
    except InvalidExpression as err:
        # Flux's message carries controller-runtime's "terminal error: " as well.
        message = f"{TERMINAL_ERROR_MESSAGE}: terminal error: {err}"
        raise Stalling(message, reason=INVALID_CEL_EXPRESSION) from err
    except dependencies.DependencyNotReady as err:
        ctx.log.info("dependencies not ready", error=str(err), retry=format_duration(requeue_after))
        raise Waiting(str(err), reason=DEPENDENCY_NOT_READY, requeue_after=requeue_after) from err
    ctx.log.info("all dependencies are ready")


def dependents_of_ready(
    old: dict[str, Any] | None, new: dict[str, Any] | None, releases: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the HelmReleases waiting on ``new`` (not ready, depending on it) when it has
    just become ready: they go on at once rather than after ``--requeue-dependency``. A
    HelmRelease has no rule on its dependency's revision, so a ready dependent is left alone."""
    return dependencies.dependents_to_requeue(old, new, releases)


def _not_found(key: str, name: str) -> str:
    # Flux reads the dependency from the API server and wraps its NotFound error.
    resource = f"{HelmRelease.info.plural}.{HelmRelease.info.group}"
    return f"unable to get '{key}' dependency: {resource} \"{name}\" not found"
