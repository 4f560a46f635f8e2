"""The HelmRelease reconciler: chart artifact + values → a Helm release, installed or upgraded.

Steps, as in Flux's helm-controller: settings (refuse what weir does not implement yet), chart
(the HelmChart made from ``spec.chart`` or named by ``chartRef``, Ready with an artifact for its
generation; the artifact downloaded, digest checked), release (values composed, the stored
release compared with the last snapshot, then install, upgrade, a remediation or nothing, as
Flux's atomic release decides: :mod:`helm.state`; Helm's options: :mod:`helm.options`).
Deletion uninstalls the release and deletes the HelmChart the controller made.

Remediation as Flux's: a failed install is uninstalled, a failed upgrade rolled back (or
uninstalled), then tried again, up to ``remediation.retries``; ``strategy: RetryOnFailure``
retries after ``retryInterval`` without remediating. Unlike Flux, one run does one Helm action
(Flux loops action, remediation, in one run): a remediation ends its run with a requeue, so
that each step has its own event, and a stall after the last remediation comes on the next run.

After a release, as Flux: ``healthCheckExprs`` are waited for (after Helm's own wait, for the
kinds they name), a release in sync is tested (``spec.test``, its own run) and compared with
the cluster (``driftDetection``: reported, and corrected when enabled), and a release a stopped
action left pending is unlocked. Install and upgrade are post-rendered (``postRenderers``,
``commonMetadata``, origin labels; :mod:`helm.postrender`). ``reconcile.fluxcd.io/forceAt`` and
``resetAt`` are handled as Flux handles them.

The release's cluster and identity (:mod:`controllers.target`, shared with the kustomize
controller): ``serviceAccountName`` (else ``--default-service-account``) is impersonated and
``kubeConfig.secretRef`` names another cluster, for everything done to the release: Helm's
actions, the ``healthCheckExprs`` wait, drift detection and correction, the storage unlock,
and the uninstall on deletion. Reading the HelmRelease's own sources (the HelmChart, the
``valuesFrom`` ConfigMaps and Secrets, the kubeconfig Secret) keeps the controller's identity,
as in Flux. An unusable kubeconfig is ``RESTClientError``, as Flux's.

A release whose target moved (storage namespace, namespace, name, or chart name with
``chartNameChangeStrategy: Reinstall``, Flux's default) is uninstalled first, as Flux does;
the next run installs it.

Not implemented yet, and refused with ``Stalled`` (``UnsupportedConfiguration``) when set:
``kubeConfig.configMapRef`` (workload identity), the legacy wait strategy, a target namespace
other than the storage namespace, and ``crds: CreateReplace`` (:mod:`helm.settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tarfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from controllers import conditions as cond
from controllers.api import ResourceInfo, format_duration
from controllers.artifact import ArtifactError, fetch_file
from controllers.cel import INVALID_CEL_EXPRESSION, TERMINAL_ERROR_MESSAGE, InvalidExpression
from controllers.configwatch import config_watches
from controllers.health import CustomCheck, custom_checks
from controllers.kube import ApiError, KubeError
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
from controllers.safeyaml import YAMLLoadError
from controllers.target import KubeConfigSecretNotFound, TargetCluster, TargetOptions, Targets
from helm import checks, dependencies, drift, history, storage, tests
from helm.api_v2 import (
    DEFAULT_TO_RETRY_ON_FAILURE,
    FORCE_REQUEST_ANNOTATION,
    RESET_REQUEST_ANNOTATION,
    HelmRelease,
    Snapshot,
)
from helm.chart import (
    CHART_MUTATE_ERROR,
    HELM_CHART,
    OCI_REPOSITORY,
    ChartMetadata,
    ChartMutateError,
    ChartNotReady,
    InvalidChart,
    apply_helm_chart,
    artifact_of,
    chart_metadata,
    helm_chart_template,
    oci_chart_version,
    releases_of_changed_chart,
    releases_of_changed_oci_repository,
    set_chart_version,
)
from helm.client import (
    HelmClient,
    HelmError,
    Release,
    ReleaseNotFound,
    RollbackOptions,
)
from helm.health import ReleaseUnhealthy, checked_objects, wait_for_release
from helm.inventory import chart_crds, release_inventory
from helm.options import install_options, uninstall_options, upgrade_options
from helm.postrender import post_render_options
from helm.settings import unsupported_settings
from helm.state import (
    active_failures,
    describes,
    handle_request,
    must_reinstall,
    next_action,
    post_rendering_digests,
)
from helm.values import ValuesError, compose_values

__all__ = [
    "HelmReleaseReconciler",
    "HelmReleaseRunState",
    "configs_read",
    "cross_namespace_reference",
]

RELEASED = "Released"
REMEDIATED = "Remediated"
# Flux's reasons.
ARTIFACT_FAILED = "ArtifactFailed"
INIT_FAILED = "InitFailed"
INSTALL_SUCCEEDED = "InstallSucceeded"
INSTALL_FAILED = "InstallFailed"
UPGRADE_SUCCEEDED = "UpgradeSucceeded"
UPGRADE_FAILED = "UpgradeFailed"
UNINSTALL_SUCCEEDED = "UninstallSucceeded"
UNINSTALL_FAILED = "UninstallFailed"
RETRIES_EXCEEDED = "RetriesExceeded"
ROLLBACK_SUCCEEDED = "RollbackSucceeded"
ROLLBACK_FAILED = "RollbackFailed"
MISSING_ROLLBACK_TARGET = "MissingRollbackTarget"
ACCESS_DENIED = "AccessDenied"
UNSUPPORTED = "UnsupportedConfiguration"
INVENTORY_BUILD_FAILED = "InventoryBuildFailed"
NAMESPACE_CHECK_SKIPPED = "NamespaceCheckSkipped"
REST_CLIENT_ERROR = "RESTClientError"  # Flux's: the release's cluster cannot be reached as asked
# The largest chart artifact downloaded: the source controller stores none bigger.
MAX_CHART_SIZE = 10 * 1024 * 1024
# How soon to look at a HelmChart that is not ready again; its watch usually comes first.
CHART_REQUEUE_SECONDS = 30.0
# How soon a release that awaits its tests runs them: the next run, as soon as may be.
TESTS_REQUEUE_SECONDS = 0.5


@dataclass
class HelmReleaseRunState:
    """What the chart step hands to the release step."""

    chart_path: Path | None = None
    chart: ChartMetadata | None = None
    values: dict[str, Any] = field(default_factory=dict)
    force: bool = False  # reconcile.fluxcd.io/forceAt handled in this run
    health_checks: dict[str, CustomCheck] = field(default_factory=dict)
    # The release's cluster and identity, and Helm's client there: set in the release step.
    target: TargetCluster | None = None
    helm: HelmClient | None = None

    @property
    def release_helm(self) -> HelmClient:
        """Helm's client for this release, inside the release step (or finalize)."""
        assert self.helm is not None, "used outside the release's target"
        return self.helm

    @property
    def release_target(self) -> TargetCluster:
        """The release's cluster and identity, inside the release step (or finalize)."""
        assert self.target is not None, "used outside the release's target"
        return self.target


class HelmReleaseReconciler(Reconciler[HelmRelease, HelmReleaseRunState]):
    """Reconciles HelmReleases against the cluster of ``kubeconfig`` (a path; None: the
    process's own, as the runtime's client finds it)."""

    model = HelmRelease
    owned_conditions: tuple[str, ...] = (RELEASED, REMEDIATED, tests.TEST_SUCCESS, drift.DRIFTED)

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        no_cross_namespace_refs: bool = False,
        default_service_account: str = "",
        requeue_dependency: float = Options.requeue_dependency,
        additive_cel_dependency_check: bool = False,
        insecure_kubeconfig_exec: bool = False,
        insecure_kubeconfig_tls: bool = False,
    ) -> None:
        self._kubeconfig = kubeconfig
        self.additive_cel_dependency_check = additive_cel_dependency_check
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.default_service_account = default_service_account
        self.requeue_dependency = requeue_dependency
        self.targets = Targets(
            TargetOptions(
                default_service_account=default_service_account,
                insecure_kubeconfig_exec=insecure_kubeconfig_exec,
                insecure_kubeconfig_tls=insecure_kubeconfig_tls,
            ),
            error_reason=REST_CLIENT_ERROR,
        )
        self._helm: HelmClient | None = None
        self._rate_limit: tuple[float, int] | None = None

    @property
    def helm(self) -> HelmClient:
        """Helm's client, made on first use (the library is not touched before a release)."""
        if self._helm is None:
            path = self._kubeconfig or _first_kubeconfig()
            limit = self._rate_limit
            if path:
                self._helm = HelmClient(kubeconfig_path=path, rate_limit=limit)
            else:
                self._helm = HelmClient(kubeconfig=in_cluster_kubeconfig(), rate_limit=limit)
        return self._helm

    @contextlib.asynccontextmanager
    async def release_target(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> AsyncIterator[TargetCluster]:
        """The release's cluster and identity for the block, with Helm's client there in
        ``ctx.state.helm``: the controller's (a view impersonating the account, if any), or
        one made from the kubeconfig Secret and freed when the block ends."""
        async with self.targets.open(ctx.client, obj) as target:
            remote: HelmClient | None = None
            if target.kubeconfig is not None:
                # JSON is YAML: Helm's library reads it as a kubeconfig.
                remote = HelmClient(
                    kubeconfig=json.dumps(target.kubeconfig), rate_limit=self._rate_limit
                )
            helm = remote or self.helm
            ctx.state.target = target
            helm = helm.impersonating(target.user) if target.user else helm
            ctx.state.helm = helm if obj.persistent_client else helm.without_reuse()
            try:
                yield target
            finally:
                ctx.state.target = ctx.state.helm = None
                if remote is not None:
                    remote.close()

    @property
    def steps(self) -> Sequence[Step[HelmRelease, HelmReleaseRunState]]:
        return [
            self.check_settings,
            self.check_dependencies,
            self.reconcile_chart,
            self.reconcile_release,
        ]

    @property
    def watches(self) -> Sequence[Watch]:
        """A HelmChart with a new artifact requeues its releases; a HelmRelease that becomes
        ready requeues those waiting on it (``dependsOn``); a watched ConfigMap or Secret
        (``--watch-configs-label-selector``) requeues those reading it (``valuesFrom``)."""
        return [
            Watch(HELM_CHART, releases_of_changed_chart),
            Watch(OCI_REPOSITORY, releases_of_changed_oci_repository),
            Watch(HelmRelease.info, dependencies.dependents_of_ready),
            *config_watches(configs_read),
        ]

    def new_state(self) -> HelmReleaseRunState:
        return HelmReleaseRunState()

    async def close(self) -> None:
        if self._helm is not None:
            self._helm.close()

    async def check_settings(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> Result:
        """Stall on a setting weir does not implement yet, rather than ignore it."""
        # Helm's client gets the runtime client's limit (none under flow control, as Flux).
        self._rate_limit = self._rate_limit or ctx.client.rate_limit
        unsupported = unsupported_settings(obj)
        if unsupported:
            raise Stalling(
                f"{', '.join(unsupported)}: not supported by weir yet", reason=UNSUPPORTED
            )
        if self.no_cross_namespace_refs:
            refused = cross_namespace_reference(obj)
            if refused:
                raise Stalling(refused, reason=ACCESS_DENIED)
        try:
            ctx.state.health_checks = custom_checks(obj.spec.health_check_exprs or ())
        except InvalidExpression as err:
            raise Stalling(
                f"{TERMINAL_ERROR_MESSAGE}: {err}", reason=INVALID_CEL_EXPRESSION
            ) from None
        status = obj.status
        if handle_request(obj, RESET_REQUEST_ANNOTATION, "last_handled_reset_at"):
            ctx.log.info("failure counters reset on request")
            status.failures = status.install_failures = status.upgrade_failures = None
        ctx.state.force = handle_request(obj, FORCE_REQUEST_ANNOTATION, "last_handled_force_at")
        return Result()

    async def check_dependencies(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> Result:
        """Wait (``DependencyNotReady``) until every HelmRelease of ``spec.dependsOn`` is ready."""
        await dependencies.check(
            ctx,
            obj,
            requeue_after=self.requeue_dependency,
            no_cross_namespace_refs=self.no_cross_namespace_refs,
            additive_cel=self.additive_cel_dependency_check,
        )
        return Result()

    # The chart

    async def reconcile_chart(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> Result:
        """The HelmChart in place and ready; its artifact downloaded and read."""
        info, namespace, name, applied = await self._chart_source(ctx, obj)
        # The HelmChart as the apply left it, not as the cache has it: a cache that has not
        # seen the apply yet shows the chart of the old spec as ready at its generation.
        raw = applied or await ctx.read(info, namespace, name)
        if raw is None:
            raise Waiting(
                f"could not get Source object: {info.kind} '{namespace}/{name}' not found",
                reason=ARTIFACT_FAILED,
                requeue_after=CHART_REQUEUE_SECONDS,
            )
        try:
            artifact = artifact_of(raw, info.kind)
        except ChartNotReady as err:
            raise Waiting(
                str(err), reason=ARTIFACT_FAILED, requeue_after=CHART_REQUEUE_SECONDS
            ) from None
        dest = ctx.tempdir("weir-helmrelease-") / "chart.tgz"
        try:
            await fetch_file(
                str(artifact.get("url", "")),
                str(artifact.get("digest", "")),
                dest,
                max_size=MAX_CHART_SIZE,
                timeout=obj.timeout_seconds,
            )
            metadata = await asyncio.to_thread(chart_metadata, dest)
        except (ArtifactError, InvalidChart) as err:
            raise ReconcileError(f"Could not load chart: {err}", reason=ARTIFACT_FAILED) from None
        obj.status.last_attempted_revision_digest = None
        if info == OCI_REPOSITORY:
            # As Flux: the digest in the version, so that the same tag pushed again upgrades.
            try:
                version, digest = oci_chart_version(
                    metadata.version, str(artifact.get("revision", ""))
                )
                await asyncio.to_thread(set_chart_version, dest, version)
            except (ChartMutateError, InvalidChart) as err:
                raise ReconcileError(str(err), reason=CHART_MUTATE_ERROR) from None
            metadata = ChartMetadata(name=metadata.name, version=version)
            obj.status.last_attempted_revision_digest = digest
        ctx.state.chart_path, ctx.state.chart = dest, metadata
        ctx.attempted_revision = metadata.version
        return Result()

    async def _chart_source(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> tuple[ResourceInfo, str, str, dict[str, Any] | None]:
        """Kind, namespace and name of the chart's source, and the object when it was just
        applied: the HelmChart made from the template (applied first; one the controller made
        before for another name, or before ``chartRef``, deleted), or the ``chartRef``
        target."""
        if obj.spec.chart is None:
            await self._delete_helm_chart(ctx, obj)
            ref = obj.spec.chart_ref
            assert ref is not None
            kinds = {HELM_CHART.kind: HELM_CHART, OCI_REPOSITORY.kind: OCI_REPOSITORY}
            if ref.kind not in kinds:
                raise Stalling(
                    f"chartRef of kind {ref.kind}: not supported by weir yet", reason=UNSUPPORTED
                )
            return kinds[ref.kind], ref.namespace or obj.metadata.namespace or "", ref.name, None
        desired = helm_chart_template(obj)
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        if obj.status.helm_chart and obj.status.helm_chart != f"{namespace}/{name}":
            await self._delete_helm_chart(ctx, obj)
        try:
            applied = await apply_helm_chart(ctx.client, desired)
        except ApiError as err:
            raise ReconcileError(
                f"failed to run server-side apply: {err}", reason=ARTIFACT_FAILED
            ) from None
        obj.status.helm_chart = f"{namespace}/{name}"
        return HELM_CHART, namespace, name, applied

    async def _delete_helm_chart(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> None:
        namespace, name = obj.status.helm_chart_key
        if name:
            await ctx.client.delete(HELM_CHART, namespace, name)
            ctx.log.info("helm chart deleted", helm_chart=obj.status.helm_chart)
        obj.status.helm_chart = None

    # The release

    async def reconcile_release(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> Result:
        """Install, upgrade, remediate or leave alone the release, as its stored state
        requires, on the release's cluster as its account."""
        try:
            # The HelmRelease's own namespace, read as the controller (Flux's valuesFrom).
            values = await compose_values(ctx.client, obj)
        except ValuesError as err:
            raise ReconcileError(str(err), reason=err.reason) from None
        async with self.release_target(ctx, obj):
            return await self._reconcile_release(ctx, obj, values)

    async def _reconcile_release(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease, values: dict[str, Any]
    ) -> Result:
        chart, chart_path = ctx.state.chart, ctx.state.chart_path
        assert chart is not None
        assert chart_path is not None
        changed = must_reinstall(obj, chart.name)
        if changed:
            # Installing beside the old release would fail on its objects: it goes first.
            await self._uninstall_previous_target(ctx, obj, changed)
        digest = history.config_digest(values)
        status = obj.status
        if (
            status.last_attempted_generation != obj.metadata.generation
            or status.last_attempted_revision != chart.version
            or status.last_attempted_config_digest != digest
        ):
            # A new desired state: whatever failed before may work now (Flux's
            # MustResetFailures).
            status.failures = status.install_failures = status.upgrade_failures = None
        status.last_attempted_generation = obj.metadata.generation
        status.last_attempted_revision = chart.version
        status.last_attempted_config_digest = digest
        status.last_attempted_values_checksum = None
        status.storage_namespace = obj.storage_namespace

        stored = await self._stored(ctx, obj)
        action = next_action(obj, stored, chart, digest, force=ctx.state.force)
        status.observed_post_renderers_digest, status.observed_common_metadata_digest = (
            post_rendering_digests(obj)
        )
        if action == "unlock":
            assert stored is not None
            await checks.unlock(ctx, obj, ctx.state.release_target, stored, status.latest_snapshot)
        if action == "stalled":
            verb = status.last_attempted_release_action or "install"
            raise Stalling(
                f"Failed to {verb} after {active_failures(obj)} attempt(s)",
                reason=RETRIES_EXCEEDED,
            )
        if not obj.test.enable:
            ctx.clear(tests.TEST_SUCCESS)
        if action == "test":
            await checks.run_tests(ctx, obj, ctx.state.release_helm)
            return Result(message=self._in_sync(ctx, obj))
        if action == "none":
            message = self._in_sync(ctx, obj)
            assert stored is not None
            if obj.status.inventory is None:  # a release made before weir kept inventories
                await self._observe_inventory(ctx, obj, stored.manifest)
            if obj.drift_detection.detects_changes:
                await checks.check_drift(ctx, obj, ctx.state.release_target, stored)
            else:
                ctx.clear(drift.DRIFTED)
            return Result(message=message)
        if action == "uninstall":
            assert stored is not None
            await self._remediate_by_uninstall(ctx, obj, stored)
        if action == "rollback":
            assert stored is not None
            target = await self._rollback_target(ctx, obj, stored)
            if target is not None:
                await self._remediate_by_rollback(ctx, obj, target)
            # The release to roll back to changed in storage: upgrading is the safer remedy.
            ctx.log.info("rollback target not as recorded: upgrading instead")
            action = "upgrade"
        latest = obj.status.latest_snapshot
        if latest is not None and stored is not None and not describes(latest, stored):
            ctx.log.info("release not managed by controller: history cleared")
            obj.status.history = None
        return await self._release(ctx, obj, action, chart_path, chart, values, stored)

    async def _stored(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> Release | None:
        try:
            return await ctx.state.release_helm.get(
                obj.helm_release_name, storage_namespace=obj.storage_namespace
            )
        except ReleaseNotFound:
            return None
        except HelmError as err:
            raise ReconcileError(
                f"failed to retrieve last release from storage: {err}", reason=INIT_FAILED
            ) from None

    def _in_sync(self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease) -> str:
        """Released as it is; the message Ready carries."""
        latest = obj.status.latest_snapshot
        assert latest is not None
        obj.status.history = history.truncate(
            obj.status.history or (), tests.ignores_test_failures(obj)
        )
        if cond.is_true(ctx.conditions, REMEDIATED):
            # The release a remediation left is what is desired now (the spec went back to
            # it): that is an upgrade that succeeded, as Flux words it.
            ctx.clear(REMEDIATED)
            message = _success_message(UPGRADE_SUCCEEDED, latest)
            ctx.mark(RELEASED, "True", UPGRADE_SUCCEEDED, message)
            return message
        released = cond.find(ctx.conditions, RELEASED)
        if released is not None and released.status == "True":
            return released.message
        install = (released.reason if released else "") == INSTALL_FAILED or latest.action == (
            "install"
        )
        reason = INSTALL_SUCCEEDED if install else UPGRADE_SUCCEEDED
        message = _success_message(reason, latest)
        ctx.mark(RELEASED, "True", reason, message)
        return message

    async def _release(
        self,
        ctx: RunContext[HelmReleaseRunState],
        obj: HelmRelease,
        action: str,
        chart_path: Path,
        chart: ChartMetadata,
        values: dict[str, Any],
        stored: Release | None,
    ) -> Result:
        timeout = (
            obj.install.timeout_seconds(obj.timeout_seconds)
            if action == "install"
            else obj.upgrade.timeout_seconds(obj.timeout_seconds)
        )
        await ctx.progress(f"Running '{action}' action with timeout of {format_duration(timeout)}")
        obj.status.last_attempted_release_action = "install" if action == "install" else "upgrade"
        if action == "install":
            obj.status.history = None  # a new release: nothing before it is rolled back to
        ctx.clear(REMEDIATED)
        ctx.clear(tests.TEST_SUCCESS)
        name, storage = obj.helm_release_name, obj.storage_namespace
        started = time.monotonic()
        try:
            with post_render_options(obj) as post_render:
                if action == "install":
                    release = await ctx.state.release_helm.install(
                        name,
                        chart_path,
                        values,
                        namespace=obj.release_namespace,
                        storage_namespace=storage,
                        options=post_render.apply(install_options(obj)),
                    )
                else:
                    release = await ctx.state.release_helm.upgrade(
                        name,
                        chart_path,
                        values,
                        namespace=obj.release_namespace,
                        storage_namespace=storage,
                        options=post_render.apply(upgrade_options(obj)),
                    )
            left = timeout - (time.monotonic() - started)
            await self._wait_for_health_checks(ctx, obj, action, release, left)
        except HelmError as err:
            await self._failed(ctx, obj, action, chart, err, stored)
            raise AssertionError("unreachable") from None  # _failed raises
        finally:
            obj.status.last_attempted_release_action_duration = format_duration(
                time.monotonic() - started
            )
        entry = history.snapshot(release, action)
        entry.oci_digest = obj.status.last_attempted_revision_digest
        self._record(obj, entry)
        retry = obj.install.retry if action == "install" else obj.upgrade.retry
        if retry(DEFAULT_TO_RETRY_ON_FAILURE) is not None:
            # As Flux: only a retried action's success clears the counters; after a
            # remediation they stay, until the desired state changes.
            obj.status.failures = obj.status.install_failures = obj.status.upgrade_failures = None
        reason = INSTALL_SUCCEEDED if action == "install" else UPGRADE_SUCCEEDED
        latest = obj.status.latest_snapshot
        assert latest is not None
        message = _success_message(reason, latest)
        ctx.mark(RELEASED, "True", reason, message)
        ctx.notify(reason, message, revision=chart.version)
        await self._observe_inventory(ctx, obj, release.manifest)
        if obj.test.enable:
            # The next run tests it (one Helm action per run).
            awaiting = tests.awaiting_message(latest)
            ctx.mark(tests.TEST_SUCCESS, "Unknown", tests.AWAITING_TESTS, awaiting)
            return Result(message=message, requeue_after=TESTS_REQUEUE_SECONDS)
        return Result(message=message)

    async def _observe_inventory(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease, manifest: str
    ) -> None:
        """``status.inventory`` of the release whose manifest is ``manifest`` (and of the
        chart's CRDs), as Flux's ``observeInventory``: one that cannot be built is a Warning
        event, not a failed release."""
        chart = ctx.state.chart_path
        try:
            crds = await asyncio.to_thread(chart_crds, chart) if chart is not None else []
            found = await release_inventory(
                ctx.state.release_target.mapper, manifest, obj.release_namespace, crds
            )
        except (YAMLLoadError, tarfile.TarError, OSError, KubeError) as err:
            key = f"{obj.metadata.namespace}/{obj.metadata.name}"
            ctx.warn(INVENTORY_BUILD_FAILED, f"failed to build inventory for {key}: {err}")
            return
        for warning in found.warnings:
            ctx.warn(NAMESPACE_CHECK_SKIPPED, warning)
        obj.status.inventory = found.inventory

    async def _wait_for_health_checks(
        self,
        ctx: RunContext[HelmReleaseRunState],
        obj: HelmRelease,
        action: str,
        release: Release,
        timeout: float,
    ) -> None:
        """After Helm's own wait: the release's objects of the kinds ``healthCheckExprs``
        names, until healthy by those expressions. Helm stored the release as deployed; an
        unhealthy one is marked failed in storage, as Helm marks a release whose wait failed,
        so that it is remediated as one (``ReleaseUnhealthy``, a HelmError, is raised)."""
        custom = ctx.state.health_checks
        settings = obj.install if action == "install" else obj.upgrade
        if not custom or settings.disable_wait:
            return
        target = ctx.state.release_target
        client, mapper = target.client, target.mapper
        objects = await checked_objects(mapper, release.manifest, custom, obj.release_namespace)
        try:
            await wait_for_release(client, mapper, objects, custom, timeout=max(timeout, 1.0))
        except ReleaseUnhealthy as err:
            verb = "Install" if action == "install" else "Upgrade"
            try:
                await storage.mark_failed(
                    client,
                    obj.storage_namespace,
                    release.name,
                    release.version,
                    f'{verb} "{release.name}" failed: {err}',
                )
            except storage.StorageError as failed:
                ctx.log.error("release not marked failed", error=str(failed))
            raise

    async def _failed(
        self,
        ctx: RunContext[HelmReleaseRunState],
        obj: HelmRelease,
        action: str,
        chart: ChartMetadata,
        err: HelmError,
        before: Release | None,
    ) -> None:
        """Count the failure, record the failed revision Helm stored, raise the failure. As
        Flux, the action's own counter (what retries are measured against) counts only a
        failure that stored a release: one that failed before (rendering) is retried with
        backoff."""
        status = obj.status
        status.failures = (status.failures or 0) + 1
        try:
            stored = await ctx.state.release_helm.get(
                obj.helm_release_name, storage_namespace=obj.storage_namespace
            )
        except HelmError:
            stored = None
        if (
            stored is not None
            and stored.status == "failed"
            and (before is None or stored.version != before.version)
        ):
            self._record(obj, history.snapshot(stored, action))
            if action == "install":
                status.install_failures = (status.install_failures or 0) + 1
            else:
                status.upgrade_failures = (status.upgrade_failures or 0) + 1
        reason = INSTALL_FAILED if action == "install" else UPGRADE_FAILED
        verb = "install" if action == "install" else "upgrade"
        message = (
            f"Helm {verb} failed for release {obj.release_namespace}/{obj.release_name} with "
            f"chart {chart.name}@{chart.version}: {err}"
        )
        ctx.mark(RELEASED, "False", reason, message)
        raise ReconcileError(message, reason=reason)

    # Remediation

    async def _rollback_target(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease, stored: Release
    ) -> Snapshot | None:
        """The previous successful release, checked in storage (Flux's VerifySnapshot);
        None when it changed there since (then an upgrade, not a rollback, is tried)."""
        target = history.previous(obj.status.history or (), tests.ignores_test_failures(obj))
        missing = Stalling(
            "Failed to perform remediation: missing target release for rollback: cannot "
            "remediate failed release",
            reason=MISSING_ROLLBACK_TARGET,
        )
        if target is None or (target.name, target.namespace) != (stored.name, stored.namespace):
            raise missing
        try:
            kept = await ctx.state.release_helm.get(
                stored.name, storage_namespace=obj.storage_namespace, version=target.version
            )
        except ReleaseNotFound:
            raise missing from None
        except HelmError as err:
            raise ReconcileError(f"cannot verify previous release to roll back to: {err}") from None
        # Not the whole digest: Helm rewrites a kept release's status (deployed, superseded).
        same = (kept.chart_name, kept.chart_version, history.config_digest(kept.values)) == (
            target.chart_name,
            target.chart_version,
            target.config_digest,
        )
        return target if same else None

    async def _remediate_by_rollback(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease, target: Snapshot
    ) -> NoReturn:
        """Roll back to ``target`` (Flux's RollbackRemediation). The run ends there and is
        requeued with backoff: the next one upgrades again, or stalls, retries exhausted."""
        rollback = obj.rollback
        if rollback.recreate:
            # Helm 4 has no --recreate-pods; said, not silently dropped.
            ctx.log.warning("rollback.recreate is ignored: Helm 4 dropped it")
        server_side_apply = rollback.server_side_apply != "disabled"
        options = RollbackOptions(
            timeout=rollback.timeout_seconds(obj.timeout_seconds),
            wait=not rollback.disable_wait,
            wait_for_jobs=not rollback.disable_wait_for_jobs,
            disable_hooks=bool(rollback.disable_hooks),
            server_side_apply=server_side_apply,
            # As install and upgrade: conflicts always forced with server-side apply.
            force=server_side_apply or bool(rollback.force),
            cleanup_on_fail=bool(rollback.cleanup_on_fail),
            max_history=obj.max_history,
        )
        await ctx.progress(
            f"Running 'rollback' action with timeout of {format_duration(options.timeout)}"
        )
        name, storage = obj.helm_release_name, obj.storage_namespace
        try:
            rolled_back = await ctx.state.release_helm.rollback(
                name, storage_namespace=storage, version=target.version, options=options
            )
        except HelmError as err:
            obj.status.failures = (obj.status.failures or 0) + 1
            message = (
                f"Helm rollback to previous release {target.full_release_name} with chart "
                f"{target.versioned_chart_name} failed: {err}"
            )
            ctx.mark(REMEDIATED, "False", ROLLBACK_FAILED, message)
            raise ReconcileError(message, reason=ROLLBACK_FAILED) from None
        await self._refresh_statuses(ctx, obj)
        self._record(obj, history.snapshot(rolled_back, "rollback"))
        await self._observe_inventory(ctx, obj, rolled_back.manifest)
        message = (
            f"Helm rollback to previous release {target.full_release_name} with chart "
            f"{target.versioned_chart_name} succeeded"
        )
        ctx.mark(REMEDIATED, "True", ROLLBACK_SUCCEEDED, message)
        # A Waiting: Ready=False with this reason, a Normal event, and the backoff requeue
        # Flux's ErrMustRequeue asks for.
        raise Waiting(message, reason=ROLLBACK_SUCCEEDED, requeue_after=0.0)

    async def _remediate_by_uninstall(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease, stored: Release
    ) -> NoReturn:
        """Uninstall the failed release (Flux's UninstallRemediation); requeued with backoff,
        the next run installs again, or stalls, retries exhausted."""
        latest = obj.status.latest_snapshot
        assert latest is not None  # next_action remediates only a release it recorded
        options = uninstall_options(obj)
        await ctx.progress(
            f"Running 'uninstall' action with timeout of {format_duration(options.timeout)}"
        )
        try:
            await ctx.state.release_helm.uninstall(
                stored.name, storage_namespace=obj.storage_namespace, options=options
            )
        except ReleaseNotFound:
            pass  # gone already: what the remediation wanted
        except HelmError as err:
            obj.status.failures = (obj.status.failures or 0) + 1
            message = (
                f"Helm uninstall remediation for release {latest.full_release_name} with "
                f"chart {latest.versioned_chart_name} failed: {err}"
            )
            ctx.mark(REMEDIATED, "False", UNINSTALL_FAILED, message)
            raise ReconcileError(message, reason=UNINSTALL_FAILED) from None
        latest.status, latest.action = "uninstalled", "uninstall-remediation"
        obj.status.inventory = None
        message = (
            f"Helm uninstall remediation for release {latest.full_release_name} with chart "
            f"{latest.versioned_chart_name} succeeded"
        )
        ctx.mark(REMEDIATED, "True", UNINSTALL_SUCCEEDED, message)
        raise Waiting(message, reason=UNINSTALL_SUCCEEDED, requeue_after=0.0)

    async def _uninstall_previous_target(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease, changed: str
    ) -> NoReturn:
        """Uninstall the recorded release, where it was stored (Flux's ``reconcileUninstall``
        on a changed release target), forget it, and requeue: the next run installs."""
        status = obj.status
        latest = status.latest_snapshot
        assert latest is not None
        assert status.storage_namespace
        ctx.log.info("release target changed: uninstalling the current release", target=changed)
        full_name, chart = latest.full_release_name, latest.versioned_chart_name
        uninstall = obj.uninstall
        try:
            await ctx.state.release_helm.uninstall(
                latest.name,
                storage_namespace=status.storage_namespace,
                options=uninstall_options(obj),
            )
            message = f"Helm uninstall succeeded for release {full_name} with chart {chart}"
        except ReleaseNotFound:
            message = f"Release {full_name} was not found, assuming it is uninstalled"
        except HelmError as err:
            if uninstall.keep_history and "is already deleted" in str(err):
                message = f"Release {full_name} was already uninstalled"
            else:
                status.failures = (status.failures or 0) + 1
                message = f"Helm uninstall failed for release {full_name} with chart {chart}: {err}"
                ctx.mark(RELEASED, "False", UNINSTALL_FAILED, message)
                raise ReconcileError(message, reason=UNINSTALL_FAILED) from None
        ctx.mark(RELEASED, "False", UNINSTALL_SUCCEEDED, message)
        status.history = status.inventory = status.storage_namespace = None
        status.failures = status.install_failures = status.upgrade_failures = None
        # Ready=False with this reason, a Normal event, and the requeue Flux asks for.
        raise Waiting(message, reason=UNINSTALL_SUCCEEDED, requeue_after=0.0)

    async def _refresh_statuses(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> None:
        """The statuses Helm gave the recorded releases (a rollback supersedes them)."""
        try:
            stored = await ctx.state.release_helm.history(
                obj.helm_release_name, storage_namespace=obj.storage_namespace
            )
        except HelmError:
            return
        statuses = {summary.version: summary.status for summary in stored}
        for entry in obj.status.history or ():
            entry.status = statuses.get(entry.version, entry.status)

    @staticmethod
    def _record(obj: HelmRelease, entry: Snapshot) -> None:
        """Put ``entry`` first in the history; the release it superseded says so."""
        previous = [s for s in obj.status.history or () if s.version != entry.version]
        for old in previous:
            if old.status == "deployed" and entry.status == "deployed":
                old.status = "superseded"
        obj.status.history = history.truncate([entry, *previous])

    # Deletion

    async def finalize(self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease) -> None:
        """Uninstall the release (on its cluster, as its account), then delete the HelmChart
        made for it. A suspended HelmRelease leaves both, as Flux does."""
        if obj.suspended:
            ctx.log.info("suspended: release left installed")
            return
        if unsupported_settings(obj):
            # Refused settings mean weir never released this spec: a release of that name
            # here may be someone else's.
            ctx.log.info("unsupported settings: release left alone")
        else:
            await self._uninstall_on_target(ctx, obj)
        await self._delete_helm_chart(ctx, obj)

    async def _uninstall_on_target(
        self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease
    ) -> None:
        """As Flux: with the kubeconfig Secret gone, or the account to impersonate gone (its
        namespace being deleted, say), the release cannot be reached: it is left, logged."""
        try:
            async with self.release_target(ctx, obj) as target:
                if not await target.service_account_exists():
                    ctx.log.error(
                        "skipping Helm release uninstallation, the service account to "
                        "impersonate is gone",
                        service_account=target.user,
                    )
                    return
                await self._uninstall(ctx, obj)
        except KubeConfigSecretNotFound as err:
            ctx.log.error("skipping Helm release uninstallation", error=err.message)
        except ReconcileError as err:
            if err.reason != REST_CLIENT_ERROR:
                raise  # the uninstall's own failure, already marked
            message = f"failed to build REST client getter to uninstall release: {err.message}"
            ctx.mark(RELEASED, "False", UNINSTALL_FAILED, message)
            raise ReconcileError(message, reason=UNINSTALL_FAILED) from None

    async def _uninstall(self, ctx: RunContext[HelmReleaseRunState], obj: HelmRelease) -> None:
        name, storage = obj.helm_release_name, obj.storage_namespace
        helm = ctx.state.release_helm
        try:
            stored = await helm.get(name, storage_namespace=storage)
        except ReleaseNotFound:
            return
        if stored.status == "uninstalled":
            return
        options = uninstall_options(obj)
        full_name = f"{stored.namespace}/{stored.name}.v{stored.version}"
        chart = f"{stored.chart_name}@{stored.chart_version}"
        try:
            await helm.uninstall(name, storage_namespace=storage, options=options)
        except ReleaseNotFound:
            return
        except HelmError as err:
            message = f"Helm uninstall failed for release {full_name} with chart {chart}: {err}"
            ctx.mark(RELEASED, "False", UNINSTALL_FAILED, message)
            raise ReconcileError(message, reason=UNINSTALL_FAILED) from None
        message = f"Helm uninstall succeeded for release {full_name} with chart {chart}"
        ctx.notify(UNINSTALL_SUCCEEDED, message)


def configs_read(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """The ConfigMaps and Secrets a HelmRelease (raw) reads: ``valuesFrom``."""
    refs = (obj.get("spec") or {}).get("valuesFrom") or ()
    return [(str(ref.get("kind", "")), str(ref.get("name", ""))) for ref in refs]


def cross_namespace_reference(obj: HelmRelease) -> str:
    """With ``--no-cross-namespace-refs``: why the chart's source (or ``chartRef``) may not be
    used, as the kustomize controller says it; empty when it is in the HelmRelease's
    namespace."""
    own = obj.metadata.namespace or ""
    kind: str
    if obj.spec.chart is not None:
        source = obj.spec.chart.spec.source_ref
        kind, namespace, name = source.kind, source.namespace or own, source.name
    else:
        assert obj.spec.chart_ref is not None
        ref = obj.spec.chart_ref
        kind, namespace, name = ref.kind, ref.namespace or own, ref.name
    if namespace == own:
        return ""
    return f"can't access '{kind}/{namespace}/{name}', cross-namespace references have been blocked"


def _success_message(reason: str, latest: Snapshot) -> str:
    verb = "install" if reason == INSTALL_SUCCEEDED else "upgrade"
    return (
        f"Helm {verb} succeeded for release {latest.full_release_name} with chart "
        f"{latest.versioned_chart_name}"
    )


def _first_kubeconfig() -> str:
    return next(filter(None, os.environ.get("KUBECONFIG", "").split(os.pathsep)), "")


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_kubeconfig() -> str:
    """A kubeconfig for Helm's library that uses the pod's service account (token file, so
    that rotated tokens are read again)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ReconcileError("no kubeconfig given and not running in a cluster")
    if ":" in host:
        host = f"[{host}]"
    return (
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: in-cluster\n  cluster:\n"
        f"    server: https://{host}:{port}\n"
        f"    certificate-authority: {SERVICE_ACCOUNT_DIR / 'ca.crt'}\n"
        "users:\n- name: in-cluster\n  user:\n"
        f"    tokenFile: {SERVICE_ACCOUNT_DIR / 'token'}\n"
        "contexts:\n- name: in-cluster\n  context:\n    cluster: in-cluster\n    user: in-cluster\n"
        "current-context: in-cluster\n"
    )
