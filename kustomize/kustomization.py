"""The Kustomization reconciler: source artifact → kustomize build → server-side apply → prune.

Steps, as in Flux's kustomize-controller: source (the referenced source's artifact, the
dependencies, then the artifact fetched and digest-checked), build (decrypt, kustomize build,
decrypt, substitute, commonMetadata) and apply (staged server-side apply, inventory, prune,
health checks, history).

``spec.driftDetection.mode: warn`` (a weir extension, :mod:`kustomize.drift`): once the
desired state is applied, later runs of the same state only report drift (``Drifted`` and a
``DriftDetected`` Warning event, once per distinct drift) and write nothing; a new revision,
or a spec change that changes the objects, is applied as usual.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers import conditions as cond
from controllers import inventory
from controllers.api import Artifact, ResourceInfo, format_duration, object_key
from controllers.artifact import ArtifactError, fetch_artifact
from controllers.cel import INVALID_CEL_EXPRESSION, TERMINAL_ERROR_MESSAGE, InvalidExpression
from controllers.configwatch import config_watches
from controllers.discovery import RestMapper
from controllers.health import HealthCheckError, custom_checks, wait_for
from controllers.inventory import ObjectRef
from controllers.jsondiff import InvalidRule
from controllers.kube import KubeClient
from controllers.manager import Options
from controllers.reconcile import (
    ReconcileError,
    Reconciler,
    Result,
    RunContext,
    Stalling,
    Step,
    Waiting,
    Watch,
)
from controllers.target import TargetCluster, TargetOptions, Targets
from controllers.wait import wait_until
from kustomize import drift, history
from kustomize.api_v1 import Kustomization, ResourceInventory, ResourceRef
from kustomize.apply.changeset import Action
from kustomize.apply.errors import PruneError
from kustomize.apply.ignore import compile_ignore_rules
from kustomize.apply.manager import FIELD_MANAGER, ApplyOptions, ResourceManager
from kustomize.build import BuildError, build
from kustomize.buildworker import BuildWorkers, find_build_worker
from kustomize.decrypt import (
    DecryptionError,
    decrypt_objects,
    decrypt_tree,
    load_keys,
    refuse_encrypted_secrets,
)
from kustomize.dependencies import DependencyNotReady, check_dependencies, dependents_of_ready
from kustomize.postbuild import post_build
from kustomize.substitute import SubstitutionError

__all__ = ["KustomizationReconciler"]

ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED = "BuildFailed"
DEPENDENCY_NOT_READY = "DependencyNotReady"
HEALTH_CHECK_FAILED = "HealthCheckFailed"
ACCESS_DENIED = "AccessDenied"
HEALTHY = "Healthy"
# The OCI annotation whose value Flux reports as the origin revision.
ORIGIN_REVISION_KEY = "org.opencontainers.image.revision"
# Flux's event metadata key (under the API group) asking commit-status providers to update.
COMMIT_STATUS_KEY = "commit_status"
# Sources are read as plain objects: this controller never imports the source controller.
SOURCE_PLURALS = {
    "GitRepository": "gitrepositories",
    "OCIRepository": "ocirepositories",
    "Bucket": "buckets",
}


@dataclass
class KustomizeRunState:
    """What the steps of one run hand on to each other."""

    revision: str = ""
    origin_revision: str = ""
    root: Path | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    digest: str = ""
    applied: list[ObjectRef] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class KustomizationReconciler(Reconciler[Kustomization, KustomizeRunState]):
    """Reconciles Kustomization objects against the cluster the client talks to."""

    model = Kustomization
    owned_conditions: tuple[str, ...] = (HEALTHY, drift.DRIFTED)

    def __init__(
        self,
        *,
        build_workers: BuildWorkers | None = None,
        no_cross_namespace_refs: bool = False,
        default_service_account: str = "",
        requeue_dependency: float = Options.requeue_dependency,
        strict_substitution: bool = False,
        additive_cel_dependency_check: bool = False,
        insecure_kubeconfig_exec: bool = False,
        insecure_kubeconfig_tls: bool = False,
    ) -> None:
        # Remote bases allowed, as Flux allows them by default.
        self.build_workers = build_workers or BuildWorkers(
            find_build_worker(), allow_remote_bases=True
        )
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.default_service_account = default_service_account
        self.requeue_dependency = requeue_dependency
        self.strict_substitution = strict_substitution
        self.additive_cel_dependency_check = additive_cel_dependency_check
        self.targets = Targets(
            TargetOptions(
                default_service_account=default_service_account,
                insecure_kubeconfig_exec=insecure_kubeconfig_exec,
                insecure_kubeconfig_tls=insecure_kubeconfig_tls,
            )
        )

    @property
    def steps(self) -> Sequence[Step[Kustomization, KustomizeRunState]]:
        return [self.reconcile_source, self.reconcile_build, self.reconcile_apply]

    def new_state(self) -> KustomizeRunState:
        return KustomizeRunState()

    @property
    def watches(self) -> Sequence[Watch]:
        """A source whose artifact revision changes requeues the Kustomizations using it; a
        Kustomization that becomes ready requeues those that depend on it."""
        sources = [Watch(_source_info(kind), _users_of_new_artifact) for kind in SOURCE_PLURALS]
        own = Watch(Kustomization.info, dependents_of_ready)
        return [*sources, own, *config_watches(configs_read)]

    @staticmethod
    def _manager(target: TargetCluster, obj: Kustomization) -> ResourceManager:
        return ResourceManager(
            target.client,
            target.mapper,
            owner_name=obj.metadata.name,
            owner_namespace=obj.metadata.namespace or "",
            field_manager=FIELD_MANAGER,
        )

    async def close(self) -> None:
        """Stop the idle build workers."""
        await self.build_workers.close()

    async def finalize(self, ctx: RunContext[KustomizeRunState], obj: Kustomization) -> None:
        """Delete what the inventory lists as ``deletionPolicy`` says (Flux's rules: not when
        suspended; MirrorPrune follows ``spec.prune``; Orphan keeps everything)."""
        entries = _entries(obj)
        policy = obj.deletion_policy
        if obj.suspended or not entries or policy == "Orphan":
            return
        if policy == "MirrorPrune" and not obj.spec.prune:
            return
        async with self.targets.open(ctx.client, obj) as target:
            if not await target.service_account_exists():
                # Every request would be forbidden; Flux reports and lets the object go.
                ctx.log.error(
                    "skipping pruning, the service account to impersonate is gone",
                    service_account=target.user,
                    objects=[str(ref) for ref in inventory.refs_from_entries(entries)],
                )
                return
            manager = self._manager(target, obj)
            refs = inventory.refs_from_entries(entries)
            deleted = await manager.prune(refs)
            if deleted.changes():
                ctx.log.info("garbage collection completed", changes=deleted.changes())
            if policy == "WaitForTermination" and not await _terminated(
                target.client, target.mapper, refs, obj.timeout_seconds
            ):
                # Flux logs and lets the finalizer go: a stuck object must not block deletion.
                ctx.log.error("failed to wait for resources termination")

    async def reconcile_source(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization
    ) -> Result:
        """Find the source's artifact, check the dependencies, fetch and verify the artifact."""
        run = ctx.state
        self._compile_health_check_exprs(obj)
        ref = obj.spec.source_ref
        plural = SOURCE_PLURALS.get(ref.kind)
        if plural is None:
            raise Stalling(f"source kind '{ref.kind}' is not supported", reason=ARTIFACT_FAILED)
        namespace = ref.namespace or obj.metadata.namespace
        name = f"{ref.kind}/{namespace}/{ref.name}"
        self._refuse_cross_namespace(obj)
        source = await ctx.read(_source_info(ref.kind), namespace, ref.name)
        if source is None:
            raise Waiting(
                f"Source '{name}' not found",
                reason=ARTIFACT_FAILED,
                requeue_after=obj.retry_interval_seconds,
            )
        raw = (source.get("status") or {}).get("artifact")
        if not raw:
            retry = format_duration(self.requeue_dependency)
            raise Waiting(
                f"Source artifact not found, retrying in {retry}",
                reason=ARTIFACT_FAILED,
                requeue_after=self.requeue_dependency,
            )
        artifact = Artifact.model_validate(raw)
        run.revision = artifact.revision
        run.origin_revision = (artifact.metadata or {}).get(ORIGIN_REVISION_KEY, "")
        await self._check_dependencies(ctx, obj, run.revision)
        obj.status.last_attempted_revision = artifact.revision
        ctx.attempted_revision = artifact.revision
        timeout = format_duration(obj.timeout_seconds)
        await ctx.progress(
            f"Fetching manifests for revision {run.revision} with a timeout of {timeout}"
        )
        run.root = ctx.tempdir("weir-ks-") / "source"
        try:
            await fetch_artifact(artifact.url, artifact.digest, run.root)
        except ArtifactError as err:
            raise ReconcileError(
                f"failed to fetch artifact: {err}", reason=ARTIFACT_FAILED
            ) from err
        return Result()

    def _compile_health_check_exprs(self, obj: Kustomization) -> None:
        """``healthCheckExprs`` that do not compile stall the Kustomization before anything
        else is done, as in Flux."""
        try:
            custom_checks(obj.spec.health_check_exprs or [])
        except InvalidExpression as err:
            message = f"{TERMINAL_ERROR_MESSAGE}: {err}"
            raise Stalling(message, reason=INVALID_CEL_EXPRESSION) from err

    def _refuse_cross_namespace(self, obj: Kustomization) -> None:
        """With ``--no-cross-namespace-refs``, the source and dependencies must be in the
        Kustomization's namespace; a spec that breaks it stalls before anything is read."""
        if not self.no_cross_namespace_refs:
            return
        own = obj.metadata.namespace
        ref = obj.spec.source_ref
        refs: list[tuple[str, str | None, str]] = [(ref.kind, ref.namespace or own, ref.name)]
        refs += [("Kustomization", d.namespace or own, d.name) for d in obj.spec.depends_on or []]
        for kind, namespace, name in refs:
            if namespace != own:
                raise Stalling(
                    f"can't access '{kind}/{namespace}/{name}', "
                    "cross-namespace references have been blocked",
                    reason=ACCESS_DENIED,
                )

    async def _check_dependencies(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization, revision: str
    ) -> None:
        if not obj.spec.depends_on:
            return
        try:
            await check_dependencies(
                ctx.read, obj, revision, additive_cel=self.additive_cel_dependency_check
            )
        except InvalidExpression as err:
            # Flux's message carries controller-runtime's "terminal error: " as well.
            message = f"{TERMINAL_ERROR_MESSAGE}: terminal error: {err}"
            raise Stalling(message, reason=INVALID_CEL_EXPRESSION) from err
        except DependencyNotReady as err:
            raise Waiting(
                str(err), reason=DEPENDENCY_NOT_READY, requeue_after=self.requeue_dependency
            ) from err
        ctx.log.info("All dependencies are ready, proceeding with reconciliation")

    async def reconcile_build(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization
    ) -> Result:
        """Decrypt, build with kustomize, decrypt the output, substitute, add commonMetadata."""
        run = ctx.state
        assert run.root is not None
        spec, namespace = obj.spec, obj.metadata.namespace or ""
        try:
            keys = None
            if spec.decryption is not None and spec.decryption.secret_ref is not None:
                keys = await load_keys(ctx.client, namespace, spec.decryption.secret_ref.name)
                await decrypt_tree(run.root, keys, spec.path or ".")
            objects = await build(
                run.root,
                spec.path or "./",
                spec,
                workers=self.build_workers,
                timeout=obj.timeout_seconds,
            )
            if keys is not None:
                objects = await decrypt_objects(objects, keys)
            else:
                refuse_encrypted_secrets(objects)
            objects = await post_build(ctx.client, obj, objects, strict=self.strict_substitution)
        except BuildError as err:
            # ArtifactFailed for a path that is not in the artifact, as in Flux.
            raise ReconcileError(str(err), reason=err.reason) from err
        except (DecryptionError, SubstitutionError) as err:
            raise ReconcileError(str(err), reason=BUILD_FAILED) from err
        run.objects = objects
        run.digest = history.digest(objects)
        return Result()

    async def reconcile_apply(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization
    ) -> Result:
        """Apply, prune and check health; every outcome is counted in the history. In
        ``warn`` drift mode, a desired state already applied is only compared, not applied."""
        run = ctx.state
        report_only = obj.drift_mode == "warn" and _applied_already(obj, run)
        try:
            async with self.targets.open(ctx.client, obj) as target:
                if report_only:
                    await self._report_drift(ctx, obj, target)
                else:
                    await self._apply_and_prune(ctx, obj, target)
                    if obj.drift_mode == "warn":
                        message = drift.NO_DRIFT_MESSAGE
                        ctx.mark(drift.DRIFTED, "False", drift.NO_DRIFT_DETECTED, message)
                    else:
                        ctx.clear(drift.DRIFTED)  # Flux's Kustomization has none
                await self._check_health(ctx, obj, target)
        except ReconcileError as err:
            self._record(obj, run, err.reason)
            raise
        if obj.status.last_applied_revision != run.revision and not ctx.events:
            # A new revision is news even when it changed no object (a Git host's commit
            # status turns green on it).
            ctx.notify(
                "ReconciliationSucceeded",
                f"Applied revision: {run.revision}",
                revision=run.revision,
            )
        # As Flux's: a successful run's events update the commit status of its revision.
        # A run that only reports drift applied nothing, so says nothing about the commit.
        if not report_only:
            ctx.event_metadata[COMMIT_STATUS_KEY] = "update"
        obj.status.last_applied_revision = run.revision
        obj.status.last_applied_origin_revision = run.origin_revision or None
        self._record(obj, run, "ReconciliationSucceeded")
        return Result(message=f"Applied revision: {run.revision}")

    async def _apply_and_prune(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization, target: TargetCluster
    ) -> None:
        """Apply in stages, record the inventory, prune what left it."""
        run = ctx.state
        manager = self._manager(target, obj)
        applied = await manager.apply_all_staged(run.objects, _apply_options(obj))
        run.applied = applied.refs()
        old = _entries(obj)
        new = inventory.entries_for(run.applied)
        changes = [applied.changes()]
        if obj.spec.prune:
            stale = inventory.diff(old, new)
            if stale:
                try:
                    changes.append((await manager.prune(stale)).changes())
                except PruneError as err:
                    # What could not be deleted stays in the inventory, to be tried again.
                    _set_inventory(obj, inventory.merge(new, err.survivors))
                    raise
        _set_inventory(obj, new)
        text = "\n".join(c for c in changes if c)
        if text:
            ctx.notify("ReconciliationSucceeded", text, revision=run.revision)

    async def _report_drift(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization, target: TargetCluster
    ) -> None:
        """Compare the objects with the cluster and report what drifted; write nothing. The
        Warning event is emitted once per distinct drift (objects and fields, never values):
        the same drift found again leaves the condition, and the event stream, as they are."""
        run = ctx.state
        manager = self._manager(target, obj)
        diffs = await manager.drift(run.objects, _apply_options(obj))
        # What the health checks (spec.wait) look at: the objects that are there.
        run.applied = [d.ref for d in diffs if d.action in (Action.UNCHANGED, Action.CONFIGURED)]
        drifts = drift.drifts_of(diffs)
        if not drifts:
            ctx.mark(drift.DRIFTED, "False", drift.NO_DRIFT_DETECTED, drift.NO_DRIFT_MESSAGE)
            return
        message = drift.drift_message(run.revision, drifts)
        before = cond.find(ctx.conditions, drift.DRIFTED)
        ctx.mark(drift.DRIFTED, "True", drift.DRIFT_DETECTED, message)
        if before is not None and (before.status, before.message) == ("True", message):
            return
        ctx.log.warning("drift detected", objects=[d.ref.subject for d in drifts])
        ctx.warn(drift.DRIFT_DETECTED, message)

    async def _check_health(
        self, ctx: RunContext[KustomizeRunState], obj: Kustomization, target: TargetCluster
    ) -> None:
        """``wait``: every applied object; else ``healthChecks``; Healthy says how it went."""
        run = ctx.state
        spec = obj.spec
        refs = run.applied if spec.wait else [_health_ref(ref) for ref in spec.health_checks or []]
        own = (obj.metadata.namespace or "", obj.metadata.name)
        refs = [r for r in refs if not (r.kind == "Kustomization" and (r.namespace, r.name) == own)]
        if not refs:
            ctx.clear(HEALTHY)
            return
        was_healthy = cond.is_true(ctx.conditions, HEALTHY)
        message = (
            f"Running health checks for revision {run.revision} "
            f"with a timeout of {format_duration(obj.timeout_seconds)}"
        )
        ctx.mark(HEALTHY, "Unknown", cond.PROGRESSING, message)
        await ctx.progress(message)
        started = time.monotonic()
        custom = custom_checks(spec.health_check_exprs or [])
        try:
            await wait_for(target.client, target.mapper, refs, obj.timeout_seconds, custom=custom)
        except HealthCheckError as err:
            message = (
                f"health check failed after {format_duration(time.monotonic() - started)}: {err}"
            )
            ctx.mark(HEALTHY, "False", HEALTH_CHECK_FAILED, message)
            raise ReconcileError(message, reason=HEALTH_CHECK_FAILED) from err
        message = f"Health check passed in {format_duration(time.monotonic() - started)}"
        ctx.mark(HEALTHY, "True", "Succeeded", message)
        if not was_healthy:
            ctx.notify("ReconciliationSucceeded", message, revision=run.revision)

    def _record(self, obj: Kustomization, run: KustomizeRunState, status: str) -> None:
        if not run.digest:
            return
        metadata = {"revision": run.revision}
        if run.origin_revision:
            metadata["originRevision"] = run.origin_revision
        obj.status.history = history.upsert(
            obj.status.history, run.digest, status, time.monotonic() - run.started, metadata
        )


def _apply_options(obj: Kustomization) -> ApplyOptions:
    try:
        ignore = compile_ignore_rules(obj.spec.ignore)
    except InvalidRule as err:
        # Flux retries this apply failure; it cannot succeed until the spec changes.
        raise Stalling(f"invalid ignore rule: {err}", reason=cond.FAILED) from None
    return ApplyOptions(force=obj.spec.force, ignore=ignore)


def _applied_already(obj: Kustomization, run: KustomizeRunState) -> bool:
    """Whether the run's desired state is the one last applied: the same revision and, when
    the history knows it, the same objects (a spec change such as a new patch is no drift)."""
    if obj.status.last_applied_revision != run.revision:
        return False
    succeeded = [s for s in obj.status.history or () if s.last_reconciled_status == cond.SUCCEEDED]
    return not succeeded or succeeded[0].digest == run.digest


async def _terminated(
    client: KubeClient, mapper: RestMapper, refs: Sequence[ObjectRef], timeout: float
) -> bool:
    """Whether every object of ``refs`` is gone within ``timeout`` (Flux's
    ``WaitForSetTermination``, watching where Flux polls); an object whose kind is no longer
    served is gone with it."""
    _, gone = await wait_until(
        client, mapper, refs, lambda seen: all(s.obj is None for s in seen), timeout
    )
    return gone


def _health_ref(ref: Any) -> ObjectRef:
    group, _, version = (ref.api_version or "").rpartition("/")
    return ObjectRef(
        namespace=ref.namespace or "", name=ref.name, group=group, kind=ref.kind, version=version
    )


def _source_info(kind: str) -> ResourceInfo:
    return ResourceInfo(
        group="source.toolkit.fluxcd.io", version="v1", kind=kind, plural=SOURCE_PLURALS[kind]
    )


def _revision(source: dict[str, Any] | None) -> str | None:
    artifact = ((source or {}).get("status") or {}).get("artifact") or {}
    revision = artifact.get("revision")
    return str(revision) if revision else None


def configs_read(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """The ConfigMaps and Secrets a Kustomization (raw) reads: ``substituteFrom``, the
    decryption and kubeConfig Secrets."""
    spec = obj.get("spec") or {}
    found = [
        (str(ref.get("kind", "")), str(ref.get("name", "")))
        for ref in (spec.get("postBuild") or {}).get("substituteFrom") or ()
    ]
    for holder in (spec.get("decryption"), spec.get("kubeConfig")):
        name = ((holder or {}).get("secretRef") or {}).get("name")
        if name:
            found.append(("Secret", str(name)))
    return found


def _users_of_new_artifact(
    old: dict[str, Any] | None, new: dict[str, Any] | None, kustomizations: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the Kustomizations referring to ``new`` when its artifact revision changed."""
    if new is None or _revision(new) is None or _revision(old) == _revision(new):
        return []
    kind, meta = new.get("kind"), new.get("metadata") or {}
    keys = []
    for ks in kustomizations:
        ks_meta = ks.get("metadata") or {}
        ref = (ks.get("spec") or {}).get("sourceRef") or {}
        same_namespace = (ref.get("namespace") or ks_meta.get("namespace")) == meta.get("namespace")
        if ref.get("kind") == kind and ref.get("name") == meta.get("name") and same_namespace:
            keys.append(object_key(ks))
    return keys


def _entries(obj: Kustomization) -> list[dict[str, str]]:
    entries = obj.status.inventory.entries if obj.status.inventory else []
    return [{"id": e.id, "v": e.v} for e in entries]


def _set_inventory(obj: Kustomization, entries: list[dict[str, str]]) -> None:
    refs = [ResourceRef(id=e["id"], v=e["v"]) for e in entries]
    obj.status.inventory = ResourceInventory(entries=refs)
