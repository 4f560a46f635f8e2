"""The HelmRepository reconciler: a Helm repository's ``index.yaml`` → an index artifact.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), source (credentials, fetch ``<url>/index.yaml``, skip when the revision did not
move, else load and check the index and mark ``ArtifactOutdated``), artifact (store it, record
it in status).

The revision is Flux's: ``sha256:`` and the digest of the index bytes as fetched. The artifact
``index-<hex>.yaml`` is the index as Flux keeps it (:mod:`source.helmindex`), written as JSON,
so its digest is not the revision. One fetch reads at most 50 MiB.

Credentials: ``secretRef`` gives ``username``/``password`` for basic auth, sent to the
repository's own origin only (a redirect elsewhere drops them); ``certSecretRef`` the CA and
client certificate (:func:`controllers.tls.context_from_secret`), or, where it is unset, the
TLS keys of ``secretRef``, which Flux still reads but deprecates.

A HelmRepository of ``type: oci`` is static, as in Flux since v1: the model says so
(``HelmRepository.static``) and the runtime gives it no finalizer, no status and no run; the
HelmCharts that use it read its URL and Secret themselves.
"""

from __future__ import annotations

import asyncio
import posixpath
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controllers.download import BodyTooLarge, save_body
from controllers.reconcile import Reconciler, Result, RunContext, Step
from controllers.secrets import SecretError, SecretNotFound, read_secret
from controllers.tls import TLSConfigError, context_from_secret, system_context
from source.api_v1 import HelmRepository
from source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    AUTH_FAILED,
    FETCH_FAILED,
    STORAGE_OPERATION_FAILED,
    URL_INVALID,
    FetchError,
    fetching,
    mark_new_revision,
)
from source.helmindex import MAX_INDEX_SIZE, InvalidIndex, index_json, load_index
from source.storage import ArtifactStorage
from source.storage_step import keep_artifact, reconcile_storage, record_artifact, store_artifact

__all__ = [
    "Connection",
    "HelmRepositoryReconciler",
    "HelmRunState",
    "index_url",
    "repository_connection",
    "shown_url",
]

KIND = "HelmRepository"
# Flux's reasons for this kind.
FAILED = "Failed"
INDEXATION_FAILED = "IndexationFailed"
# Go's http.Client stops after ten redirects.
_MAX_REDIRECTS = 10
_TLS_KEYS = ("ca.crt", "caFile", "tls.crt", "certFile", "tls.key", "keyFile")


def index_url(url: str) -> httpx.URL:
    """Where the index of the repository at ``url`` is: ``index.yaml`` joined to its path
    (cleaned as Go's ``path.Join`` does), query kept. Raises ``httpx.InvalidURL``."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise httpx.InvalidURL("the URL needs an http or https scheme and a host")
    return parsed.copy_with(path=posixpath.normpath(posixpath.join(parsed.path, "index.yaml")))


def shown_url(url: httpx.URL) -> str:
    """``url`` without user information, for messages and events."""
    return str(url.copy_with(username=None, password=None))


@dataclass
class HelmRunState:
    """What the source step hands to the artifact step."""

    revision: str = ""
    url: str = ""
    index: Path | None = None  # the index to store; None: the artifact already has it


@dataclass(frozen=True)
class Connection:
    """How to reach the repository, from the spec and its Secrets."""

    auth: httpx.BasicAuth | None
    tls: ssl.SSLContext | None


class HelmRepositoryReconciler(Reconciler[HelmRepository, HelmRunState]):
    """Reconciles HelmRepository objects into index artifacts in ``storage``.

    ``stats`` counts ``fetches`` and ``unchanged`` (fetches whose revision the artifact has).
    """

    model = HelmRepository
    owned_conditions: tuple[str, ...] = (
        ARTIFACT_IN_STORAGE,
        ARTIFACT_OUTDATED,
        FETCH_FAILED,
        STORAGE_OPERATION_FAILED,
    )

    def __init__(
        self,
        storage: ArtifactStorage,
        *,
        max_index_size: int = MAX_INDEX_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_index_size < 1:
            raise ValueError("max_index_size must be positive")
        self.storage = storage
        self.max_index_size = max_index_size
        self.transport = transport
        self.stats: Counter[str] = Counter()

    @property
    def steps(self) -> Sequence[Step[HelmRepository, HelmRunState]]:
        return [self.reconcile_storage, self.reconcile_source, self.reconcile_artifact]

    def new_state(self) -> HelmRunState:
        return HelmRunState()

    async def finalize(self, ctx: RunContext[HelmRunState], obj: HelmRepository) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, KIND, obj.metadata.namespace or "", obj.metadata.name
        )

    async def reconcile_storage(self, ctx: RunContext[HelmRunState], obj: HelmRepository) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_source(self, ctx: RunContext[HelmRunState], obj: HelmRepository) -> Result:
        """Fetch the index; load and check it unless the artifact has its revision."""
        with fetching(ctx):
            await self._fetch(ctx, obj)
        return Result()

    async def _fetch(self, ctx: RunContext[HelmRunState], obj: HelmRepository) -> None:
        if obj.spec.url.startswith("oci://"):
            raise FetchError(
                "invalid Helm repository URL: 'oci' URL scheme cannot be used with 'default' "
                "HelmRepository type",
                URL_INVALID,
                stalled=True,
            )
        try:
            url = index_url(obj.spec.url)
        except httpx.InvalidURL as err:
            raise FetchError(
                f"invalid Helm repository URL: {err}", URL_INVALID, stalled=True
            ) from None
        connection = await repository_connection(ctx, obj)
        workdir = ctx.tempdir("weir-helmrepo-")
        fetched = workdir / "index.yaml"
        shown = shown_url(url)
        self.stats["fetches"] += 1
        digest = await self._download(url, connection, fetched, obj.timeout_seconds)
        revision = f"sha256:{digest}"
        ctx.state.revision, ctx.state.url = revision, shown_url(httpx.URL(obj.spec.url))
        ctx.attempted_revision = revision
        artifact = obj.status.artifact
        if artifact is not None and artifact.revision == revision:
            self.stats["unchanged"] += 1
            return
        try:
            index = await asyncio.to_thread(_load_file, fetched)
        except InvalidIndex as err:
            raise FetchError(
                f"failed to load Helm repository from index YAML: {err}", INDEXATION_FAILED
            ) from None
        stored = workdir / "index.json"
        await asyncio.to_thread(stored.write_bytes, index_json(index))
        ctx.state.index = stored
        ctx.log.info("index fetched", url=shown, revision=revision)
        await mark_new_revision(ctx, obj, f"new index revision '{revision}'")

    async def _download(
        self, url: httpx.URL, connection: Connection, dest: Path, timeout: float
    ) -> str:
        """Save the body at ``url`` to ``dest``; its sha256 hex digest."""
        shown = shown_url(url)
        client = httpx.AsyncClient(
            verify=connection.tls if connection.tls is not None else system_context(),
            auth=connection.auth,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            transport=self.transport,
            # The URL and the Secrets say everything: no ~/.netrc, no environment proxy.
            trust_env=False,
            # The revision is the digest of the index as served: no content coding.
            headers={"Accept-Encoding": "identity"},
        )
        try:
            async with (
                client,
                asyncio.timeout(timeout),
                client.stream("GET", url) as response,
            ):
                if response.status_code != httpx.codes.OK:
                    phrase = f"{response.status_code} {response.reason_phrase}".strip()
                    raise FetchError(
                        f"failed to fetch Helm repository index: {shown} answered {phrase}",
                        FAILED,
                    )
                saved = await save_body(
                    response, dest, algorithm="sha256", max_size=self.max_index_size
                )
        except BodyTooLarge:
            raise FetchError(
                "failed to fetch Helm repository index: index exceeds the maximum index file "
                f"size of {self.max_index_size} bytes",
                FAILED,
            ) from None
        except TimeoutError:
            raise FetchError(
                f"failed to fetch Helm repository index: {shown}: timed out after {timeout:g}s",
                FAILED,
            ) from None
        except (httpx.HTTPError, ssl.SSLError, OSError) as err:
            raise FetchError(
                f"failed to fetch Helm repository index: {shown}: {_describe(err)}", FAILED
            ) from None
        return saved.digest

    async def reconcile_artifact(
        self, ctx: RunContext[HelmRunState], obj: HelmRepository
    ) -> Result:
        """Store the loaded index and record the artifact in status."""
        state = ctx.state
        stored = f"stored artifact: revision '{state.revision}'"
        if state.index is None:
            return keep_artifact(ctx, obj, stored=stored)
        index = state.index
        hex_digest = state.revision.split(":", 1)[1]
        new = self.storage.new_artifact(
            KIND,
            obj.metadata.namespace or "",
            obj.metadata.name,
            state.revision,
            f"index-{hex_digest}.yaml",
        )
        artifact = await store_artifact(
            ctx, lambda: self.storage.copy_file(new, index), verb="save"
        )
        event = f"stored fetched index of {_size(artifact.size)} from '{state.url}'"
        return record_artifact(ctx, obj, artifact, stored=stored, event=event)


async def repository_connection(ctx: RunContext[Any], obj: HelmRepository) -> Connection:
    """Basic auth and TLS from the Secrets the spec of ``obj`` names, as Flux's
    GetClientOpts; a :class:`FetchError` (``AuthenticationFailed``) when they are unusable.
    The HelmCharts of a repository reach it with the same."""
    spec, namespace = obj.spec, obj.metadata.namespace or ""
    auth: httpx.BasicAuth | None = None
    tls: ssl.SSLContext | None = None
    client = ctx.client
    current = ""
    try:
        if spec.cert_secret_ref is not None:
            current = f"TLS authentication secret '{namespace}/{spec.cert_secret_ref.name}'"
            data = await read_secret(client, namespace, spec.cert_secret_ref.name)
            tls = await asyncio.to_thread(context_from_secret, data, data.ref, required=True)
        if spec.secret_ref is not None:
            current = f"authentication secret '{namespace}/{spec.secret_ref.name}'"
            data = await read_secret(client, namespace, spec.secret_ref.name)
            username, password = data.get("username"), data.get("password")
            if bool(username) != bool(password):
                raise data.error(
                    "password" if username else "username",
                    "basic auth needs both 'username' and 'password'",
                )
            if username and password:
                auth = httpx.BasicAuth(username, password)
            if tls is None and any(key in data for key in _TLS_KEYS):
                ctx.log.warning(
                    "deprecated TLS configuration",
                    hint="TLS keys in spec.secretRef are deprecated; use spec.certSecretRef",
                )
                tls = await asyncio.to_thread(context_from_secret, data, data.ref)
    except SecretNotFound:
        # Flux's wording.
        raise FetchError(f"failed to get {current}: not found", AUTH_FAILED) from None
    except (SecretError, TLSConfigError) as err:
        raise FetchError(str(err), AUTH_FAILED) from None
    return Connection(auth, tls)


def _load_file(path: Path) -> dict[str, object]:
    return load_index(path.read_bytes())


def _describe(err: BaseException) -> str:
    """A network error in one line; httpx's own messages name neither header nor body."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _size(size: int | None) -> str:
    """Flux's ``size 30.88kB`` (go-units' HumanSize: decimal units, 4 significant digits)."""
    if size is None:
        return "unknown size"
    value, units = float(size), ["B", "kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value /= 1000
        units.pop(0)
    return f"size {value:.4g}{units[0]}"
