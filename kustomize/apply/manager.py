"""Server-side apply of a Kustomization's objects in Flux's stages, and pruning of what left it.

``ResourceManager.apply_all_staged`` applies the objects of one ``kustomize build`` the way
Flux's ssa package (fluxcd/pkg ``ApplyAllStaged``) does:

1. Stages: first the cluster definitions (CustomResourceDefinitions, Namespaces,
   ClusterRoles), then the ``*Class`` kinds, then everything else. After each of the first two
   stages it waits until what it applied is ready (CRDs ``Established``, Namespaces existing).
2. Per object: a server-side dry-run apply (``dryRun=All``); ``created`` when the object does
   not exist yet, ``configured`` when the dry-run result differs from the live object in its
   labels, annotations or anything outside ``metadata`` and ``status``, or when a cleanup of
   its metadata is due; ``unchanged`` otherwise (nothing is sent, so the resourceVersion
   stays); ``skipped`` for the opt-outs (``kustomize.apply.annotations``). Then a real apply
   of what is not unchanged, as field manager ``kustomize-controller`` with ``force=true``.
3. Taking over: before applying, the fields of ``kubectl`` and of earlier writers are
   reassigned to our ``Apply`` entry (``kustomize.apply.managedfields``).
4. ``spec.ignore`` (``ApplyOptions.ignore``): the ignored fields do not count as drift, and
   when an object is applied anyway they are left to their other writer
   (``kustomize.apply.ignore``).

What is guaranteed about validation: before anything is written, every object is dry-run,
except those that cannot be yet because they depend on this very set (objects of a kind
whose CRD is in the set, objects in a Namespace the set creates). Any failure there applies
nothing at all. The deferred objects are dry-run at the start of their stage, all of that
stage before any of it is applied; a failure then leaves the earlier stages applied (their
change set is on the error), exactly as in Flux. An object recreated because of an
immutable field change is validated again only after its deletion.

``ResourceManager.prune`` deletes the objects that left the inventory (background
propagation), but only those still labelled as belonging to this Kustomization.

``ResourceManager.diff`` plans the same way and writes nothing: what applying would do to each
object, with the live object and the dry-run result (``weir diff``).
``ResourceManager.drift`` does the same for a set already applied, to report drift without
correcting it (``spec.driftDetection.mode: warn``).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controllers import health
from controllers.api import ResourceInfo
from controllers.discovery import RestMapper, UnknownKind
from controllers.inventory import ObjectRef, sort_key
from controllers.jsondiff import IgnoreRules
from controllers.kube import JSON_PATCH, ApiError, KubeClient
from controllers.ssa import (
    any_in_metadata,
    dry_run_failure,
    is_immutable,
    masked,
    normalize,
    server_side_apply,
)
from controllers.wait import wait_until
from kustomize.apply.annotations import (
    EXCLUDED,
    FORCED,
    IF_NOT_PRESENT,
    NOT_PRUNED,
    OWNER_GROUP,
)
from kustomize.apply.changeset import Action, ChangeSet, ChangeSetEntry
from kustomize.apply.errors import ApplyError, ObjectFailure, PruneError
from kustomize.apply.ignore import ignored_paths, resolve_ignored, without_ignored
from kustomize.apply.managedfields import cleanup_patch

__all__ = [
    "FIELD_MANAGER",
    "ApplyOptions",
    "ObjectDiff",
    "ResourceManager",
    "Stage",
    "owner_labels",
    "stage_of",
]

FIELD_MANAGER = "kustomize-controller"

# Objects planned (GET + dry-run) at once, as Flux's --concurrent-ssa.
DEFAULT_CONCURRENCY = 4
# Reads of an object that another writer keeps changing, before its dry-run is taken as is.
_CONSISTENT_READS = 3


@dataclass(frozen=True)
class ApplyOptions:
    """``force``: recreate objects on immutable-field errors (``spec.force``).
    ``wait_timeout``: how long to wait for the definitions and classes of a stage (Flux: 60s).
    ``ignore``: the fields ``spec.ignore`` leaves out of drift detection and apply.
    """

    force: bool = False
    wait_timeout: float = 60.0
    ignore: IgnoreRules = field(default_factory=IgnoreRules)


class Stage(StrEnum):
    """Flux's apply stages, in order."""

    DEFINITIONS = "definitions"
    CLASSES = "classes"
    RESOURCES = "resources"


_STAGES = tuple(Stage)


def stage_of(obj: Mapping[str, Any]) -> Stage:
    """The stage Flux applies ``obj`` in (fluxcd/pkg ssa/utils ``IsClusterDefinition``,
    ``IsClassDefinition``)."""
    kind = str(obj.get("kind") or "")
    api_version = str(obj.get("apiVersion") or "")
    lowered = kind.lower()
    if (
        (lowered == "customresourcedefinition" and api_version.startswith("apiextensions.k8s.io/"))
        or (lowered == "namespace" and api_version == "v1")
        or (lowered == "clusterrole" and api_version.startswith("rbac.authorization.k8s.io/"))
    ):
        return Stage.DEFINITIONS
    if kind.endswith("Class"):
        return Stage.CLASSES
    return Stage.RESOURCES


def owner_labels(name: str, namespace: str) -> dict[str, str]:
    """``kustomize.toolkit.fluxcd.io/name`` and ``/namespace``: set on every object a
    Kustomization applies, and how an object is traced back to it."""
    return {f"{OWNER_GROUP}/name": name, f"{OWNER_GROUP}/namespace": namespace}


def _without_metadata_and_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _drifted(
    existing: Mapping[str, Any] | None,
    dry_run: Mapping[str, Any],
    ignore: IgnoreRules | None = None,
) -> bool:
    """Flux's ``hasDriftedWithIgnore``: labels, annotations, or anything but metadata and
    status, the ignored fields left out of both."""
    if existing is None:
        return True
    paths = ignored_paths(ignore, dry_run) if ignore else []
    if paths:
        existing, dry_run = without_ignored(existing, paths), without_ignored(dry_run, paths)
    live, wanted = existing.get("metadata") or {}, dry_run.get("metadata") or {}
    for key in ("labels", "annotations"):
        if (live.get(key) or {}) != (wanted.get(key) or {}):
            return True
    return _without_metadata_and_status(existing) != _without_metadata_and_status(dry_run)


def _opted_out(desired: Mapping[str, Any], existing: Mapping[str, Any] | None) -> bool:
    """Whether a live object is left alone: ``reconcile: disabled`` or ``ssa: Ignore`` on it,
    or ``ssa: IfNotPresent`` in the desired state of one that exists."""
    if existing is None:
        return False
    return any_in_metadata(existing, EXCLUDED) or any_in_metadata(desired, IF_NOT_PRESENT)


@dataclass
class _Item:
    """One object to apply: the desired state (labelled, normalized) and its identity."""

    obj: dict[str, Any]
    ref: ObjectRef
    stage: Stage


@dataclass
class _Plan:
    """The outcome of the dry-run of one object: what applying it will do."""

    item: _Item
    info: ResourceInfo
    action: Action
    existing: dict[str, Any] | None = None
    cleanup: list[dict[str, Any]] = field(default_factory=list)
    recreate: bool = False
    dry_run: dict[str, Any] | None = None


@dataclass(frozen=True)
class ObjectDiff:
    """What applying would do to one object: ``action`` as Flux's diff reports it (``created``,
    ``configured`` when it drifted, ``unchanged``, ``skipped``), the object as it would be sent
    (``desired``: owner labels set, normalized), and for ``configured`` the ``live`` object and
    the server's dry-run of the apply (``merged``)."""

    ref: ObjectRef
    action: Action
    desired: dict[str, Any]
    live: dict[str, Any] | None = None
    merged: dict[str, Any] | None = None


class _Deferred(Exception):
    """This object depends on an earlier stage of the same set; dry-run it then."""


class ResourceManager:
    """Applies and prunes the objects of one Kustomization (``owner_namespace/owner_name``)."""

    def __init__(
        self,
        kube: KubeClient,
        mapper: RestMapper,
        *,
        owner_name: str,
        owner_namespace: str,
        field_manager: str = FIELD_MANAGER,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._kube = kube
        self._mapper = mapper
        self._owner_name = owner_name
        self._owner_namespace = owner_namespace
        self._field_manager = field_manager
        self._limit = asyncio.Semaphore(max(concurrency, 1))

    @property
    def owner_labels(self) -> dict[str, str]:
        """``kustomize.toolkit.fluxcd.io/name`` and ``/namespace``, set on every object."""
        return owner_labels(self._owner_name, self._owner_namespace)

    async def apply_all_staged(
        self, objects: Sequence[Mapping[str, Any]], options: ApplyOptions | None = None
    ) -> ChangeSet:
        """Validate, then apply ``objects`` in Flux's stages; the change set of every object.

        Raises ``ApplyError`` (reason ``ReconciliationFailed``) naming the object; its
        ``change_set`` holds what earlier stages did. See the module docstring for what is
        validated before anything is written.
        """
        options = options or ApplyOptions()
        items = [self._item(i, obj) for i, obj in enumerate(objects)]
        # Validate everything that can be validated now, before writing anything.
        planned = await self._preflight(items, options)
        change_set = ChangeSet()
        for stage in _STAGES:
            staged = [i for i, item in enumerate(items) if item.stage == stage]
            if not staged:
                continue
            late = [items[i] for i in staged if planned[i] is None]

            async def in_stage(item: _Item) -> _Plan | None:
                return await self._plan(item, options, frozenset())

            late_plans = iter(await self._plan_all(late, in_stage, change_set))
            plans = [planned[i] or next(late_plans) for i in staged]
            done = [plan for plan in plans if plan is not None]
            done.sort(key=lambda plan: sort_key(plan.item.ref))
            for plan in done:
                await self._execute(plan, options, change_set)
                change_set.entries.append(ChangeSetEntry(plan.item.ref, plan.action))
            if stage != Stage.RESOURCES:
                applied = [plan for plan in done if plan.action != Action.SKIPPED]
                await self._wait_ready(applied, options, change_set)
                for plan in applied:
                    if plan.item.ref.kind == "CustomResourceDefinition":
                        self._mapper.add_custom_resource_definition(plan.item.obj)
        return change_set

    async def diff(
        self, objects: Sequence[Mapping[str, Any]], options: ApplyOptions | None = None
    ) -> list[ObjectDiff]:
        """What ``apply_all_staged`` would do to each object, in Flux's apply order; nothing is
        written (server-side dry-runs and reads only).

        An object that depends on this very set (its kind defined by a CRD of the set, its
        Namespace created by it) cannot exist yet, so it is ``created``. Like Flux's diff,
        ``configured`` means the object drifted: a cleanup of managed fields alone does not
        count. Raises ``ApplyError`` naming every object whose dry-run failed.
        """
        options = options or ApplyOptions()
        items = [self._item(i, obj) for i, obj in enumerate(objects)]
        planned = await self._preflight(items, options)
        return _as_diffs(items, planned, options.ignore)

    async def drift(
        self, objects: Sequence[Mapping[str, Any]], options: ApplyOptions | None = None
    ) -> list[ObjectDiff]:
        """As ``diff``, for objects already applied (``spec.driftDetection.mode: warn``):
        every object is dry-run now, as the definitions and Namespaces of the set exist
        already, so ``created`` means the object is gone from the cluster. Nothing is
        written. Raises ``ApplyError`` naming every object whose dry-run failed."""
        options = options or ApplyOptions()
        items = [self._item(i, obj) for i, obj in enumerate(objects)]

        async def plan(item: _Item) -> _Plan:
            return await self._plan(item, options, frozenset())

        planned = await self._plan_all(items, plan, ChangeSet())
        return _as_diffs(items, planned, options.ignore)

    async def prune(self, stale: Sequence[ObjectRef]) -> ChangeSet:
        """Delete ``stale`` objects (background propagation), in reverse apply order.

        An object already gone counts as deleted; one without this Kustomization's owner
        labels, or opted out (``prune: disabled``, ``reconcile: disabled``, ``ssa: Ignore``),
        is skipped and left alone. Failed deletions raise ``PruneError`` (reason
        ``PruneFailed``) after every object was tried; its ``survivors`` stay in the inventory.
        """
        change_set, errors, survivors = ChangeSet(), [], []
        for ref in sorted(stale, key=sort_key, reverse=True):
            try:
                action = await self._delete(ref)
            except ObjectFailure as failure:
                errors.append(str(failure))
                survivors.append(ref)
                action = Action.UNKNOWN
            change_set.entries.append(ChangeSetEntry(ref, action))
        if errors:
            raise PruneError(
                "delete failed, errors: " + "; ".join(errors),
                change_set=change_set,
                survivors=survivors,
            )
        return change_set

    # Planning: a dry-run per object, and a read of those that exist.

    async def _preflight(self, items: Sequence[_Item], options: ApplyOptions) -> list[_Plan | None]:
        """The plan of every item that can be dry-run before anything is written; None for
        those that depend on an earlier stage of the same set."""
        defined_kinds, created_namespaces = _set_dependencies(items)

        async def preflight(item: _Item) -> _Plan | None:
            if (item.ref.group, item.ref.kind) in defined_kinds:
                return None
            try:
                return await self._plan(item, options, created_namespaces)
            except _Deferred:
                return None

        return await self._plan_all(items, preflight, ChangeSet())

    def _item(self, index: int, obj: Mapping[str, Any]) -> _Item:
        desired = copy.deepcopy(dict(obj))
        meta = desired.get("metadata")
        if not (desired.get("apiVersion") and desired.get("kind") and isinstance(meta, dict)):
            raise ApplyError(f"object #{index + 1} has no apiVersion, kind or metadata")
        if not meta.get("name"):
            raise ApplyError(f"{desired['kind']} #{index + 1} has no metadata.name")
        meta["labels"] = {**(meta.get("labels") or {}), **self.owner_labels}
        normalize(desired)
        return _Item(desired, ObjectRef.of(desired), stage_of(desired))

    async def _plan_all(
        self,
        items: Sequence[_Item],
        plan: Callable[[_Item], Any],
        change_set: ChangeSet,
    ) -> list[_Plan | None]:
        """``plan`` for every item, a few at a time; every failure reported at once."""

        async def limited(item: _Item) -> _Plan | None:
            async with self._limit:
                result: _Plan | None = await plan(item)
                return result

        results = await asyncio.gather(*(limited(item) for item in items), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, ObjectFailure):
                raise failure
        if failures:
            raise ApplyError("\n".join(map(str, failures)), change_set=change_set)
        return [r for r in results if not isinstance(r, BaseException)]

    async def _plan(
        self, item: _Item, options: ApplyOptions, created_namespaces: frozenset[str]
    ) -> _Plan:
        try:
            info = await self._mapper.resource_for(item.obj["apiVersion"], item.obj["kind"])
        except UnknownKind as err:
            raise ObjectFailure(item.ref, f"dry-run failed: {err}", item.obj) from err
        meta = item.obj["metadata"]
        if not info.namespaced:
            meta.pop("namespace", None)
            item.ref = dataclasses.replace(item.ref, namespace="")
        elif not meta.get("namespace"):
            raise ObjectFailure(item.ref, "namespace not specified", item.obj)
        namespace = meta.get("namespace")
        if any_in_metadata(item.obj, EXCLUDED):
            return _Plan(item, info, Action.SKIPPED)
        # The dry-run first: an object it shows does not exist needs no read. The dry-run
        # answers for the live object as it is then; when another writer (a controller
        # annotating a new Deployment) changed it before our read, dry-run again rather than
        # report that change as our drift.
        existing: dict[str, Any] | None = None
        for _ in range(_CONSISTENT_READS):
            try:
                dry_run = await self._apply(info, item.obj, dry_run=True)
            except ApiError as err:
                existing = await self._read(item, info)
                if _opted_out(item.obj, existing):
                    return _Plan(item, info, Action.SKIPPED, existing)
                if existing is not None and is_immutable(err):
                    forced = options.force or any_in_metadata(item.obj, FORCED)
                    if forced or any_in_metadata(existing, FORCED):
                        return _Plan(item, info, Action.CREATED, existing, recreate=True)
                if err.status == 404 and namespace in created_namespaces:
                    raise _Deferred from err
                raise ObjectFailure(item.ref, dry_run_failure(err), item.obj) from err
            if not _resource_version(dry_run):
                existing = None
                break
            existing = await self._read(item, info)
            if _opted_out(item.obj, existing):
                return _Plan(item, info, Action.SKIPPED, existing)
            if _resource_version(dry_run) == _resource_version(existing):
                break

        cleanup = cleanup_patch(item.obj, existing, self._field_manager)
        if not _resource_version(dry_run):
            action = Action.CREATED
        elif cleanup or _drifted(existing, dry_run, options.ignore):
            action = Action.CONFIGURED
        else:
            action = Action.UNCHANGED
        return _Plan(item, info, action, existing, cleanup, dry_run=dry_run)

    async def _read(self, item: _Item, info: ResourceInfo) -> dict[str, Any] | None:
        meta = item.obj["metadata"]
        try:
            return await self._kube.get_or_none(info, meta.get("namespace"), meta["name"])
        except ApiError as err:
            raise ObjectFailure(item.ref, f"query failed: {err.message}", item.obj) from err

    # Writing.

    async def _execute(self, plan: _Plan, options: ApplyOptions, change_set: ChangeSet) -> None:
        if plan.action in (Action.UNCHANGED, Action.SKIPPED):
            return
        item, info = plan.item, plan.info
        meta = item.obj["metadata"]
        namespace, name = meta.get("namespace"), meta["name"]

        def failure(what: str) -> ApplyError:
            return ApplyError(masked(f"{item.ref} {what}", item.obj), change_set=change_set)

        if plan.recreate and plan.existing is not None:
            uid = plan.existing["metadata"].get("uid")
            try:
                await self._kube.delete(info, namespace, name, propagation="Background")
                _, replaced = await wait_until(
                    self._kube,
                    self._mapper,
                    [item.ref],
                    lambda seen: seen[0].obj is None or seen[0].obj["metadata"].get("uid") != uid,
                    options.wait_timeout,
                )
                if not replaced:
                    raise TimeoutError
            except ApiError as err:
                message = f"immutable field detected, failed to delete object: {err.message}"
                raise failure(message) from err
            except TimeoutError as err:
                message = "immutable field detected, failed to wait for object to be deleted"
                raise failure(message) from err
        elif plan.cleanup:
            try:
                await self._kube.patch(
                    info,
                    namespace,
                    name,
                    plan.cleanup,
                    content_type=JSON_PATCH,
                    field_manager=self._field_manager,
                )
            except ApiError as err:
                raise failure(f"metadata.managedFields cleanup failed: {err.message}") from err
        payload = item.obj
        if plan.action == Action.CONFIGURED and plan.existing and plan.dry_run:
            paths = ignored_paths(options.ignore, plan.dry_run)
            try:
                payload = resolve_ignored(
                    item.obj, plan.existing, plan.dry_run, paths, self._field_manager
                )
            except KeyError as err:
                raise failure(f"apply failed: {err.args[0]}") from err
        try:
            await self._apply(info, payload, dry_run=False)
        except ApiError as err:
            raise failure(f"apply failed: {err.message}") from err

    async def _apply(
        self, info: ResourceInfo, obj: Mapping[str, Any], *, dry_run: bool
    ) -> dict[str, Any]:
        return await server_side_apply(
            self._kube, info, obj, field_manager=self._field_manager, dry_run=dry_run
        )

    async def _wait_ready(
        self, plans: Sequence[_Plan], options: ApplyOptions, change_set: ChangeSet
    ) -> None:
        """Until every object of ``plans`` is ``Current`` (Flux: kstatus ``WaitForSet``);
        ``ApplyError`` with Flux's message when one fails or the wait times out."""
        refs = [plan.item.ref for plan in plans]
        try:
            await health.wait_for(self._kube, self._mapper, refs, options.wait_timeout)
        except health.HealthCheckError as err:
            raise ApplyError(err.message, change_set=change_set) from err

    # Pruning.

    async def _delete(self, ref: ObjectRef) -> Action:
        try:
            info = await self._mapper.resource_for(ref.api_version, ref.kind)
        except UnknownKind as err:
            raise ObjectFailure(ref, f"query failed: {err}") from err
        namespace = ref.namespace or None
        try:
            existing = await self._kube.get_or_none(info, namespace, ref.name)
        except ApiError as err:
            raise ObjectFailure(ref, f"query failed: {err.message}") from err
        if existing is None:
            return Action.DELETED
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if any(labels.get(key) != value for key, value in self.owner_labels.items()):
            return Action.SKIPPED
        if any_in_metadata(existing, NOT_PRUNED):
            return Action.SKIPPED
        try:
            await self._kube.delete(info, namespace, ref.name, propagation="Background")
        except ApiError as err:
            raise ObjectFailure(ref, f"delete failed: {err.message}") from err
        return Action.DELETED


def _as_diffs(
    items: Sequence[_Item], planned: Sequence[_Plan | None], ignore: IgnoreRules
) -> list[ObjectDiff]:
    """The plans as diffs, in Flux's apply order."""
    diffs = [_as_diff(item, plan, ignore) for item, plan in zip(items, planned, strict=True)]
    diffs.sort(key=lambda diff: (_STAGES.index(stage_of(diff.desired)), sort_key(diff.ref)))
    return diffs


def _as_diff(item: _Item, plan: _Plan | None, ignore: IgnoreRules) -> ObjectDiff:
    if plan is None:  # deferred: what it depends on does not exist yet, so neither does it
        return ObjectDiff(item.ref, Action.CREATED, item.obj)
    if plan.action != Action.CONFIGURED:
        return ObjectDiff(item.ref, plan.action, item.obj)
    if plan.dry_run is None or plan.existing is None:
        return ObjectDiff(item.ref, Action.UNCHANGED, item.obj)
    if not _drifted(plan.existing, plan.dry_run, ignore):
        return ObjectDiff(item.ref, Action.UNCHANGED, item.obj)
    # As Flux's Diff: the ignored fields are not shown either.
    paths = ignored_paths(ignore, plan.dry_run)
    live, merged = without_ignored(plan.existing, paths), without_ignored(plan.dry_run, paths)
    return ObjectDiff(item.ref, Action.CONFIGURED, item.obj, live, merged)


def _resource_version(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _set_dependencies(items: Sequence[_Item]) -> tuple[set[tuple[str, str]], frozenset[str]]:
    """The (group, kind) pairs the set's CRDs define, and the namespaces it creates."""
    kinds: set[tuple[str, str]] = set()
    namespaces: set[str] = set()
    for item in items:
        if item.stage != Stage.DEFINITIONS:
            continue
        if item.ref.kind == "CustomResourceDefinition":
            spec = item.obj.get("spec") or {}
            kinds.add((str(spec.get("group") or ""), str((spec.get("names") or {}).get("kind"))))
        elif item.ref.kind == "Namespace":
            namespaces.add(item.ref.name)
    return kinds, frozenset(namespaces)
