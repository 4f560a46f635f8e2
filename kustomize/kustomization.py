"""The Kustomization reconciler: source artifact → kustomize build → server-side apply → prune.

Steps, as in Flux's kustomize-controller: source (the referenced source's artifact, fetched
and digest-checked), build (decrypt, kustomize build, decrypt, substitute, commonMetadata),
apply (staged server-side apply, inventory, prune). Health checks and dependsOn come next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers.api import Artifact, ResourceInfo
from controllers.artifact import ArtifactError, fetch_artifact
from controllers.discovery import RestMapper
from controllers.kube import KubeClient
from controllers.reconcile import ReconcileError, Result, RunContext, Step, Waiting, Watch
from kustomize import inventory
from kustomize.api_v1 import Kustomization, ResourceInventory, ResourceRef
from kustomize.apply import ApplyOptions, PruneError, ResourceManager
from kustomize.build import BuildError, build, set_common_metadata
from kustomize.decrypt import DecryptionError, decrypt_objects, decrypt_tree, load_keys
from kustomize.substitute import SubstitutionError, load_variables, substitute_objects

__all__ = ["KustomizationReconciler"]

FIELD_MANAGER = "kustomize-controller"
ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED = "BuildFailed"
# Sources are read as plain objects: this controller never imports the source controller.
SOURCE_PLURALS = {
    "GitRepository": "gitrepositories",
    "OCIRepository": "ocirepositories",
    "Bucket": "buckets",
}


@dataclass
class KustomizeRun:
    """What the steps of one run hand on to each other."""

    revision: str = ""
    root: Path | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)


class KustomizationReconciler:
    """Reconciles Kustomization objects against the cluster the client talks to."""

    model = Kustomization
    owned_conditions: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        kustomize: Path,
        allow_remote_bases: bool = True,
        no_cross_namespace_refs: bool = False,
        default_service_account: str = "",
        requeue_dependency: float = 30.0,
        strict_substitution: bool = False,
    ) -> None:
        self.kustomize = kustomize
        self.allow_remote_bases = allow_remote_bases
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.default_service_account = default_service_account
        self.requeue_dependency = requeue_dependency
        self.strict_substitution = strict_substitution
        self._mapper: RestMapper | None = None

    @property
    def steps(self) -> Sequence[Step[Kustomization]]:
        return [self.reconcile_source, self.reconcile_build, self.reconcile_apply]

    @property
    def watches(self) -> Sequence[Watch]:
        """A source whose artifact revision changes requeues the Kustomizations using it."""
        return [Watch(_source_info(kind), _users_of_new_artifact) for kind in SOURCE_PLURALS]

    def _manager(self, client: KubeClient, obj: Kustomization) -> ResourceManager:
        if self._mapper is None:
            self._mapper = RestMapper(client)
        return ResourceManager(
            client,
            self._mapper,
            owner_name=obj.metadata.name,
            owner_namespace=obj.metadata.namespace or "",
            field_manager=FIELD_MANAGER,
        )

    async def finalize(self, ctx: RunContext, obj: Kustomization) -> None:
        """Prune everything in the inventory, unless the spec keeps what was applied."""
        if not obj.spec.prune or obj.deletion_policy == "Orphan":
            return
        entries = _entries(obj)
        if entries:
            await self._manager(ctx.client, obj).prune(inventory.refs_from_entries(entries))

    async def reconcile_source(self, ctx: RunContext, obj: Kustomization) -> Result:
        """Fetch the source's artifact and check its digest."""
        run = ctx.state = KustomizeRun()
        ref = obj.spec.source_ref
        plural = SOURCE_PLURALS.get(ref.kind)
        if plural is None:
            raise ReconcileError(
                f"source kind '{ref.kind}' is not supported", reason=ARTIFACT_FAILED
            )
        namespace = ref.namespace or obj.metadata.namespace
        source = await ctx.client.get_or_none(_source_info(ref.kind), namespace, ref.name)
        name = f"{ref.kind}/{namespace}/{ref.name}"
        if source is None:
            raise Waiting(
                f"Source '{name}' not found",
                reason=ARTIFACT_FAILED,
                requeue_after=obj.retry_interval_seconds,
            )
        raw = (source.get("status") or {}).get("artifact")
        if not raw:
            raise Waiting(
                f"Source '{name}' is not ready, artifact not found",
                reason=ARTIFACT_FAILED,
                requeue_after=obj.retry_interval_seconds,
            )
        artifact = Artifact.model_validate(raw)
        run.revision = artifact.revision
        obj.status.last_attempted_revision = artifact.revision
        run.root = ctx.tempdir("weir-ks-") / "source"
        try:
            await fetch_artifact(artifact.url, artifact.digest, run.root)
        except ArtifactError as err:
            raise ReconcileError(
                f"failed to fetch artifact: {err}", reason=ARTIFACT_FAILED
            ) from err
        return Result()

    async def reconcile_build(self, ctx: RunContext, obj: Kustomization) -> Result:
        """Decrypt, build with kustomize, decrypt the output, substitute, add commonMetadata."""
        run: KustomizeRun = ctx.state
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
                kustomize=self.kustomize,
                allow_remote_bases=self.allow_remote_bases,
                timeout=obj.timeout_seconds,
            )
            if keys is not None:
                objects = await decrypt_objects(objects, keys)
            if spec.post_build is not None:
                variables = await load_variables(ctx.client, namespace, spec.post_build)
                objects = substitute_objects(
                    objects,
                    variables,
                    strict=self.strict_substitution,
                    always=obj.substitute_strategy == "Always",
                )
        except (BuildError, DecryptionError, SubstitutionError) as err:
            raise ReconcileError(str(err), reason=BUILD_FAILED) from err
        if spec.common_metadata is not None:
            metadata = spec.common_metadata
            set_common_metadata(objects, metadata.labels or {}, metadata.annotations or {})
        run.objects = objects
        return Result()

    async def reconcile_apply(self, ctx: RunContext, obj: Kustomization) -> Result:
        """Apply in stages, record the inventory, prune what left it."""
        run: KustomizeRun = ctx.state
        manager = self._manager(ctx.client, obj)
        applied = await manager.apply_all_staged(run.objects, ApplyOptions(force=obj.spec.force))
        old = _entries(obj)
        new = inventory.entries_for(applied.refs())
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
        obj.status.last_applied_revision = run.revision
        text = "\n".join(c for c in changes if c)
        if text:
            ctx.notify("ReconciliationSucceeded", text, revision=run.revision)
        return Result(message=f"Applied revision: {run.revision}")


def _source_info(kind: str) -> ResourceInfo:
    return ResourceInfo(
        group="source.toolkit.fluxcd.io", version="v1", kind=kind, plural=SOURCE_PLURALS[kind]
    )


def _revision(source: dict[str, Any] | None) -> str | None:
    artifact = ((source or {}).get("status") or {}).get("artifact") or {}
    revision = artifact.get("revision")
    return str(revision) if revision else None


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
            keys.append(f"{ks_meta.get('namespace')}/{ks_meta.get('name')}")
    return keys


def _entries(obj: Kustomization) -> list[dict[str, str]]:
    entries = obj.status.inventory.entries if obj.status.inventory else []
    return [{"id": e.id, "v": e.v} for e in entries]


def _set_inventory(obj: Kustomization, entries: list[dict[str, str]]) -> None:
    refs = [ResourceRef(id=e["id"], v=e["v"]) for e in entries]
    obj.status.inventory = ResourceInventory(entries=refs)
