"""Release snapshots for ``status.history`` and the digests Flux keeps in them.

``config_digest`` is Flux's ``chartutil.DigestValues`` (:mod:`helm.values`). ``release_digest``
stands in for Flux's digest of its ``Observation`` (the stored release as Go encodes it): weir
cannot reproduce Go's encoding of Helm's structs, so it digests the same parts (name, version,
info, chart metadata, values, manifest, hooks other than tests, namespace) as sorted JSON. It
is only ever compared with digests weir wrote, to tell whether the stored release is the one
the snapshot was taken of.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from helm.api_v2 import SNAPSHOT_API_VERSION, Snapshot
from helm.client import Release
from helm.values import values_digest

__all__ = ["config_digest", "kube_time", "previous", "release_digest", "snapshot", "truncate"]

# Release states after which a release served: the snapshot history keeps back to one of them.
_SUCCESSFUL = ("deployed", "superseded")


def config_digest(values: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the values as Flux digests them (:func:`helm.values.values_digest`)."""
    return values_digest(values)


def release_digest(release: Release) -> str:
    """``sha256:<hex>`` of what identifies a stored release revision."""
    observed = {
        "name": release.name,
        "version": release.version,
        "info": {
            "firstDeployed": release.first_deployed,
            "lastDeployed": release.last_deployed,
            "status": release.status,
            "description": release.description,
        },
        "chartMetadata": {
            "name": release.chart_name,
            "version": release.chart_version,
            "appVersion": release.app_version,
        },
        "config": dict(release.values),
        "manifest": release.manifest,
        "hooks": [
            {"name": hook.name, "kind": hook.kind, "path": hook.path, "manifest": hook.manifest}
            for hook in release.hooks
            if "test" not in hook.events
        ],
        "namespace": release.namespace,
    }
    encoded = json.dumps(observed, sort_keys=True, separators=(",", ":")).encode()
    return f"sha256:{hashlib.sha256(encoded).hexdigest()}"


def kube_time(helm_time: str) -> str:
    """Helm's RFC 3339 time (nanoseconds, any offset) as Kubernetes writes one: UTC seconds."""
    if not helm_time:
        return "1970-01-01T00:00:00Z"
    text = helm_time.replace("Z", "+00:00")
    # Python's parser takes at most microseconds: cut the fraction to six digits.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot(release: Release, action: str) -> Snapshot:
    """The ``status.history`` entry of a stored release revision."""
    return Snapshot(
        api_version=SNAPSHOT_API_VERSION,
        digest=release_digest(release),
        name=release.name,
        namespace=release.namespace,
        version=release.version,
        status=release.status,
        action=action,
        chart_name=release.chart_name,
        chart_version=release.chart_version,
        app_version=release.app_version or None,
        config_digest=config_digest(release.values),
        first_deployed=kube_time(release.first_deployed),
        last_deployed=kube_time(release.last_deployed),
    )


def previous(history: Iterable[Snapshot], ignore_tests: bool = False) -> Snapshot | None:
    """The newest release before the latest one that served: what a rollback goes back to
    (Flux's ``Snapshots.Previous``). A release whose tests failed did not serve, unless test
    failures are ignored."""
    older = sorted(history, key=lambda s: s.version, reverse=True)[1:]
    return next((entry for entry in older if _served(entry, ignore_tests)), None)


def truncate(history: Iterable[Snapshot], ignore_tests: bool = False) -> list[Snapshot]:
    """Newest first, back to and including the first release that served (Flux keeps the
    previous successful release for a rollback, and drops what lies behind it)."""
    kept: list[Snapshot] = []
    for index, entry in enumerate(sorted(history, key=lambda s: s.version, reverse=True)):
        kept.append(entry)
        if index > 0 and _served(entry, ignore_tests):
            break
    return kept


def _served(entry: Snapshot, ignore_tests: bool) -> bool:
    return entry.status in _SUCCESSFUL and (ignore_tests or not entry.has_test_in_phase("Failed"))
