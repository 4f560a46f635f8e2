"""Drift detection and correction of a Helm release's objects, as Flux's helm-controller does
it (``internal/action/diff.go``, ``internal/reconcile/correct_cluster_drift.go``).

:func:`detect` reads the release manifest and, for each object, sets the metadata Helm sets
(label ``app.kubernetes.io/managed-by: Helm``, annotations ``meta.helm.sh/release-name`` and
``-namespace``) and the release namespace when a namespaced object has none, then:

1. leaves it out (``excluded``) when the label or annotation
   ``helm.toolkit.fluxcd.io/driftDetection: disabled`` is on it, in the manifest or in the
   cluster, or an ignore rule that targets it has the pointer ``""`` (the whole object);
2. ``removed`` (Flux's word: a release object deleted from the cluster) when it does not exist;
3. otherwise dry-runs it with server-side apply as ``helm-controller`` (``force``), takes the
   ignored fields (``driftDetection.ignore`` rules: JSON pointers per target selector) out of
   both the dry-run and the live object, and compares them (``controllers.jsondiff.compare``):
   ``changed`` with the JSON patch that undoes the drift, or ``unchanged``.

An object that fails (unknown kind, dry-run refused) does not stop the others: its error is
in :attr:`DriftReport.errors`. As Flux, a report with errors and no changes is a failure to
determine the cluster state; with changes, the errors are logged and the drift acted on.

:func:`correct` (``mode: enabled``) creates the removed objects and applies the JSON patch of
each changed one, as ``helm-controller``: the ignored fields are never touched, which a
server-side apply of the whole manifest would not guarantee.

How the reconciler uses this, on the release's target (its cluster, as its account:
:mod:`controllers.target`) (the release is ``deployed`` and in sync with the chart and values,
Flux's ``DetermineReleaseState``; ``obj.drift_detection.detects_changes``)::

    ignore = compile_ignore_rules(obj.drift_detection.ignore)   # InvalidRule: Stalling
    report = await detect(target.client, target.mapper, stored.manifest,
                          release_name=stored.name, release_namespace=stored.namespace,
                          ignore=ignore)
    if not report.has_changes:
        if report.errors:  # nothing known: retry
            raise ReconcileError(report.error_message(), reason=...)
        ctx.mark(DRIFTED, "False", NO_DRIFT_DETECTED, NO_DRIFT_MESSAGE)
    else:
        message = report.message(full_release_name)   # "<ns>/<name>.v<N>"
        ctx.mark(DRIFTED, "True", DRIFT_DETECTED, message)
        emit a Warning event, reason DRIFT_DETECTED, with message
        if obj.drift_detection.effective_mode == "enabled":
            correction = await correct(target.client, target.mapper, report)
            reason, message = correction.event(full_release_name)   # DriftCorrected / ...Failed
            emit the event (Warning when correction.errors); then, as Flux, detect again
            on the next run (Drifted becomes False with NoDriftDetected once in sync)

``mode: disabled`` (the default) writes no ``Drifted`` condition; Flux leaves an old one.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from controllers import safeyaml
from controllers.apitypes import Selector
from controllers.discovery import RestMapper, UnknownKind
from controllers.jsondiff import IGNORE_ROOT, IgnoreRules, Operation, compare, remove_pointers
from controllers.kube import JSON_PATCH, ApiError, KubeClient
from controllers.ssa import any_in_metadata, dry_run_failure, masked, normalize, server_side_apply
from helm.api_v2 import DRIFT_DETECTION_DISABLED_VALUE, DRIFT_DETECTION_METADATA_KEY

__all__ = [
    "DRIFTED",
    "DRIFT_CORRECTED",
    "DRIFT_CORRECTION_FAILED",
    "DRIFT_DETECTED",
    "FIELD_MANAGER",
    "NO_DRIFT_DETECTED",
    "NO_DRIFT_MESSAGE",
    "Correction",
    "DriftReport",
    "DriftType",
    "ObjectDrift",
    "compile_ignore_rules",
    "correct",
    "detect",
    "release_objects",
]

log = structlog.get_logger()

FIELD_MANAGER = "helm-controller"
# Flux's condition type, reasons and messages.
DRIFTED = "Drifted"
DRIFT_DETECTED = "DriftDetected"
NO_DRIFT_DETECTED = "NoDriftDetected"
NO_DRIFT_MESSAGE = "No drift detected against the cluster state"
DRIFT_CORRECTED = "DriftCorrected"
DRIFT_CORRECTION_FAILED = "DriftCorrectionFailed"

_EXCLUDED = {DRIFT_DETECTION_METADATA_KEY: DRIFT_DETECTION_DISABLED_VALUE}
# Objects dry-run at once (Flux does them one by one; a release of many objects should not).
_CONCURRENCY = 4
# Field paths named per object in a message: a condition message must stay readable.
_FIELDS_SHOWN = 10
# The largest release manifest read (Helm's own release limit is 1 MiB once compressed).
_MAX_MANIFEST = 16 * 1024 * 1024


class DriftType(StrEnum):
    """What comparing one object found (fluxcd/pkg jsondiff ``DiffType``)."""

    CREATE = "create"  # gone from the cluster: to be created again
    UPDATE = "update"  # changed in the cluster
    EXCLUDE = "exclude"  # left out of drift detection
    NONE = "none"  # as the release has it


@dataclass(frozen=True)
class ObjectDrift:
    """One object of the release and how the cluster differs from it: ``patch`` (for
    ``update``) is the JSON patch that turns the live object back, ignored fields left out;
    ``dry_run`` (for ``update`` and ``none``) what the server-side apply dry run returned, as
    it is (ignored fields in), for showing the difference."""

    type: DriftType
    desired: dict[str, Any]
    live: dict[str, Any] | None = None
    patch: tuple[Operation, ...] = ()
    dry_run: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), as Flux writes it."""
        meta = self.desired.get("metadata") or {}
        namespace = meta.get("namespace")
        parts = [str(self.desired.get("kind")), *([namespace] if namespace else [])]
        return "/".join([*parts, str(meta.get("name"))])

    @property
    def fields(self) -> list[str]:
        """The JSON pointers of the fields that drifted, each once, in patch order."""
        return list(dict.fromkeys(op.path for op in self.patch))

    def summary(self) -> str:
        """Flux's ``SummarizeDiffSet`` line for this object."""
        if self.type == DriftType.CREATE:
            return f"{self.subject} removed"
        if self.type == DriftType.EXCLUDE:
            return f"{self.subject} excluded"
        if self.type == DriftType.NONE:
            return f"{self.subject} unchanged"
        counts = {
            op: sum(1 for o in self.patch if o.op == op) for op in ("add", "replace", "remove")
        }
        return (
            f"{self.subject} changed ({counts['add']} additions, {counts['replace']} changes, "
            f"{counts['remove']} removals)"
        )


@dataclass
class DriftReport:
    """Every object of a release manifest compared with the cluster, in manifest order; the
    objects that could not be compared are in ``errors`` (``Kind/namespace/name <why>``)."""

    objects: list[ObjectDrift] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[ObjectDrift]:
        """The objects removed from or changed in the cluster."""
        return [o for o in self.objects if o.type in (DriftType.CREATE, DriftType.UPDATE)]

    @property
    def has_changes(self) -> bool:
        """Whether any object is removed or changed (Flux's ``HasChanges``)."""
        return bool(self.drifted)

    def summary(self) -> str:
        """Flux's ``SummarizeDiffSet``: one line per removed, changed or excluded object."""
        return "\n".join(o.summary() for o in self.objects if o.type != DriftType.NONE)

    def brief(self) -> str:
        """Flux's ``SummarizeDiffSetBrief``: ``removed: 1, changed: 3, excluded: 1``."""
        count = {t: sum(1 for o in self.objects if o.type == t) for t in DriftType}
        return (
            f"removed: {count[DriftType.CREATE]}, changed: {count[DriftType.UPDATE]}, "
            f"excluded: {count[DriftType.EXCLUDE]}"
        )

    def message(self, release: str) -> str:
        """The ``Drifted`` condition's and ``DriftDetected`` event's message: Flux's, each
        changed object's line followed by the fields that drifted (values never shown)."""
        lines = []
        for drift in self.objects:
            if drift.type == DriftType.NONE:
                continue
            line = drift.summary()
            fields = drift.fields
            if fields:
                shown = ", ".join(fields[:_FIELDS_SHOWN])
                more = len(fields) - _FIELDS_SHOWN
                line += f": {shown}" + (f" and {more} more" if more > 0 else "")
            lines.append(line)
        listed = "\n".join(lines)
        return f"Cluster state of release {release} has drifted from the desired state:\n{listed}"

    def error_message(self) -> str:
        """Why the cluster state could not be determined (no change found, some errors)."""
        return "unable to determine cluster state: " + "; ".join(self.errors)


@dataclass
class Correction:
    """What :func:`correct` did: ``Kind/namespace/name created|configured`` lines, and the
    objects it failed to correct."""

    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def event(self, release: str) -> tuple[str, str]:
        """The event's reason and message, in Flux's words (``DriftCorrected``, or
        ``DriftCorrectionFailed`` naming the failures and what was corrected)."""
        if not self.errors:
            corrected = "\n".join(self.changes)
            return (
                DRIFT_CORRECTED,
                f"Cluster state of release {release} has been corrected:\n{corrected}",
            )
        partially = "partially " if self.changes else ""
        message = f"Failed to {partially}correct cluster state of release {release}:\n"
        message += "\n".join(self.errors)
        if self.changes:
            message += "\n\nSuccessful corrections:\n" + "\n".join(self.changes)
        return DRIFT_CORRECTION_FAILED, message


def compile_ignore_rules(rules: Iterable[Any] | None) -> IgnoreRules:
    """A HelmRelease's ``driftDetection.ignore`` (objects with ``paths`` and ``target``),
    compiled. Raises ``controllers.jsondiff.InvalidRule`` for a bad selector or pointer."""
    pairs: list[tuple[Sequence[str], Selector | None]] = [
        (rule.paths, rule.target) for rule in rules or ()
    ]
    return IgnoreRules.compile(pairs)


def release_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of a rendered release manifest (Helm's ``---`` separated YAML); empty
    documents left out. Raises ``safeyaml.YAMLLoadError``."""
    limits = safeyaml.Limits(max_bytes=_MAX_MANIFEST)
    documents = safeyaml.load_all(manifest, what="release manifest", limits=limits)
    return [doc for doc in documents if isinstance(doc, dict) and doc]


async def detect(
    kube: KubeClient,
    mapper: RestMapper,
    manifest: str | Sequence[Mapping[str, Any]],
    *,
    release_name: str,
    release_namespace: str,
    ignore: IgnoreRules | None = None,
    field_manager: str = FIELD_MANAGER,
) -> DriftReport:
    """Compare the release's objects (its manifest, or the objects already read from it) with
    the cluster. Nothing is written. See the module docstring."""
    objects = release_objects(manifest) if isinstance(manifest, str) else manifest
    rules = ignore or IgnoreRules()
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def one(obj: Mapping[str, Any]) -> ObjectDrift | str:
        desired = _desired(obj, release_name)
        async with limit:
            try:
                return await _compare(
                    kube, mapper, desired, release_namespace, rules, field_manager
                )
            except _ObjectError as err:
                return str(err)

    report = DriftReport()
    for result in await asyncio.gather(*(one(obj) for obj in objects)):
        if isinstance(result, str):
            report.errors.append(result)
        else:
            report.objects.append(result)
    return report


class _ObjectError(Exception):
    """One object could not be compared: ``Kind/namespace/name <why>``, a Secret masked."""


def _desired(obj: Mapping[str, Any], release_name: str) -> dict[str, Any]:
    """The object with the metadata Helm sets on what it creates (Flux's setHelmMetadata)."""
    desired = copy.deepcopy(dict(obj))
    meta = desired.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": "Helm"}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        "meta.helm.sh/release-name": release_name,
    }
    normalize(desired)
    return desired


async def _compare(
    kube: KubeClient,
    mapper: RestMapper,
    desired: dict[str, Any],
    release_namespace: str,
    ignore: IgnoreRules,
    field_manager: str,
) -> ObjectDrift:
    meta = desired["metadata"]
    meta["annotations"]["meta.helm.sh/release-namespace"] = release_namespace
    subject = f"{desired.get('kind')}/{meta.get('name')}"
    try:
        info = await mapper.resource_for(
            str(desired.get("apiVersion") or ""), str(desired.get("kind") or "")
        )
    except UnknownKind as err:
        raise _ObjectError(f"{subject} dry-run failed: {err}") from None
    if info.namespaced:
        meta.setdefault("namespace", release_namespace)
        if not meta["namespace"]:
            meta["namespace"] = release_namespace
    else:
        meta.pop("namespace", None)
    drift = ObjectDrift(DriftType.EXCLUDE, desired)
    subject = drift.subject
    paths = ignore.paths_for(desired)
    if any_in_metadata(desired, _EXCLUDED) or IGNORE_ROOT in paths:
        return drift
    try:
        live = await kube.get_or_none(info, meta.get("namespace"), meta["name"])
        if any_in_metadata(live, _EXCLUDED):
            return drift
        dry_run = await server_side_apply(
            kube, info, desired, field_manager=field_manager, dry_run=True
        )
    except ApiError as err:
        raise _ObjectError(masked(f"{subject} {dry_run_failure(err)}", desired)) from None
    if live is None or not (dry_run.get("metadata") or {}).get("resourceVersion"):
        return ObjectDrift(DriftType.CREATE, desired)
    filtered_live, filtered_dry_run = copy.deepcopy(live), copy.deepcopy(dry_run)
    remove_pointers(filtered_live, paths)
    remove_pointers(filtered_dry_run, paths)
    patch = compare(filtered_live, filtered_dry_run)
    if not patch:
        return ObjectDrift(DriftType.NONE, desired, live, dry_run=dry_run)
    return ObjectDrift(DriftType.UPDATE, desired, live, tuple(patch), dry_run=dry_run)


async def correct(
    kube: KubeClient,
    mapper: RestMapper,
    report: DriftReport,
    *,
    field_manager: str = FIELD_MANAGER,
) -> Correction:
    """Undo the drift ``report`` found (Flux's ``ApplyDiff``): removed objects created, then
    each changed object patched with its JSON patch, as ``field_manager``; both in Flux's order
    (group and kind, namespace, name). A failure does not stop the others."""
    correction = Correction()
    creates = sorted((d for d in report.objects if d.type == DriftType.CREATE), key=_order)
    updates = sorted((d for d in report.objects if d.type == DriftType.UPDATE), key=_order)
    for drift in creates:
        meta = drift.desired["metadata"]
        try:
            info = await mapper.resource_for(drift.desired["apiVersion"], drift.desired["kind"])
            await kube.create(info, drift.desired, field_manager=field_manager)
        except (ApiError, UnknownKind) as err:
            what = err.message if isinstance(err, ApiError) else str(err)
            correction.errors.append(
                masked(f"{drift.subject} creation failure: {what}", drift.desired)
            )
            continue
        correction.changes.append(f"{drift.subject} created")
        log.info(
            "drift corrected",
            object=drift.subject,
            action="created",
            namespace=meta.get("namespace"),
        )
    for drift in updates:
        meta = drift.desired["metadata"]
        patch = [op.as_json() for op in drift.patch]
        try:
            info = await mapper.resource_for(drift.desired["apiVersion"], drift.desired["kind"])
            await kube.patch(
                info,
                meta.get("namespace"),
                meta["name"],
                patch,
                content_type=JSON_PATCH,
                field_manager=field_manager,
            )
        except (ApiError, UnknownKind) as err:
            what = err.message if isinstance(err, ApiError) else str(err)
            correction.errors.append(
                masked(f"{drift.subject} patch failure: {what}", drift.desired)
            )
            continue
        correction.changes.append(f"{drift.subject} configured")
        log.info("drift corrected", object=drift.subject, action="configured", fields=drift.fields)
    return correction


def _order(drift: ObjectDrift) -> tuple[str, str, str, str]:
    api_version = str(drift.desired.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    meta = drift.desired.get("metadata") or {}
    return (
        group,
        str(drift.desired.get("kind")),
        str(meta.get("namespace") or ""),
        str(meta.get("name")),
    )
