"""Health of applied objects, and waiting until a set of them is healthy.

``compute`` is an object's kstatus status (``controllers.kstatus``), unless a custom check
decides for its kind. ``custom_checks`` turns ``spec.healthCheckExprs`` into
``CustomCheck``s, Flux's CEL status evaluators (fluxcd/pkg ``runtime/cel``); given to
``compute`` or ``wait_for``, they replace every kstatus rule for their kinds.

``wait_for`` is fluxcd/pkg ssa ``WaitForSet``: it follows the objects until all are
``Current``, or until one is ``Failed`` when failing fast, and raises ``HealthCheckError``
with Flux's message otherwise. Where Flux polls, it watches (``controllers.wait``).

The kustomize controller waits with it after applying; the helm controller after Helm's own
wait, for the kinds its ``healthCheckExprs`` name (``helm.health``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers import kstatus
from controllers.apitypes import CustomHealthCheck
from controllers.cel import EvaluationError, Expression, InvalidExpression, compile_expression
from controllers.discovery import RestMapper
from controllers.kstatus import Health, Status, kind_key, unobserved_generation
from controllers.kube import KubeClient
from controllers.reconcile import ReconcileError
from controllers.wait import NOT_OBSERVED, Observed, WatchedObject, wait_until

__all__ = [
    "HEALTH_CHECK_FAILED",
    "CustomCheck",
    "HealthCheckError",
    "compute",
    "custom_checks",
    "subject",
    "wait_for",
]

HEALTH_CHECK_FAILED = "HealthCheckFailed"


class HealthCheckError(ReconcileError):
    """Objects did not become ``Current`` in time, or one of them failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason=HEALTH_CHECK_FAILED)


# Custom checks: spec.healthCheckExprs.


@dataclass(frozen=True)
class CustomCheck:
    """The health of one kind as CEL expressions decide it (Flux's ``StatusEvaluator``).

    An ``observedGeneration`` behind the generation is ``InProgress``; then the first of
    ``in_progress``, ``failed`` and ``current`` that is true decides; none is: ``InProgress``.
    An expression that cannot be evaluated on the object (a field it does not have yet)
    makes it ``Unknown``, with the error, until the object changes or the wait times out.
    """

    current: Expression
    in_progress: Expression | None = None
    failed: Expression | None = None

    def health(self, obj: Mapping[str, Any]) -> Health:
        behind = unobserved_generation(obj)
        if behind is not None:
            return behind
        ordered = [
            (self.in_progress, Status.IN_PROGRESS),
            (self.failed, Status.FAILED),
            (self.current, Status.CURRENT),
        ]
        for expression, status in ordered:
            if expression is None:
                continue
            try:
                # The object's top-level fields (apiVersion, kind, metadata, spec, status...)
                # are the expression's variables.
                if expression.evaluate_bool(obj):
                    return Health(status, "")
            except EvaluationError as err:
                return Health(Status.UNKNOWN, str(err))
        return Health(Status.IN_PROGRESS, "")


def _expression(field_name: str, source: str | None) -> Expression | None:
    if not source:
        return None
    try:
        return compile_expression(source)
    except InvalidExpression as err:
        raise InvalidExpression(f"failed to parse the expression {field_name}: {err}") from err


def custom_checks(checks: Sequence[CustomHealthCheck]) -> dict[str, CustomCheck]:
    """``spec.healthCheckExprs`` compiled, for ``compute`` and ``wait_for``. Raises
    ``InvalidExpression`` in Flux's words for an expression that does not compile, a
    missing ``current`` or a second check for the same kind."""
    found: dict[str, CustomCheck] = {}
    for i, check in enumerate(checks):
        kind = check.kind or ""
        key = kind_key(check.api_version, kind)
        if key in found:
            group = key.rpartition("/")[0]
            group_kind = f"{kind}.{group}" if group else kind
            raise InvalidExpression(
                f"duplicate custom health check for GroupKind {group_kind} at healthchecks[{i}]"
            )
        try:
            current = _expression("Current", check.current)
            if current is None:
                raise InvalidExpression("expression Current not specified")
            found[key] = CustomCheck(
                current=current,
                in_progress=_expression("InProgress", check.in_progress),
                failed=_expression("Failed", check.failed),
            )
        except InvalidExpression as err:
            raise InvalidExpression(
                f"failed to create custom status evaluator for healthchecks[{i}]: {err}"
            ) from err
    return found


def compute(
    obj: Mapping[str, Any] | None, custom: Mapping[str, CustomCheck] | None = None
) -> Health:
    """The kstatus status of ``obj`` (``NotFound`` for None), with kstatus's message; or,
    for a kind of ``custom`` (``custom_checks``), what its expressions say."""
    if obj is not None and custom:
        check = custom.get(kind_key(str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")))
        if check is not None:
            return check.health(obj)
    return kstatus.compute(obj)


# Waiting.


def subject(ref: WatchedObject) -> str:
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), as Flux writes it."""
    if ref.namespace:
        return f"{ref.kind}/{ref.namespace}/{ref.name}"
    return f"{ref.kind}/{ref.name}"


def _describe(ref: WatchedObject, health: Health) -> str:
    # Flux adds the status reader's error, which kstatus gives only for Unknown; weir also
    # says why an object failed.
    text = f"{subject(ref)} status: '{health.status}'"
    if health.status in (Status.FAILED, Status.UNKNOWN) and health.message:
        text += f": {health.message}"
    return text


async def wait_for(
    client: KubeClient,
    mapper: RestMapper,
    refs: Sequence[WatchedObject],
    timeout: float,
    *,
    fail_fast: bool = True,
    custom: Mapping[str, CustomCheck] | None = None,
) -> None:
    """Until every object of ``refs`` is ``Current``; or, with ``fail_fast``, until one is
    ``Failed``, watching them (``controllers.wait.wait_until``). The health of the kinds of
    ``custom`` (``custom_checks``) is what their expressions say.

    Raises ``HealthCheckError`` (reason ``HealthCheckFailed``) in Flux's words:
    ``timeout waiting for: [Kind/ns/name status: 'InProgress', ...]`` listing every object
    not ``Current`` after ``timeout`` seconds, or ``failed early due to stalled resources:
    [Kind/ns/name status: 'Failed': <why>]``. An object whose kind the API server does not
    serve stays ``Unknown`` (its kind may be installed meanwhile) and is reported with why.
    """
    refs = list(dict.fromkeys(refs))
    if not refs:
        return

    def health_of(seen: Observed) -> Health:
        if seen.unknown_kind is not None:
            # Its kind may be installed meanwhile: Unknown, with why, until then.
            return Health(Status.UNKNOWN, seen.unknown_kind)
        return compute(seen.obj, custom)

    def done(seen: Sequence[Observed]) -> bool:
        statuses = [health_of(s).status for s in seen]
        if all(status == Status.CURRENT for status in statuses):
            return True
        return fail_fast and Status.FAILED in statuses

    seen, finished = await wait_until(client, mapper, refs, done, timeout)
    timed_out = not finished
    healths = [health_of(s) for s in seen]
    problems = []
    for ref, health, observed in zip(refs, healths, seen, strict=True):
        if observed.unknown_kind == NOT_OBSERVED:
            problems.append(f"can't determine status for {subject(ref)}")
        elif health.status == Status.FAILED or (timed_out and health.status != Status.CURRENT):
            problems.append(_describe(ref, health))
    if problems:
        prefix = "timeout waiting for" if timed_out else "failed early due to stalled resources"
        raise HealthCheckError(f"{prefix}: [{', '.join(problems)}]")
