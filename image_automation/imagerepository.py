"""The ImageRepository reconciler: the tags of an image repository, scanned every interval.

One step, as Flux's image-reflector-controller does it:

- refuse, until the spec changes, what cannot work: a ``provider`` other than ``generic``
  (cloud credentials are not implemented), an image that is not a bare repository name
  (``ImageURLInvalid``), an exclusion pattern that does not compile;
- decide whether to scan now (Flux's ``shouldScan``): never scanned, a new
  ``reconcile.fluxcd.io/requestedAt``, a new canonical image name or exclusion list, no stored
  tags, or the interval since ``lastScanResult.scanTime`` has passed; otherwise look again
  when it will have;
- scan: list every tag through the registry API (``Link`` pages followed to the end), with
  the OCIRepository's authentication (a docker-config ``secretRef``, the image pull secrets of
  ``serviceAccountName``, ``certSecretRef``, ``proxySecretRef``, ``insecure``), all within
  ``spec.timeout``; leave out excluded tags; store the full list (``image_automation.tags``)
  and record Flux's summary in ``status.lastScanResult``.

A failed scan (registry down, credentials refused) is ``Ready=False`` with the registry's
answer and what to do about it; the previous scan stays, in status and in the store.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from controllers import conditions as cond
from controllers.api import format_duration, parse_time, time_now
from controllers.kube import KubeClient
from controllers.oci.client import RegistryClient
from controllers.oci.credentials import (
    tls_context,
)
from controllers.oci.errors import InvalidReference, OCIError
from controllers.reconcile import (
    REQUESTED_AT,
    ReconcileError,
    Reconciler,
    Result,
    RunContext,
    Stalling,
    Step,
)
from controllers.secrets import SecretError, proxy_url, read_secret, registry_credentials
from image_automation.api_v1 import ImageRepository, ScanResult
from image_automation.scan import (
    ImageName,
    InvalidExclusion,
    exclude_tags,
    latest_tags,
    parse_image,
    scan_revision,
    sorted_tags,
)
from image_automation.tags import ScanResult as StoredScan
from image_automation.tags import TagStore, TagStoreError

__all__ = [
    "AUTHENTICATION_FAILED",
    "IMAGE_URL_INVALID",
    "READ_OPERATION_FAILED",
    "ImageRepositoryReconciler",
    "registry_client",
]

IMAGE_URL_INVALID = "ImageURLInvalid"
AUTHENTICATION_FAILED = "AuthenticationFailed"
READ_OPERATION_FAILED = "ReadOperationFailed"

# Flux's reasons for a scan, shown in the Reconciling condition while it runs.
_NEVER_SCANNED = "first scan"
_RECONCILE_REQUESTED = "reconcile requested"
_NEW_IMAGE_NAME = "new image name"
_UPDATED_EXCLUSION_LIST = "updated exclusion list"
_NO_STORED_TAGS = "no tags in database"
_INTERVAL = "triggered by interval"


@dataclass
class ScanRunState:
    """What one run decided: the image it scans."""

    image: ImageName | None = None


class ImageRepositoryReconciler(Reconciler[ImageRepository, ScanRunState]):
    """Scans ImageRepositories into ``store``. ``page_size`` asks the registry for tag pages
    of that size (the registry's own default when None). ``stats`` counts ``scans`` and
    ``skipped`` runs (not yet time to scan)."""

    model = ImageRepository
    # Flux's ImageRepository has no abnormal conditions of its own: Ready says it all.
    owned_conditions: tuple[str, ...] = ()

    def __init__(self, store: TagStore, *, page_size: int | None = None) -> None:
        self.store = store
        self.page_size = page_size
        self.stats: Counter[str] = Counter()

    @property
    def steps(self) -> Sequence[Step[ImageRepository, ScanRunState]]:
        return [self.scan]

    def new_state(self) -> ScanRunState:
        return ScanRunState()

    async def finalize(self, ctx: RunContext[ScanRunState], obj: ImageRepository) -> None:
        await self.store.delete(ctx.client, obj)

    async def scan(self, ctx: RunContext[ScanRunState], obj: ImageRepository) -> Result:
        """Scan the repository when it is time to (Flux's rules); record the result."""
        image = _checked_spec(obj)
        ctx.state.image = image
        previous = obj.status.last_scan_result
        stored = await self._stored(ctx, obj)
        reason, wait = _scan_reason(obj, image, stored)
        if reason is None:
            self.stats["skipped"] += 1
            _observe(obj, image)
            assert previous is not None
            return Result(requeue_after=wait, message=_ready_message(previous))

        await ctx.progress(f"scanning: {reason}")
        self.stats["scans"] += 1
        try:
            async with asyncio.timeout(obj.timeout_seconds):
                client = await registry_client(ctx.client, obj, image)
                async with client:
                    tags = await client.tags(page_size=self.page_size)
        except TimeoutError:
            message = f"scan failed: timed out after {format_duration(obj.timeout_seconds)}"
            raise ReconcileError(message, reason=READ_OPERATION_FAILED) from None
        except OCIError as err:
            raise ReconcileError(
                f"scan failed: {err.message}", reason=READ_OPERATION_FAILED
            ) from None

        kept = sorted_tags(exclude_tags(tags, obj.exclusion_list))
        result = StoredScan(tuple(kept), scan_revision(kept), time_now(), image.canonical)
        try:
            await self.store.save(ctx.client, obj, result)
        except TagStoreError as err:
            raise ReconcileError(f"scan failed: {err}", reason=READ_OPERATION_FAILED) from None
        obj.status.last_scan_result = ScanResult(
            revision=result.revision,
            tag_count=len(kept),
            scan_time=result.scan_time,
            latest_tags=latest_tags(kept) or None,
        )
        _observe(obj, image)
        message = _ready_message(obj.status.last_scan_result)
        ctx.log.info("image repository scanned", tags=len(kept), revision=result.revision)
        if previous is None or previous.revision != result.revision:
            ctx.notify(cond.SUCCEEDED, message, revision=result.revision)
        return Result(message=message)

    async def _stored(
        self, ctx: RunContext[ScanRunState], obj: ImageRepository
    ) -> StoredScan | None:
        namespace, name = obj.metadata.namespace or "", obj.metadata.name
        previous = obj.status.last_scan_result
        try:
            return await self.store.tags_of(
                ctx.client, namespace, name, revision=previous.revision if previous else None
            )
        except TagStoreError as err:
            # Unreadable: scan again, which rewrites it.
            ctx.log.warning("stored tags unreadable", error=str(err))
            return None


def _checked_spec(obj: ImageRepository) -> ImageName:
    """The image to scan; Stalling for what no retry can fix."""
    spec = obj.spec
    if spec.provider != "generic":
        raise Stalling(
            f"failed to configure authentication options: provider '{spec.provider}' is not "
            "supported yet; use provider 'generic' with spec.secretRef (a docker-registry "
            "Secret) or spec.serviceAccountName (its image pull secrets)",
            reason=AUTHENTICATION_FAILED,
        )
    try:
        image = parse_image(spec.image, insecure=bool(spec.insecure))
    except InvalidReference as err:
        raise Stalling(err.message, reason=IMAGE_URL_INVALID) from None
    try:
        exclude_tags((), obj.exclusion_list)
    except InvalidExclusion as err:
        raise Stalling(f"invalid spec.exclusionList: {err}", reason=READ_OPERATION_FAILED) from None
    return image


def _scan_reason(
    obj: ImageRepository, image: ImageName, stored: StoredScan | None
) -> tuple[str | None, float | None]:
    """Why to scan now (Flux's ``shouldScan``), or None and how long until it is time."""
    last = obj.status.last_scan_result
    if last is None:
        return _NEVER_SCANNED, None
    requested = (obj.metadata.annotations or {}).get(REQUESTED_AT)
    if requested is not None and requested != obj.status.last_handled_reconcile_at:
        return _RECONCILE_REQUESTED, None
    if image.canonical != obj.status.canonical_image_name:
        return _NEW_IMAGE_NAME, None
    if set(obj.exclusion_list) != set(obj.status.observed_exclusion_list or ()):
        return _UPDATED_EXCLUSION_LIST, None
    if stored is None or stored.revision != last.revision:
        return _NO_STORED_TAGS, None
    scanned = parse_time(last.scan_time or "")
    if scanned is None:
        return _INTERVAL, None
    elapsed = (parse_time(time_now()) or scanned) - scanned
    wait = obj.interval_seconds - elapsed.total_seconds()
    if wait < 1.0:
        return _INTERVAL, None
    return None, wait


def _observe(obj: ImageRepository, image: ImageName) -> None:
    obj.status.canonical_image_name = image.canonical
    obj.status.observed_exclusion_list = obj.exclusion_list


def _ready_message(result: ScanResult) -> str:
    return f"successful scan: found {result.tag_count} tags with checksum {result.revision or ''}"


async def registry_client(
    client: KubeClient, obj: ImageRepository, image: ImageName
) -> RegistryClient:
    """A client of the image's repository with the object's credentials, TLS and proxy;
    an AuthenticationFailed error when a Secret or ServiceAccount is unusable."""
    spec, namespace = obj.spec, obj.metadata.namespace or ""
    try:
        credentials = await registry_credentials(
            client,
            obj.metadata.namespace or "",
            image.repository.host,
            secret_name=spec.secret_ref.name if spec.secret_ref else None,
            service_account_name=spec.service_account_name,
        )
        tls = None
        if spec.cert_secret_ref is not None:
            data = await read_secret(client, namespace, spec.cert_secret_ref.name)
            tls = await asyncio.to_thread(tls_context, data, data.ref)
        proxy = None
        if spec.proxy_secret_ref is not None:
            data = await read_secret(client, namespace, spec.proxy_secret_ref.name)
            proxy = proxy_url(data, data.ref)
    except SecretError as err:
        message = f"failed to configure authentication options: {err}"
        raise ReconcileError(message, reason=AUTHENTICATION_FAILED) from None
    except OCIError as err:
        message = f"failed to configure authentication options: {err.message}"
        raise ReconcileError(message, reason=AUTHENTICATION_FAILED) from None
    return RegistryClient(
        image.repository, credentials, tls=tls, proxy=proxy, timeout=obj.timeout_seconds
    )
