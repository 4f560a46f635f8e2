"""The Bucket reconciler: objects of an S3 compatible bucket → tar.gz artifact in storage.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), source (credentials, list the objects, apply the ignore rules, skip when the
revision did not move, else mark ``ArtifactOutdated``, report progress and download), artifact
(archive, record it in status).

The revision is Flux's: ``sha256:<hex>`` over the sorted ``<key> <etag>\\n`` lines of the
objects that are fetched (``internal/index.Digester``). Keys ending in ``/`` and the bucket's
root ``.sourceignore`` are not objects to fetch; the patterns of that ``.sourceignore``, then
``spec.ignore``, leave out the keys they match. Unlike a Git artifact, no built-in exclusion
applies, and the root ``.sourceignore`` itself is part of the artifact, as in Flux.

Keys that are not safe relative paths (absolute, ``..``, ``.`` or empty components) are
refused before anything is downloaded, and one fetch downloads at most
``max_download_size`` bytes.

Only the ``generic`` provider (and ``aws`` with static credentials) is implemented: both are
S3 with AWS Signature Version 4 (:mod:`source.s3`). ``certSecretRef`` gives the CA and the
client certificate, as for Git and OCI (:func:`controllers.tls.context_from_secret`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from controllers.api import parse_duration
from controllers.kube import KubeClient
from controllers.reconcile import Reconciler, Result, RunContext, Step
from controllers.secrets import SecretError, SecretNotFound, proxy_url, read_secret
from controllers.tls import TLSConfigError, context_from_secret
from source.api_v1 import Bucket
from source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    AUTH_FAILED,
    BUCKET_OPERATION_FAILED,
    FETCH_FAILED,
    STORAGE_OPERATION_FAILED,
    UNSUPPORTED,
    URL_INVALID,
    FetchError,
    fetching,
    mark_new_revision,
)
from source.ignore import IGNORE_FILE, IgnoreRules, InvalidIgnoreFile
from source.s3 import S3Client, S3Error, S3Object
from source.storage import ArtifactStorage
from source.storage_step import keep_artifact, reconcile_storage, record_artifact, store_artifact

__all__ = ["BucketReconciler", "InvalidObjectKey", "check_object_key", "index_revision"]

KIND = "Bucket"

# Everything one fetch downloads; the storage has its own cap on what one archive holds.
DEFAULT_MAX_DOWNLOAD_SIZE = 2**30
DEFAULT_CONCURRENT_DOWNLOADS = 8
_MAX_IGNORE_FILE_SIZE = 1024 * 1024


class InvalidObjectKey(ValueError):
    """An object key that cannot be a relative path inside the artifact."""


def check_object_key(key: str) -> None:
    """Raise :class:`InvalidObjectKey` unless ``key`` names a file strictly inside the
    directory it is downloaded to: no absolute path, no ``.``, ``..`` or empty component,
    no NUL byte."""
    if not key:
        raise InvalidObjectKey("the key is empty")
    if "\x00" in key:
        raise InvalidObjectKey("the key contains a NUL byte")
    if key.startswith("/"):
        raise InvalidObjectKey("the key is an absolute path")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidObjectKey(
                "the key has an empty, '.' or '..' path component and would not be written "
                "inside the artifact"
            )


def index_revision(index: Mapping[str, str]) -> str:
    """Flux's Bucket revision: ``sha256:`` and the hex digest of ``<key> <etag>\\n`` for every
    key in byte order (Go's ``sort.Strings``; code point order is the same for UTF-8)."""
    digest = hashlib.sha256()
    for key in sorted(index):
        digest.update(f"{key} {index[key]}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def build_index(
    objects: Sequence[S3Object], sourceignore: str | None, spec_ignore: str | None
) -> dict[str, S3Object]:
    """The objects to fetch, by key, as Flux's ``fetchEtagIndex`` selects them. Raises
    :class:`InvalidIgnoreFile` for a bad pattern."""
    rules = IgnoreRules()
    if sourceignore is not None:
        rules.add(sourceignore)
    if spec_ignore is not None:
        rules.add(spec_ignore)
    return {
        item.key: item
        for item in objects
        if not item.key.endswith("/")
        and item.key != IGNORE_FILE
        and not rules.excludes(item.key, is_dir=False)
    }


@dataclass
class BucketRunState:
    """What the source step hands to the artifact step."""

    revision: str = ""
    files: int = 0
    workdir: Path | None = None  # None: unchanged, nothing downloaded


@dataclass(frozen=True)
class _Connection:
    """How to reach the bucket, from the spec and its Secrets."""

    access_key: str | None
    secret_key: str | None
    tls: ssl.SSLContext | None
    proxy: str | None


class BucketReconciler(Reconciler[Bucket, BucketRunState]):
    """Reconciles Bucket objects into artifacts in ``storage``.

    ``stats`` counts ``listings``, ``downloads`` (objects fetched) and ``skipped`` (runs that
    found the revision unchanged and downloaded nothing).
    """

    model = Bucket
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
        max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE,
        concurrent_downloads: int = DEFAULT_CONCURRENT_DOWNLOADS,
    ) -> None:
        if max_download_size < 1 or concurrent_downloads < 1:
            raise ValueError("max_download_size and concurrent_downloads must be positive")
        self.storage = storage
        self.max_download_size = max_download_size
        self.concurrent_downloads = concurrent_downloads
        self.stats: Counter[str] = Counter()

    @property
    def steps(self) -> Sequence[Step[Bucket, BucketRunState]]:
        return [self.reconcile_storage, self.reconcile_source, self.reconcile_artifact]

    def new_state(self) -> BucketRunState:
        return BucketRunState()

    async def finalize(self, ctx: RunContext[BucketRunState], obj: Bucket) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, KIND, obj.metadata.namespace or "", obj.metadata.name
        )

    async def reconcile_storage(self, ctx: RunContext[BucketRunState], obj: Bucket) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_source(self, ctx: RunContext[BucketRunState], obj: Bucket) -> Result:
        """List the bucket; download its objects unless the artifact has that revision."""
        with fetching(ctx):
            await self._fetch(ctx, obj)
        return Result()

    async def _fetch(self, ctx: RunContext[BucketRunState], obj: Bucket) -> None:
        spec, fetched = obj.spec, ctx.state
        bucket = spec.bucket_name
        _check_supported(obj)
        connection = await self._connection(ctx.client, obj)
        timeout = parse_duration(spec.timeout)
        try:
            client = S3Client(
                spec.endpoint,
                secure=not spec.insecure,
                region=spec.region,
                access_key=connection.access_key,
                secret_key=connection.secret_key,
                tls=connection.tls,
                proxy=connection.proxy,
                timeout=timeout,
            )
        except ValueError as err:
            raise FetchError(str(err), URL_INVALID, stalled=True) from None
        async with client:
            try:
                async with asyncio.timeout(timeout):
                    self.stats["listings"] += 1
                    listed = await client.list_objects(bucket, spec.prefix or "")
                    sourceignore = await _read_sourceignore(client, bucket)
            except TimeoutError:
                message = (
                    f"indexation of objects from bucket '{bucket}' timed out after {spec.timeout}"
                )
                raise FetchError(message, BUCKET_OPERATION_FAILED) from None
            except S3Error as err:
                raise _listing_error(err, obj) from None
            try:
                text = sourceignore.decode("utf-8", errors="replace") if sourceignore else None
                index = build_index(listed, text, spec.ignore)
            except InvalidIgnoreFile as err:
                raise FetchError(str(err), BUCKET_OPERATION_FAILED) from None
            for key in index:
                try:
                    check_object_key(key)
                except InvalidObjectKey as err:
                    message = f"refusing object '{key}' of bucket '{bucket}': {err}"
                    raise FetchError(message, BUCKET_OPERATION_FAILED) from None

            revision = index_revision({key: item.etag for key, item in index.items()})
            artifact = obj.status.artifact
            if artifact is not None and artifact.revision == revision:
                self.stats["skipped"] += 1
                fetched.revision, fetched.files = revision, len(index)
                return
            await mark_new_revision(ctx, obj, f"new upstream revision '{revision}'")
            workdir = ctx.tempdir("weir-bucket-")
            if sourceignore is not None:
                # Part of the artifact, as in Flux, which downloads it into the same directory.
                (workdir / IGNORE_FILE).write_bytes(sourceignore)
            etags = await self._download(client, obj, index, workdir, timeout)
        fetched.revision, fetched.files = index_revision(etags), len(etags)
        fetched.workdir = workdir

    async def _download(
        self,
        client: S3Client,
        obj: Bucket,
        index: dict[str, S3Object],
        workdir: Path,
        timeout: float,
    ) -> dict[str, str]:
        """Download every indexed object under ``workdir``; the keys and ETags downloaded
        (an object changed since the listing has its new ETag, a deleted one is left out)."""
        bucket = obj.spec.bucket_name
        listed_size = sum(item.size for item in index.values())
        if listed_size > self.max_download_size:
            raise FetchError(
                f"the objects to fetch from bucket '{bucket}' hold {listed_size} bytes, more "
                f"than the limit of {self.max_download_size}; narrow them down with "
                "spec.prefix, spec.ignore or a .sourceignore",
                BUCKET_OPERATION_FAILED,
            )
        budget = _Budget(self.max_download_size)
        etags: dict[str, str] = {}
        pending = sorted(index)

        async def worker() -> None:
            while pending:
                key = pending.pop()
                etag = await self._download_one(client, bucket, key, workdir, budget)
                self.stats["downloads"] += 1
                if etag is not None:
                    etags[key] = etag

        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrent_downloads, len(pending))):
                    group.create_task(worker())
        except TimeoutError:
            message = f"fetch from bucket '{bucket}' timed out after {obj.spec.timeout}"
            raise FetchError(message, BUCKET_OPERATION_FAILED) from None
        except ExceptionGroup as failures:
            raise _first_failure(failures, bucket) from None
        return etags

    async def _download_one(
        self, client: S3Client, bucket: str, key: str, workdir: Path, budget: _Budget
    ) -> str | None:
        try:
            file = _create_file(workdir, key)
        except OSError as err:
            raise FetchError(
                f"cannot write object '{key}' of bucket '{bucket}': {err.strerror or err}",
                BUCKET_OPERATION_FAILED,
            ) from None

        def write(chunk: bytes) -> None:
            budget.take(len(chunk))
            file.write(chunk)

        with file:
            etag = await client.get_object(bucket, key, write, max_size=budget.limit)
        if etag is None:
            # Deleted since the listing: Flux drops it from the index.
            os.unlink(workdir / key)
        return etag

    async def _connection(self, client: KubeClient, obj: Bucket) -> _Connection:
        """Credentials, TLS (the CA and client certificate of ``certSecretRef``) and proxy;
        an unusable Secret fails authentication."""
        spec = obj.spec
        namespace = obj.metadata.namespace or ""
        access_key = secret_key = tls = proxy = None
        try:
            if spec.secret_ref is not None:
                data = await read_secret(client, namespace, spec.secret_ref.name)
                if "accesskey" not in data or "secretkey" not in data:
                    raise FetchError(
                        f"invalid '{spec.secret_ref.name}' secret data: required fields "
                        "'accesskey' and 'secretkey'",
                        AUTH_FAILED,
                    )
                access_key, secret_key = data["accesskey"], data["secretkey"]
            if spec.cert_secret_ref is not None:
                data = await read_secret(client, namespace, spec.cert_secret_ref.name)
                tls = await asyncio.to_thread(context_from_secret, data, data.ref, required=True)
            if spec.proxy_secret_ref is not None:
                data = await read_secret(client, namespace, spec.proxy_secret_ref.name)
                proxy = proxy_url(data, data.ref)
        except SecretNotFound as err:
            # Flux's wording.
            raise FetchError(
                f"failed to get secret '{err.secret}': not found", AUTH_FAILED
            ) from None
        except (SecretError, TLSConfigError) as err:
            raise FetchError(str(err), AUTH_FAILED) from None
        return _Connection(access_key, secret_key, tls, proxy)

    async def reconcile_artifact(self, ctx: RunContext[BucketRunState], obj: Bucket) -> Result:
        """Archive the downloaded objects into storage and record the artifact in status."""
        fetched = ctx.state
        stored = f"stored artifact: revision '{fetched.revision}'"
        workdir = fetched.workdir
        if workdir is None:
            return keep_artifact(ctx, obj, stored=stored)
        namespace, name = obj.metadata.namespace or "", obj.metadata.name
        hex_digest = fetched.revision.split(":", 1)[1]
        new = self.storage.new_artifact(
            KIND, namespace, name, fetched.revision, f"{hex_digest}.tar.gz"
        )
        # The keys were filtered before download; the archive takes every file as is.
        artifact = await store_artifact(
            ctx, lambda: self.storage.archive(new, workdir, filter_files=False)
        )
        obj.status.observed_ignore = obj.spec.ignore
        event = (
            f"stored artifact with {fetched.files} fetched files from "
            f"'{obj.spec.bucket_name}' bucket"
        )
        return record_artifact(ctx, obj, artifact, stored=stored, event=event)


class _Budget:
    """Bytes one fetch may still download, shared by its concurrent downloads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise S3Error(f"the objects add up to more than the limit of {self.limit} bytes")


def _create_file(root: Path, key: str) -> BinaryIO:
    """A new file for ``key`` (already checked with :func:`check_object_key`) under ``root``,
    creating its directories. Nothing that exists is followed or overwritten."""
    *directories, filename = key.split("/")
    parent = root
    for name in directories:
        parent = parent / name
        try:
            parent.mkdir(mode=0o700)
        except FileExistsError:
            if parent.is_symlink() or not parent.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(parent)) from None
    fd = os.open(
        parent / filename,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    return os.fdopen(fd, "wb")


async def _read_sourceignore(client: S3Client, bucket: str) -> bytes | None:
    """The bucket's root ``.sourceignore``, or None when it has none."""
    data = bytearray()
    etag = await client.get_object(bucket, IGNORE_FILE, data.extend, max_size=_MAX_IGNORE_FILE_SIZE)
    return None if etag is None else bytes(data)


def _check_supported(obj: Bucket) -> None:
    spec = obj.spec
    if spec.provider in ("gcp", "azure"):
        raise FetchError(
            f"the '{spec.provider}' provider is not supported yet; use 'generic' with an S3 "
            "compatible endpoint",
            UNSUPPORTED,
            stalled=True,
        )
    if spec.provider == "aws" and spec.secret_ref is None:
        raise FetchError(
            "the 'aws' provider without secretRef authenticates with workload identity, which "
            "is not supported yet; set secretRef to a Secret with 'accesskey' and 'secretkey'",
            UNSUPPORTED,
            stalled=True,
        )
    if spec.sts is not None:
        raise FetchError("spec.sts is not supported yet", UNSUPPORTED, stalled=True)


def _listing_error(err: S3Error, obj: Bucket) -> FetchError:
    bucket, endpoint = obj.spec.bucket_name, obj.spec.endpoint
    if err.code == "NoSuchBucket":
        return FetchError(
            f"bucket '{bucket}' not found at endpoint '{endpoint}'", BUCKET_OPERATION_FAILED
        )
    if err.is_auth_error:
        hint = (
            "check 'accesskey' and 'secretkey' in secret "
            f"'{obj.metadata.namespace}/{obj.spec.secret_ref.name}'"
            if obj.spec.secret_ref is not None
            else "the bucket is not public: set spec.secretRef"
        )
        return FetchError(
            f"access to bucket '{bucket}' at '{endpoint}' denied: {err.message}; {hint}",
            AUTH_FAILED,
        )
    return FetchError(
        f"indexation of objects from bucket '{bucket}' at '{endpoint}' failed: {err.message}",
        BUCKET_OPERATION_FAILED,
    )


def _first_failure(failures: ExceptionGroup[Exception], bucket: str) -> Exception:
    first = failures.exceptions[0]
    if isinstance(first, ExceptionGroup):
        return _first_failure(first, bucket)
    if isinstance(first, FetchError):
        return first
    if isinstance(first, S3Error):
        reason = AUTH_FAILED if first.is_auth_error else BUCKET_OPERATION_FAILED
        return FetchError(f"fetch from bucket '{bucket}' failed: {first.message}", reason)
    if isinstance(first, OSError):
        message = f"fetch from bucket '{bucket}' failed: {first.strerror or first}"
        return FetchError(message, BUCKET_OPERATION_FAILED)
    return first
