"""The ImagePolicy reconciler: the latest image of an ImageRepository's last scan, by policy.

One step, as image-reflector-controller's ImagePolicy reconciler:

- the ImageRepository it names, in its namespace or another one that allows it
  (``accessFrom``, fluxcd/pkg ``acl``; none at all with ``--no-cross-namespace-refs``); a
  missing one is ``DependencyNotReady``, retried;
- the policy and tag filter, refused until the spec changes when they cannot work
  (``InvalidPolicy``);
- the tags of the repository's last scan (``image_automation.tags``); none yet is
  ``DependencyNotReady``, looked at again after ``--requeue-dependency`` (a new scan requeues
  the policy at once: the ImageRepository's scan revision is watched);
- the chosen tag (``image_automation.policy``), and its digest when ``digestReflectionPolicy``
  asks: ``IfNotPresent`` once per chosen tag, ``Always`` every ``interval``;
- ``status.latestRef``, the previous one in ``observedPreviousRef`` and an event when it
  changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from controllers import conditions as cond
from controllers.api import format_duration
from controllers.kinds import NAMESPACE
from controllers.oci.errors import InvalidReference, OCIError
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
from image_automation.api_v1 import ImagePolicy, ImageRef, ImageRepository
from image_automation.imagerepository import IMAGE_URL_INVALID, registry_client
from image_automation.policy import (
    InvalidPolicy,
    NoMatch,
    TagFilter,
    latest_tag,
    parse_policy,
)
from image_automation.scan import parse_image
from image_automation.tags import TagStore, TagStoreError, policies_to_requeue

__all__ = [
    "ACCESS_DENIED",
    "DEPENDENCY_NOT_READY",
    "INVALID_POLICY",
    "ImagePolicyReconciler",
]

ACCESS_DENIED = "AccessDenied"
DEPENDENCY_NOT_READY = "DependencyNotReady"
INVALID_POLICY = "InvalidPolicy"
# Flux's reason when no tag qualifies (metav1.StatusFailure).
FAILURE = "Failure"


@dataclass
class PolicyRunState:
    """Nothing is handed between steps: one step does it all."""


class ImagePolicyReconciler(Reconciler[ImagePolicy, PolicyRunState]):
    """Chooses each ImagePolicy's latest image from the scans in ``store``."""

    model = ImagePolicy
    owned_conditions: tuple[str, ...] = ()

    def __init__(
        self,
        store: TagStore,
        *,
        no_cross_namespace_refs: bool = False,
        requeue_dependency: float = 5.0,
    ) -> None:
        self.store = store
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.requeue_dependency = requeue_dependency

    @property
    def steps(self) -> Sequence[Step[ImagePolicy, PolicyRunState]]:
        return [self.choose]

    @property
    def watches(self) -> Sequence[Watch]:
        return [Watch(ImageRepository.info, policies_to_requeue)]

    def new_state(self) -> PolicyRunState:
        return PolicyRunState()

    async def finalize(self, ctx: RunContext[PolicyRunState], obj: ImagePolicy) -> None:
        return None

    async def choose(self, ctx: RunContext[PolicyRunState], obj: ImagePolicy) -> Result:
        """Pick the latest tag of the repository's last scan; record it."""
        repository = await self._repository(ctx, obj)
        try:
            parse_image(repository.spec.image, insecure=bool(repository.spec.insecure))
        except InvalidReference as err:
            raise Stalling(err.message, reason=IMAGE_URL_INVALID) from None
        try:
            policy = parse_policy(obj.spec.policy.to_dict())
            pattern = obj.spec.filter_tags.pattern if obj.spec.filter_tags else None
            extract = obj.spec.filter_tags.extract if obj.spec.filter_tags else None
            tag_filter = TagFilter(pattern or "", extract or "") if obj.spec.filter_tags else None
        except InvalidPolicy as err:
            raise Stalling(str(err), reason=INVALID_POLICY) from None

        namespace, name = repository.metadata.namespace or "", repository.metadata.name
        last = repository.status.last_scan_result
        try:
            scan = await self.store.tags_of(
                ctx.client, namespace, name, revision=last.revision if last else None
            )
        except TagStoreError as err:
            raise ReconcileError(str(err)) from None
        if scan is None:
            wait = format_duration(self.requeue_dependency)
            raise Waiting(
                f"retrying in {wait} error: no tags in database",
                reason=DEPENDENCY_NOT_READY,
                requeue_after=self.requeue_dependency,
            )
        try:
            tag = latest_tag(policy, scan.tags, tag_filter)
        except NoMatch as err:
            raise ReconcileError(str(err), reason=FAILURE) from None

        latest = ImageRef(name=repository.spec.image, tag=tag)
        latest.digest = await self._digest(ctx, obj, repository, latest)
        previous = obj.status.latest_ref
        if previous is None or previous.to_dict() != latest.to_dict():
            obj.status.observed_previous_ref = previous
            obj.status.latest_ref = latest
        message = _ready_message(obj)
        if previous is None or previous.to_dict() != latest.to_dict():
            ctx.notify(cond.SUCCEEDED, message)
        return Result(requeue_after=obj.interval_seconds or None, message=message)

    async def _repository(
        self, ctx: RunContext[PolicyRunState], obj: ImagePolicy
    ) -> ImageRepository:
        """The ImageRepository the policy names, if the policy may read it."""
        own = obj.metadata.namespace or ""
        ref = obj.spec.image_repository_ref
        namespace = ref.namespace or own
        key = f"{namespace}/{ref.name}"
        if namespace != own and self.no_cross_namespace_refs:
            raise ReconcileError(
                "failed to get the referred ImageRepository: cannot access "
                f"'ImageRepository/{key}', cross-namespace references have been blocked",
                reason=ACCESS_DENIED,
            )
        raw = await ctx.read(ImageRepository.info, namespace, ref.name)
        if raw is None:
            raise ReconcileError(
                "failed to get the referred ImageRepository: referenced ImageRepository does "
                f'not exist: imagerepositories.image.toolkit.fluxcd.io "{ref.name}" not found',
                reason=DEPENDENCY_NOT_READY,
            )
        repository = ImageRepository.from_dict(raw)
        if namespace != own:
            await self._check_access(ctx, own, key, repository)
        return repository

    async def _check_access(
        self,
        ctx: RunContext[PolicyRunState],
        own: str,
        key: str,
        repository: ImageRepository,
    ) -> None:
        """fluxcd/pkg ``acl.HasAccessToRef``: the policy's namespace labels must match one of
        the repository's ``accessFrom.namespaceSelectors`` (no labels: every namespace)."""
        access = repository.spec.access_from
        prefix = "failed to get the referred ImageRepository: access denied: "
        if access is None:
            raise ReconcileError(
                f"{prefix}'{key}' can't be accessed due to missing ACL labels on 'accessFrom'",
                reason=ACCESS_DENIED,
            )
        namespace = await ctx.read(NAMESPACE, None, own)
        labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
        for selector in access.namespace_selectors:
            wanted = selector.match_labels or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                return
        raise ReconcileError(
            f"{prefix}'{key}' can't be accessed due to ACL labels mismatch on namespace '{own}'",
            reason=ACCESS_DENIED,
        )

    async def _digest(
        self,
        ctx: RunContext[PolicyRunState],
        obj: ImagePolicy,
        repository: ImageRepository,
        latest: ImageRef,
    ) -> str | None:
        """The digest ``digestReflectionPolicy`` asks for: looked up in the registry, kept
        from the previous run, or none."""
        reflect = obj.spec.digest_reflection_policy
        previous = obj.status.latest_ref
        if reflect == "Never":
            return None
        if (
            reflect == "IfNotPresent"
            and previous is not None
            and (previous.name, previous.tag) == (latest.name, latest.tag)
            and previous.digest
        ):
            return previous.digest
        image = parse_image(repository.spec.image, insecure=bool(repository.spec.insecure))
        shown = f"{latest.name}:{latest.tag}"
        try:
            async with asyncio.timeout(repository.timeout_seconds):
                client = await registry_client(ctx.client, repository, image)
                async with client:
                    return await client.resolve_digest(latest.tag)
        except TimeoutError:
            message = f"failed fetching digest of {shown}: timed out"
        except OCIError as err:
            message = f"failed fetching digest of {shown}: {err.message}"
        raise ReconcileError(message)


def _ready_message(obj: ImagePolicy) -> str:
    """Flux's Ready message: the tag chosen, its digest, and what it was before."""
    latest, previous = obj.status.latest_ref, obj.status.observed_previous_ref
    assert latest is not None
    message = f"Latest image tag for {latest.name} resolved to {latest.tag}"
    if latest.digest:
        message += f" with digest {latest.digest}"
    if previous is not None and previous.to_dict() != latest.to_dict():
        message += f" (previously {previous.name}:{previous.tag}"
        if previous.digest:
            message += f"@{previous.digest}"
        message += ")"
    return message
