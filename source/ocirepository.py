"""The OCIRepository reconciler: OCI artifact in a registry → tar.gz artifact in storage.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), source (credentials and TLS, which tag or digest, skip when the manifest digest
is what the artifact already holds, else mark ``ArtifactOutdated`` and report progress, pull
the selected layer and unpack it safely), artifact (archive with ignore rules, or copy the
layer as it is; record it in status).

Revisions are Flux's: ``<tag>@sha256:<manifest digest>``, or ``sha256:<digest>`` for a digest
reference; the artifact file is ``<digest hex>.tar.gz``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controllers.api import Artifact, parse_duration
from controllers.artifact import DEFAULT_MAX_SIZE, ArtifactError, extract_tarball
from controllers.oci.client import RegistryClient
from controllers.oci.credentials import tls_context
from controllers.oci.errors import AuthenticationError, InvalidReference, OCIError
from controllers.oci.manifest import select_layer, select_manifest
from controllers.oci.reference import Repository, parse_repository
from controllers.reconcile import Reconciler, Result, RunContext, Stalling, Step
from controllers.secrets import SecretError, proxy_url, read_secret, registry_credentials
from source.api_v1 import OCIRepository
from source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    AUTH_FAILED,
    FETCH_FAILED,
    LAYER_FAILED,
    PULL_FAILED,
    READ_FAILED,
    SOURCE_VERIFIED,
    STORAGE_OPERATION_FAILED,
    URL_INVALID,
    VERIFICATION_ERROR,
    FetchError,
    fetching,
    mark_new_revision,
)
from source.oci.reference import PullRef, needs_tags, resolve_ref
from source.storage import ArtifactStorage
from source.storage_step import keep_artifact, reconcile_storage, record_artifact, store_artifact

__all__ = ["OCIRepositoryReconciler"]

KIND = "OCIRepository"

# Annotations `flux push artifact` sets, quoted in the NewArtifact event like Flux does.
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"


@dataclass
class OCIRunState:
    """What the source step hands to the artifact step."""

    revision: str = ""
    digest: str = ""
    content: Path | None = None  # the unpacked layer (extract)
    layer: Path | None = None  # the layer as downloaded (copy)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        return self.content is None and self.layer is None


class OCIRepositoryReconciler(Reconciler[OCIRepository, OCIRunState]):
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
        STORAGE_OPERATION_FAILED,
        SOURCE_VERIFIED,
    )

    def __init__(self, storage: ArtifactStorage, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.storage = storage
        self.max_size = max_size
        self.stats: Counter[str] = Counter()

    @property
    def steps(self) -> Sequence[Step[OCIRepository, OCIRunState]]:
        return [self.reconcile_storage, self.reconcile_source, self.reconcile_artifact]

    def new_state(self) -> OCIRunState:
        return OCIRunState()

    async def finalize(self, ctx: RunContext[OCIRunState], obj: OCIRepository) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, KIND, obj.metadata.namespace or "", obj.metadata.name
        )

    async def reconcile_storage(self, ctx: RunContext[OCIRunState], obj: OCIRepository) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_source(self, ctx: RunContext[OCIRunState], obj: OCIRepository) -> Result:
        """Resolve the reference to a manifest digest; pull and unpack the selected layer
        unless the artifact already holds that digest with the same content settings."""
        with fetching(ctx):
            await self._fetch(ctx, obj)
        return Result()

    async def _fetch(self, ctx: RunContext[OCIRunState], obj: OCIRepository) -> None:
        spec, pulled = obj.spec, ctx.state
        try:
            repository = parse_repository(spec.url, insecure=bool(spec.insecure))
        except InvalidReference as err:
            message = f"URL validation failed for '{spec.url}': {err.message}"
            raise FetchError(message, URL_INVALID, stalled=True) from None
        self._check_supported(ctx, obj)

        client = await self._client(ctx, obj, repository)
        timeout = parse_duration(spec.timeout)
        try:
            async with asyncio.timeout(timeout), client:
                target = await self._target(obj, client)
                pulled.digest = await self._digest(client, target)
                pulled.revision = target.revision(pulled.digest)
                if self._up_to_date(obj, pulled.revision):
                    self.stats["skipped"] += 1
                    ctx.log.info(
                        "artifact up-to-date with remote revision", revision=pulled.revision
                    )
                    return
                reference = target.reference(repository)
                message = f"new revision '{pulled.revision}' for '{reference}'"
                await mark_new_revision(ctx, obj, message)
                await self._pull(ctx, obj, client, pulled)
        except TimeoutError:
            message = f"failed to pull artifact from '{spec.url}': timed out after {spec.timeout}"
            raise FetchError(message, PULL_FAILED) from None

        if pulled.layer is not None and _operation(obj) == "extract":
            pulled.content = await self._extract(ctx, pulled.layer)
            pulled.layer = None

    async def reconcile_artifact(self, ctx: RunContext[OCIRunState], obj: OCIRepository) -> Result:
        """Archive the unpacked layer (or copy the layer) into storage; record it in status."""
        pulled = ctx.state
        stored = f"stored artifact for digest '{pulled.revision}'"
        if pulled.unchanged:
            return keep_artifact(ctx, obj, stored=stored)
        namespace, name = obj.metadata.namespace or "", obj.metadata.name
        filename = f"{pulled.digest.split(':', 1)[1]}.tar.gz"
        new = self.storage.new_artifact(KIND, namespace, name, pulled.revision, filename)
        layer, content = pulled.layer, pulled.content
        if layer is not None:
            artifact = await store_artifact(
                ctx, lambda: self.storage.copy_file(new, layer), verb="copy"
            )
        else:
            assert content is not None
            artifact = await store_artifact(
                ctx, lambda: self.storage.archive(new, content, ignore=obj.spec.ignore)
            )
        if pulled.annotations:
            artifact = artifact.model_copy(update={"metadata": pulled.annotations})
        obj.status.observed_ignore = obj.spec.ignore
        obj.status.observed_layer_selector = obj.spec.layer_selector
        event = _new_artifact_message(obj, artifact)
        return record_artifact(ctx, obj, artifact, stored=stored, event=event)

    # -- the source step's parts --------------------------------------------------------------

    def _check_supported(self, ctx: RunContext[OCIRunState], obj: OCIRepository) -> None:
        """Refuse, until the spec changes, what weir does not implement yet."""
        spec = obj.spec
        # As in Flux, a Secret's credentials win over the provider's.
        if spec.provider != "generic" and spec.secret_ref is None:
            message = (
                f"failed to get credential from {spec.provider}: cloud provider authentication "
                "is not supported yet; use provider 'generic' with spec.secretRef"
            )
            raise FetchError(message, AUTH_FAILED, stalled=True)
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
        self, ctx: RunContext[OCIRunState], obj: OCIRepository, repository: Repository
    ) -> RegistryClient:
        spec, namespace = obj.spec, obj.metadata.namespace or ""
        try:
            credentials = await registry_credentials(
                ctx.client,
                namespace,
                repository.host,
                secret_name=obj.spec.secret_ref.name if obj.spec.secret_ref else None,
                service_account_name=obj.spec.service_account_name,
            )
        except SecretError as err:
            message = f"failed to get credential: {err}"
            raise FetchError(message, AUTH_FAILED) from None
        except OCIError as err:
            message = f"failed to get credential: {err.message}"
            raise FetchError(message, AUTH_FAILED) from None
        try:
            tls = None
            if spec.cert_secret_ref is not None:
                data = await read_secret(ctx.client, namespace, spec.cert_secret_ref.name)
                tls = await asyncio.to_thread(tls_context, data, data.ref)
            proxy = None
            if spec.proxy_secret_ref is not None:
                data = await read_secret(ctx.client, namespace, spec.proxy_secret_ref.name)
                proxy = proxy_url(data, data.ref)
        except (SecretError, OCIError) as err:
            message = f"failed to generate transport for '{spec.url}': {err}"
            raise FetchError(message, AUTH_FAILED) from None
        return RegistryClient(
            repository,
            credentials,
            tls=tls,
            proxy=proxy,
            timeout=parse_duration(spec.timeout),
        )

    async def _target(self, obj: OCIRepository, client: RegistryClient) -> PullRef:
        try:
            tags = await client.tags() if needs_tags(obj.spec.ref) else None
            return resolve_ref(obj.spec.ref, tags)
        except OCIError as err:
            message = f"failed to determine the artifact tag for '{obj.spec.url}': {err.message}"
            raise _fetch_error(err, READ_FAILED, message) from None

    async def _digest(self, client: RegistryClient, target: PullRef) -> str:
        if target.digest is not None:
            return target.digest
        assert target.tag is not None
        try:
            return await client.resolve_digest(target.tag)
        except OCIError as err:
            message = f"failed to determine artifact digest: {err.message}"
            raise _fetch_error(err, PULL_FAILED, message) from None

    async def _pull(
        self,
        ctx: RunContext[OCIRunState],
        obj: OCIRepository,
        client: RegistryClient,
        pulled: OCIRunState,
    ) -> None:
        """Fetch the manifest by digest (so that it is the revision's) and the chosen layer
        into ``pulled``."""
        url = obj.spec.url
        try:
            manifest = await client.manifest(pulled.digest)
            if manifest.is_index:
                manifest = await client.manifest(select_manifest(manifest).digest)
        except OCIError as err:
            message = f"failed to pull artifact from '{url}': {err.message}"
            raise _fetch_error(err, PULL_FAILED, message) from None
        selector = obj.spec.layer_selector
        try:
            layer = select_layer(manifest, selector.media_type if selector else None)
        except OCIError as err:
            raise _fetch_error(err, LAYER_FAILED, err.message) from None
        blob = ctx.tempdir("weir-oci-") / "layer"
        self.stats["pulls"] += 1
        try:
            await client.fetch_blob(layer, blob, self.max_size)
        except OCIError as err:
            message = f"failed to pull artifact from '{url}': {err.message}"
            raise _fetch_error(err, PULL_FAILED, message) from None
        pulled.layer, pulled.annotations = blob, manifest.annotations

    async def _extract(self, ctx: RunContext[OCIRunState], layer: Path) -> Path:
        """Unpack the layer (a tar.gz) safely: no links, devices, absolute or ``..`` paths,
        and no more than ``max_size`` bytes of content."""
        content = ctx.tempdir("weir-oci-") / "content"
        try:
            await asyncio.to_thread(extract_tarball, layer, content, self.max_size)
        except ArtifactError as err:
            message = f"failed to extract layer contents from artifact: {err}"
            raise FetchError(message, LAYER_FAILED) from None
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


def _fetch_error(err: OCIError, reason: str, message: str) -> FetchError:
    """The fetch failed with ``reason``; authentication problems keep Flux's
    AuthenticationFailed."""
    return FetchError(message, AUTH_FAILED if isinstance(err, AuthenticationError) else reason)


def _new_artifact_message(obj: OCIRepository, artifact: Artifact) -> str:
    message = f"stored artifact with revision '{artifact.revision}' from '{obj.spec.url}'"
    metadata = artifact.metadata or {}
    if metadata.get(SOURCE_ANNOTATION) and metadata.get(REVISION_ANNOTATION):
        message += (
            f", origin source '{metadata[SOURCE_ANNOTATION]}', "
            f"origin revision '{metadata[REVISION_ANNOTATION]}'"
        )
    return message
