"""The OCIRepository reconciler: OCI artifact in a registry → tar.gz artifact in storage.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), source (credentials and TLS, which tag or digest, skip when the manifest digest
is what the artifact already holds, pull the selected layer and unpack it safely), artifact
(archive with ignore rules, or copy the layer as it is; record it in status).

Revisions are Flux's: ``<tag>@sha256:<manifest digest>``, or ``sha256:<digest>`` for a digest
reference; the artifact file is ``<digest hex>.tar.gz``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controllers.api import parse_duration
from controllers.artifact import DEFAULT_MAX_SIZE, ArtifactError, extract_tarball
from controllers.kinds import SERVICE_ACCOUNT
from controllers.kube import KubeClient
from controllers.reconcile import ReconcileError, Result, RunContext, Stalling, Step
from controllers.secrets import SecretError, read_secret
from source import oci
from source.api_v1 import OCIRepository
from source.secrets import proxy_url
from source.storage import ArtifactStorage, StorageError
from source.storage_step import reconcile_storage

__all__ = ["OCIRepositoryReconciler"]

KIND = "OCIRepository"

# Flux's condition types.
ARTIFACT_IN_STORAGE = "ArtifactInStorage"
ARTIFACT_OUTDATED = "ArtifactOutdated"
FETCH_FAILED = "FetchFailed"
STORAGE_FAILED = "StorageOperationFailed"
SOURCE_VERIFIED = "SourceVerified"
# Flux's reasons.
SUCCEEDED = "Succeeded"
NEW_REVISION = "NewRevision"
NEW_ARTIFACT = "NewArtifact"
AUTH_FAILED = "AuthenticationFailed"
URL_INVALID = "URLInvalid"
READ_FAILED = "ReadOperationFailed"
PULL_FAILED = "OCIArtifactPullFailed"
LAYER_FAILED = "OCIArtifactLayerOperationFailed"
ARCHIVE_FAILED = "ArchiveOperationFailed"
VERIFICATION_ERROR = "VerificationError"
# Annotations `flux push artifact` sets, quoted in the NewArtifact event like Flux does.
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"


@dataclass
class Pulled:
    """What the source step hands to the artifact step."""

    revision: str
    digest: str
    content: Path | None = None  # the unpacked layer (extract)
    layer: Path | None = None  # the layer as downloaded (copy)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        return self.content is None and self.layer is None


class OCIRepositoryReconciler:
    """Reconciles OCIRepository objects into artifacts in ``storage``.

    ``max_size`` caps a layer's download and, separately, its unpacked content (Flux's
    100 MiB by default). ``stats`` counts ``pulls`` (layer downloads) and ``skipped``
    (reconciles that found the manifest digest unchanged).
    """

    model = OCIRepository
    owned_conditions: tuple[str, ...] = (
        ARTIFACT_IN_STORAGE,
        ARTIFACT_OUTDATED,
        FETCH_FAILED,
        STORAGE_FAILED,
        SOURCE_VERIFIED,
    )

    def __init__(self, storage: ArtifactStorage, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.storage = storage
        self.max_size = max_size
        self.stats: Counter[str] = Counter()

    @property
    def steps(self) -> Sequence[Step[OCIRepository]]:
        return [self.reconcile_storage, self.reconcile_source, self.reconcile_artifact]

    async def finalize(self, ctx: RunContext, obj: OCIRepository) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, KIND, obj.metadata.namespace or "", obj.metadata.name
        )

    async def reconcile_storage(self, ctx: RunContext, obj: OCIRepository) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_source(self, ctx: RunContext, obj: OCIRepository) -> Result:
        """Resolve the reference to a manifest digest; pull and unpack the selected layer
        unless the artifact already holds that digest with the same content settings."""
        spec = obj.spec
        try:
            repository = oci.parse_repository(spec.url, insecure=bool(spec.insecure))
        except oci.InvalidReference as err:
            message = f"URL validation failed for '{spec.url}': {err.message}"
            ctx.mark(FETCH_FAILED, "True", URL_INVALID, message)
            raise Stalling(message, reason=URL_INVALID) from None
        self._check_supported(ctx, obj)

        client = await self._client(ctx, obj, repository)
        timeout = parse_duration(spec.timeout)
        try:
            async with asyncio.timeout(timeout), client:
                target = await self._target(ctx, obj, client)
                digest = await self._digest(ctx, obj, client, target)
                revision = target.revision(digest)
                if self._up_to_date(obj, revision):
                    self.stats["skipped"] += 1
                    ctx.log.info("artifact up-to-date with remote revision", revision=revision)
                    ctx.clear(FETCH_FAILED)
                    ctx.state = Pulled(revision, digest)
                    return Result()
                if obj.status.artifact is not None:
                    ctx.mark(
                        ARTIFACT_OUTDATED,
                        "True",
                        NEW_REVISION,
                        f"new revision '{revision}' for '{target.reference(repository)}'",
                    )
                pulled = await self._pull(ctx, obj, client, revision, digest)
        except TimeoutError:
            message = f"failed to pull artifact from '{spec.url}': timed out after {spec.timeout}"
            ctx.mark(FETCH_FAILED, "True", PULL_FAILED, message)
            raise ReconcileError(message, reason=PULL_FAILED) from None

        if pulled.layer is not None and _operation(obj) == "extract":
            pulled.content = await self._extract(ctx, pulled.layer)
            pulled.layer = None
        ctx.clear(FETCH_FAILED)
        ctx.state = pulled
        return Result()

    async def reconcile_artifact(self, ctx: RunContext, obj: OCIRepository) -> Result:
        """Archive the unpacked layer (or copy the layer) into storage; record it in status."""
        pulled: Pulled = ctx.state
        stored = f"stored artifact for digest '{pulled.revision}'"
        if pulled.unchanged:
            assert obj.status.artifact is not None
            obj.status.url = obj.status.artifact.url
            ctx.mark(ARTIFACT_IN_STORAGE, "True", SUCCEEDED, stored)
            ctx.clear(ARTIFACT_OUTDATED)
            return Result(message=stored)
        namespace, name = obj.metadata.namespace or "", obj.metadata.name
        filename = f"{pulled.digest.split(':', 1)[1]}.tar.gz"
        artifact = self.storage.new_artifact(KIND, namespace, name, pulled.revision, filename)
        try:
            if pulled.layer is not None:
                artifact = await asyncio.to_thread(self.storage.copy_file, artifact, pulled.layer)
            else:
                assert pulled.content is not None
                artifact = await asyncio.to_thread(
                    self.storage.archive, artifact, pulled.content, ignore=obj.spec.ignore
                )
        except StorageError as err:
            verb = "copy" if pulled.layer is not None else "archive"
            message = f"unable to {verb} artifact to storage: {err}"
            ctx.mark(STORAGE_FAILED, "True", ARCHIVE_FAILED, message)
            raise ReconcileError(message, reason=ARCHIVE_FAILED) from err
        ctx.clear(STORAGE_FAILED)
        if pulled.annotations:
            artifact = artifact.model_copy(update={"metadata": pulled.annotations})
        previous = obj.status.artifact
        obj.status.artifact = artifact
        obj.status.url = artifact.url
        obj.status.observed_ignore = obj.spec.ignore
        obj.status.observed_layer_selector = obj.spec.layer_selector
        ctx.mark(ARTIFACT_IN_STORAGE, "True", SUCCEEDED, stored)
        ctx.clear(ARTIFACT_OUTDATED)
        if previous is None or previous.digest != artifact.digest:
            ctx.notify(NEW_ARTIFACT, _new_artifact_message(obj), revision=pulled.revision)
        return Result(message=stored)

    # -- the source step's parts --------------------------------------------------------------

    def _check_supported(self, ctx: RunContext, obj: OCIRepository) -> None:
        """Refuse, until the spec changes, what weir does not implement yet."""
        spec = obj.spec
        # As in Flux, a Secret's credentials win over the provider's.
        if spec.provider != "generic" and spec.secret_ref is None:
            message = (
                f"failed to get credential from {spec.provider}: cloud provider authentication "
                "is not supported yet; use provider 'generic' with spec.secretRef"
            )
            ctx.mark(FETCH_FAILED, "True", AUTH_FAILED, message)
            raise Stalling(message, reason=AUTH_FAILED)
        if spec.verify is None:
            ctx.clear(SOURCE_VERIFIED)
            return
        # Pulling content that was asked to be verified, unverified, would be worse.
        message = (
            f"failed to verify the signature using provider '{spec.verify.provider}': "
            "signature verification is not supported yet; remove spec.verify to pull unverified"
        )
        ctx.mark(SOURCE_VERIFIED, "False", VERIFICATION_ERROR, message)
        raise Stalling(message, reason=VERIFICATION_ERROR)

    async def _client(
        self, ctx: RunContext, obj: OCIRepository, repository: oci.Repository
    ) -> oci.RegistryClient:
        spec, namespace = obj.spec, obj.metadata.namespace or ""
        try:
            credentials = await _credentials(ctx.client, namespace, obj, repository.host)
        except SecretError as err:
            message = f"failed to get credential: {err}"
            ctx.mark(FETCH_FAILED, "True", AUTH_FAILED, message)
            raise ReconcileError(message, reason=AUTH_FAILED) from None
        except oci.OCIError as err:
            message = f"failed to get credential: {err.message}"
            ctx.mark(FETCH_FAILED, "True", AUTH_FAILED, message)
            raise ReconcileError(message, reason=AUTH_FAILED) from None
        try:
            tls = None
            if spec.cert_secret_ref is not None:
                data = await read_secret(ctx.client, namespace, spec.cert_secret_ref.name)
                tls = await asyncio.to_thread(oci.tls_context, data, data.ref)
            proxy = None
            if spec.proxy_secret_ref is not None:
                data = await read_secret(ctx.client, namespace, spec.proxy_secret_ref.name)
                proxy = proxy_url(data, data.ref)
        except (SecretError, oci.OCIError) as err:
            message = f"failed to generate transport for '{spec.url}': {err}"
            ctx.mark(FETCH_FAILED, "True", AUTH_FAILED, message)
            raise ReconcileError(message, reason=AUTH_FAILED) from None
        return oci.RegistryClient(
            repository,
            credentials,
            tls=tls,
            proxy=proxy,
            timeout=parse_duration(spec.timeout),
        )

    async def _target(
        self, ctx: RunContext, obj: OCIRepository, client: oci.RegistryClient
    ) -> oci.Target:
        try:
            tags = await client.tags() if oci.needs_tags(obj.spec.ref) else None
            return oci.resolve_ref(obj.spec.ref, tags)
        except oci.OCIError as err:
            message = f"failed to determine the artifact tag for '{obj.spec.url}': {err.message}"
            raise _fetch_failed(ctx, err, READ_FAILED, message) from None

    async def _digest(
        self, ctx: RunContext, obj: OCIRepository, client: oci.RegistryClient, target: oci.Target
    ) -> str:
        if target.digest is not None:
            return target.digest
        assert target.tag is not None
        try:
            return await client.resolve_digest(target.tag)
        except oci.OCIError as err:
            message = f"failed to determine artifact digest: {err.message}"
            raise _fetch_failed(ctx, err, PULL_FAILED, message) from None

    async def _pull(
        self,
        ctx: RunContext,
        obj: OCIRepository,
        client: oci.RegistryClient,
        revision: str,
        digest: str,
    ) -> Pulled:
        """Fetch the manifest by digest (so that it is the revision's) and the chosen layer."""
        url = obj.spec.url
        try:
            manifest = await client.manifest(digest)
            if manifest.is_index:
                manifest = await client.manifest(oci.select_manifest(manifest).digest)
        except oci.OCIError as err:
            message = f"failed to pull artifact from '{url}': {err.message}"
            raise _fetch_failed(ctx, err, PULL_FAILED, message) from None
        selector = obj.spec.layer_selector
        try:
            layer = oci.select_layer(manifest, selector.media_type if selector else None)
        except oci.OCIError as err:
            raise _fetch_failed(ctx, err, LAYER_FAILED, err.message) from None
        blob = ctx.tempdir("weir-oci-") / "layer"
        self.stats["pulls"] += 1
        try:
            await client.fetch_blob(layer, blob, self.max_size)
        except oci.OCIError as err:
            message = f"failed to pull artifact from '{url}': {err.message}"
            raise _fetch_failed(ctx, err, PULL_FAILED, message) from None
        return Pulled(revision, digest, layer=blob, annotations=manifest.annotations)

    async def _extract(self, ctx: RunContext, layer: Path) -> Path:
        """Unpack the layer (a tar.gz) safely: no links, devices, absolute or ``..`` paths,
        and no more than ``max_size`` bytes of content."""
        content = ctx.tempdir("weir-oci-") / "content"
        try:
            await asyncio.to_thread(extract_tarball, layer, content, self.max_size)
        except ArtifactError as err:
            message = f"failed to extract layer contents from artifact: {err}"
            ctx.mark(FETCH_FAILED, "True", LAYER_FAILED, message)
            raise ReconcileError(message, reason=LAYER_FAILED) from None
        return content

    def _up_to_date(self, obj: OCIRepository, revision: str) -> bool:
        """Flux's check: same revision, and the same ignore rules and layer selector."""
        artifact = obj.status.artifact
        return (
            artifact is not None
            and artifact.revision == revision
            and obj.status.observed_ignore == obj.spec.ignore
            and obj.status.observed_layer_selector == obj.spec.layer_selector
        )


def _operation(obj: OCIRepository) -> str:
    selector = obj.spec.layer_selector
    return (selector.operation if selector else None) or "extract"


def _fetch_failed(ctx: RunContext, err: oci.OCIError, reason: str, message: str) -> ReconcileError:
    """Mark FetchFailed; authentication problems keep Flux's AuthenticationFailed reason."""
    if isinstance(err, oci.AuthenticationError):
        reason = AUTH_FAILED
    ctx.mark(FETCH_FAILED, "True", reason, message)
    return ReconcileError(message, reason=reason)


def _new_artifact_message(obj: OCIRepository) -> str:
    artifact = obj.status.artifact
    assert artifact is not None
    message = f"stored artifact with revision '{artifact.revision}' from '{obj.spec.url}'"
    metadata = artifact.metadata or {}
    if metadata.get(SOURCE_ANNOTATION) and metadata.get(REVISION_ANNOTATION):
        message += (
            f", origin source '{metadata[SOURCE_ANNOTATION]}', "
            f"origin revision '{metadata[REVISION_ANNOTATION]}'"
        )
    return message


async def _credentials(
    client: KubeClient, namespace: str, obj: OCIRepository, host: str
) -> oci.Credentials | None:
    """Credentials for ``host`` from spec.secretRef, then the image pull secrets of
    spec.serviceAccountName, in that order; None for anonymous access. An unusable Secret
    raises ``SecretError``, anything else ``oci.OCIError``."""
    names: list[str] = []
    if obj.spec.secret_ref is not None:
        names.append(obj.spec.secret_ref.name)
    if obj.spec.service_account_name:
        account = await client.get_or_none(
            SERVICE_ACCOUNT, namespace, obj.spec.service_account_name
        )
        if account is None:
            raise oci.AuthenticationError(
                f"service account '{namespace}/{obj.spec.service_account_name}' not found"
            )
        names += [ref["name"] for ref in account.get("imagePullSecrets") or [] if ref.get("name")]
    for name in names:
        data = await read_secret(client, namespace, name)
        credentials = oci.credentials_from_secret(data, host, data.ref)
        if credentials is not None:
            return credentials
    return None
