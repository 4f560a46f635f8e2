"""How applying and pruning fail: the errors, their reasons and messages.

Messages name the object and carry the API server's message; a Secret's values are masked in
them. An immutable-field error is told apart as Flux does, so that the object can be
recreated when forced.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Mapping
from typing import Any

from controllers import conditions as cond
from controllers.kube import ApiError
from controllers.reconcile import ReconcileError
from kustomize.apply.changeset import ChangeSet
from kustomize.inventory import ObjectRef

__all__ = [
    "PRUNE_FAILED",
    "RECONCILIATION_FAILED",
    "ApplyError",
    "ObjectFailure",
    "PruneError",
    "dry_run_failure",
    "is_immutable",
    "masked",
]

RECONCILIATION_FAILED = cond.FAILED
PRUNE_FAILED = "PruneFailed"

# Flux's ssa errors.IsImmutableError: kubectl's rule (any 409 or 422) plus the wording that
# webhooks and CEL rules use.
_IMMUTABLE = re.compile(r"is\simmutable|immutable\sfield")


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


def is_immutable(err: ApiError) -> bool:
    """Whether ``err`` refuses a change to an immutable field (Flux's ``IsImmutableError``)."""
    return err.status in (409, 422) or bool(_IMMUTABLE.search(err.message))


def dry_run_failure(err: ApiError) -> str:
    """Flux's DryRunErr wording, after the object's name."""
    if err.status == 404:
        return f"not found: {err.message}"
    reason = f" ({err.reason})" if err.reason else ""
    return f"dry-run failed{reason}: {err.message}"


def _secret_values(obj: Mapping[str, Any]) -> list[str]:
    """Every value of a Secret, as written and decoded, longest first."""
    if obj.get("kind") != "Secret":
        return []
    values: set[str] = set()
    for key in ("data", "stringData"):
        for value in (obj.get(key) or {}).values():
            values.add(str(value))
            if key == "data":
                with contextlib.suppress(ValueError):  # not base64, or not text
                    values.add(base64.b64decode(str(value), validate=True).decode())
    return sorted((v for v in values if v), key=len, reverse=True)


def masked(message: str, obj: Mapping[str, Any]) -> str:
    """``message`` with a Secret's values replaced by ``***``: the API server may quote them."""
    for value in _secret_values(obj):
        # Short values would mangle unrelated words; mask them only where quoted.
        if len(value) >= 4:
            message = message.replace(value, "***")
        else:
            message = message.replace(f'"{value}"', '"***"')
    return message
