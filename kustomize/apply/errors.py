"""How applying and pruning fail: the errors, their reasons and messages.

Messages name the object and carry the API server's message; a Secret's values are masked in
them (``controllers.ssa.masked``, which also tells an immutable-field error apart).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers import conditions as cond
from controllers.inventory import ObjectRef
from controllers.reconcile import ReconcileError
from controllers.ssa import masked
from kustomize.apply.changeset import ChangeSet

__all__ = [
    "PRUNE_FAILED",
    "RECONCILIATION_FAILED",
    "ApplyError",
    "ObjectFailure",
    "PruneError",
]

RECONCILIATION_FAILED = cond.FAILED
PRUNE_FAILED = "PruneFailed"


class ApplyError(ReconcileError):
    """Applying failed. ``reason`` is Flux's condition reason, ``change_set`` what was done.

    The message names the object and carries the API server's message; a Secret's values are
    masked in it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = RECONCILIATION_FAILED,
        change_set: ChangeSet | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.change_set = change_set if change_set is not None else ChangeSet()


class PruneError(ApplyError):
    """Some deletions failed; ``survivors`` must stay in the inventory to be retried."""

    def __init__(self, message: str, *, change_set: ChangeSet, survivors: list[ObjectRef]) -> None:
        super().__init__(message, reason=PRUNE_FAILED, change_set=change_set)
        self.survivors = survivors


class ObjectFailure(Exception):
    """One object failed: ``Kind/namespace/name <what>``, a Secret's values masked."""

    def __init__(self, ref: ObjectRef, what: str, obj: Mapping[str, Any] | None = None) -> None:
        super().__init__(masked(f"{ref} {what}", obj or {}))
