"""Who suspended an object, when and why: the annotations ``weir suspend`` writes beside
``spec.suspend``, read back by the runtime's reminders, ``weir get`` and ``weir resume``.

The audit record travels with the object (``kubectl get -o yaml`` shows it, a backup keeps
it); the user is the API server's view of the caller (a ``SelfSubjectReview``), never a
kubeconfig's name. An object suspended otherwise (``flux suspend``, ``kubectl edit``) has no
record: whoever reads it says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from controllers.api import format_duration, parse_time

__all__ = [
    "ANNOTATIONS",
    "NO_REASON",
    "SUSPENDED_AT",
    "SUSPENDED_BY",
    "SUSPENDED_REASON",
    "Suspension",
    "describe_age",
]

SUSPENDED_BY = "weir.dev/suspended-by"
SUSPENDED_REASON = "weir.dev/suspended-reason"
SUSPENDED_AT = "weir.dev/suspended-at"
ANNOTATIONS = (SUSPENDED_BY, SUSPENDED_REASON, SUSPENDED_AT)
NO_REASON = "no reason was given"


@dataclass(frozen=True)
class Suspension:
    """The record of one suspension; each part is None where the annotations lack it."""

    by: str | None = None
    reason: str | None = None
    at: datetime.datetime | None = None

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str] | None) -> Suspension:
        annotations = annotations or {}
        at = annotations.get(SUSPENDED_AT)
        return cls(
            by=annotations.get(SUSPENDED_BY) or None,
            reason=annotations.get(SUSPENDED_REASON) or None,
            at=parse_time(at) if at else None,
        )

    @property
    def recorded(self) -> bool:
        """Whether ``weir suspend`` left a record (a user or a time) on the object."""
        return self.by is not None or self.at is not None

    def to_annotations(self) -> dict[str, str | None]:
        """The annotations to merge-patch onto the object (None removes one)."""
        at = self.at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if self.at else None
        return {SUSPENDED_BY: self.by, SUSPENDED_REASON: self.reason, SUSPENDED_AT: at}

    def who_and_why(self) -> str:
        """``by jane: INC-1234: hotfix image``, or what of it is unknown."""
        if not self.recorded:
            return "by an unknown user (not suspended with weir suspend): no reason recorded"
        return f"by {self.by or 'an unknown user'}: {self.reason or NO_REASON}"

    def age(self, now: datetime.datetime) -> float | None:
        """Seconds since the suspension (never negative: clocks differ), None if unknown."""
        return None if self.at is None else max(0.0, (now - self.at).total_seconds())


def describe_age(seconds: float) -> str:
    """A duration to the second, as Go prints it (``2h5m0s``)."""
    return format_duration(round(seconds))
