"""``status.history``: the last reconciliations, one snapshot per digest of the applied
objects and outcome, most recent first (Flux keeps five)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.api import time_now
from kustomize.api_v1 import Snapshot

__all__ = ["MAX_SNAPSHOTS", "digest", "upsert"]

MAX_SNAPSHOTS = 5


def digest(objects: Sequence[Mapping[str, Any]]) -> str:
    """A stable ``sha256:<hex>`` of the objects as built, in order."""
    text = json.dumps(list(objects), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def upsert(
    history: Sequence[Snapshot] | None,
    digest: str,
    status: str,
    duration: float,
    metadata: Mapping[str, str],
) -> list[Snapshot]:
    """``history`` with this reconciliation counted: the snapshot with the same digest and
    status is updated and moved to the front, else a new one leads; at most five are kept."""
    stamp = time_now()
    rest = []
    found: Snapshot | None = None
    for snapshot in history or []:
        if found is None and (snapshot.digest, snapshot.last_reconciled_status) == (
            digest,
            status,
        ):
            found = snapshot
        else:
            rest.append(snapshot)
    count = found.total_reconciliations + 1 if found else 1
    first = found.first_reconciled if found else stamp
    updated = Snapshot(
        digest=digest,
        first_reconciled=first,
        last_reconciled=stamp,
        last_reconciled_duration=f"{duration:.3f}s",
        last_reconciled_status=status,
        total_reconciliations=count,
        metadata=dict(metadata) or None,
    )
    return [updated, *rest][:MAX_SNAPSHOTS]
