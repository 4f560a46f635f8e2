"""A HelmRelease's release state and what it needs, as Flux's helm-controller decides them
(``internal/reconcile``: ``DetermineReleaseState``, ``actionForState``, the release target
change): pure functions over the HelmRelease, the release Helm stored and the chart, which the
reconciler (:mod:`helm.helmrelease`) acts on. Drift, which needs the cluster, is
:mod:`helm.checks`'s.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from controllers.reconcile import REQUESTED_AT
from helm import history, tests
from helm.api_v2 import DEFAULT_TO_RETRY_ON_FAILURE, HelmRelease, Snapshot
from helm.chart import ChartMetadata
from helm.client import Release

__all__ = [
    "active_failures",
    "describes",
    "handle_request",
    "must_reinstall",
    "next_action",
    "post_rendering_digests",
    "release_target_changed",
]


def next_action(
    obj: HelmRelease,
    stored: Release | None,
    chart: ChartMetadata,
    digest: str,
    *,
    force: bool = False,
) -> str:
    """What the release needs (Flux's ``DetermineReleaseState`` and ``actionForState``, but
    drift, which needs the cluster): ``unlock`` (a pending release), ``install``, ``upgrade``,
    ``test``, ``rollback`` or ``uninstall`` (a remediation), ``none``, or ``stalled`` when the
    retries are exhausted. ``force`` (``reconcile.fluxcd.io/forceAt``) upgrades a release in
    sync and goes past exhausted retries."""
    status = obj.status
    if stored is not None and stored.status.startswith("pending-"):
        return "unlock"
    if stored is None or stored.status == "uninstalled":
        exhausted = obj.install.remediation_settings.retries_exhausted(status)
        return "stalled" if exhausted and not force else "install"
    latest = status.latest_snapshot
    if latest is None or not describes(latest, stored):
        return "upgrade"  # not the release the controller made last: take it over
    if stored.status == "deployed":
        out_of_sync = (
            (stored.chart_name, stored.chart_version) != (chart.name, chart.version)
            or latest.config_digest != digest
            or _post_rendering_changed(obj)
        )
        if out_of_sync:
            exhausted = obj.upgrade.remediation_settings.retries_exhausted(status)
            return "stalled" if exhausted and not force else "upgrade"
        tested = tests.untested_state(obj, latest)
        if tested == "untested":
            return "test"
        if tested is None:
            return "upgrade" if force else "none"
        # A test failed and that counts: remediated as a failed release.
    elif stored.status != "failed":
        return "upgrade"
    return _failed_release_action(obj, force)


def release_target_changed(obj: HelmRelease, chart_name: str) -> str:
    """What moved the release away from the one last recorded (Flux's
    ``ReleaseTargetChanged``): ``storage namespace``, ``release namespace``, ``release name``
    or ``chart name``; "" when nothing did, or nothing was recorded."""
    status = obj.status
    latest = status.latest_snapshot
    if not status.storage_namespace or latest is None:
        return ""
    if obj.storage_namespace != status.storage_namespace:
        return "storage namespace"
    if obj.release_namespace != latest.namespace:
        return "release namespace"
    if obj.helm_release_name != latest.name:
        return "release name"
    if chart_name != latest.chart_name:
        return "chart name"
    return ""


def must_reinstall(obj: HelmRelease, chart_name: str) -> str:
    """The target change (:func:`release_target_changed`) for which the recorded release is
    uninstalled before the new one is installed, as Flux: any, but a new chart name with
    ``upgrade.chartNameChangeStrategy: InPlaceUpdate`` (then it is upgraded); "" for none."""
    changed = release_target_changed(obj, chart_name)
    in_place = obj.upgrade.effective_chart_name_change_strategy != "Reinstall"
    return "" if changed == "chart name" and in_place else changed


def _failed_release_action(obj: HelmRelease, force: bool) -> str:
    if obj.active_retry(DEFAULT_TO_RETRY_ON_FAILURE) is not None:
        return "upgrade"  # RetryOnFailure: again, without remediation
    remediation = obj.active_remediation
    if remediation is None or remediation.failure_count(obj.status) <= 0:
        return "upgrade"  # the desired state changed since the failure
    if force:
        return "upgrade"
    if remediation.retries_exhausted(obj.status) and not remediation.must_remediate_last_failure:
        return "stalled"
    return remediation.effective_strategy


def post_rendering_digests(obj: HelmRelease) -> tuple[str | None, str | None]:
    """Digests of ``spec.postRenderers`` and ``spec.commonMetadata`` (sha256 of their JSON,
    as Flux's ``postrender.Digest``); None when unset."""

    def digest(value: Any) -> str | None:
        if value is None:
            return None
        data = json.dumps(value, separators=(",", ":")) + "\n"
        return f"sha256:{hashlib.sha256(data.encode()).hexdigest()}"

    spec = obj.spec
    renderers = spec.post_renderers
    metadata = spec.common_metadata
    return (
        digest(None if renderers is None else [r.to_dict() for r in renderers]),
        digest(None if metadata is None else metadata.to_dict()),
    )


def _post_rendering_changed(obj: HelmRelease) -> bool:
    """Flux looks only on a new generation: the digests are recorded after every run."""
    status = obj.status
    if status.observed_generation == obj.metadata.generation:
        return False
    observed = (status.observed_post_renderers_digest, status.observed_common_metadata_digest)
    return post_rendering_digests(obj) != observed


def handle_request(obj: HelmRelease, annotation: str, handled_field: str) -> bool:
    """Flux's ``HandleAnnotationRequest``: whether the one-off request ``annotation`` is to be
    handled in this run (it equals ``reconcile.fluxcd.io/requestedAt``, which this run is the
    first to handle, and was not handled before); its value is recorded as handled either way."""
    annotations = obj.metadata.annotations or {}
    requested = annotations.get(annotation)
    if requested is None:
        return False
    before = getattr(obj.status, handled_field)
    setattr(obj.status, handled_field, requested)
    return (
        requested == annotations.get(REQUESTED_AT)
        and obj.status.last_handled_reconcile_at != requested
        and before != requested
    )


def active_failures(obj: HelmRelease) -> int:
    """Failures of the last attempted action for the current desired state."""
    status = obj.status
    if status.last_attempted_release_action == "upgrade":
        return status.upgrade_failures or 0
    return status.install_failures or 0


def describes(entry: Snapshot, stored: Release) -> bool:
    return (entry.name, entry.namespace, entry.version) == (
        stored.name,
        stored.namespace,
        stored.version,
    ) and entry.digest == history.release_digest(stored)
