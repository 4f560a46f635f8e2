"""The condition types and reasons of the source kinds (Flux's source-controller), and the two
idioms every source reconciler marks them with: a failed fetch, and a new upstream revision.

A fetch raises :class:`FetchError` from wherever it fails, inside ``with fetching(ctx):``;
the block marks ``FetchFailed`` and fails (or stalls) the run, or clears ``FetchFailed`` when
the fetch gets through. Before building a new artifact, ``await mark_new_revision(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from controllers.reconcile import ReconcileError, RunContext, Stalling
from source.api_v1 import Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository

__all__ = [
    "ARCHIVE_FAILED",
    "ARTIFACT_IN_STORAGE",
    "ARTIFACT_OUTDATED",
    "AUTH_FAILED",
    "BUCKET_OPERATION_FAILED",
    "FETCH_FAILED",
    "INCLUDE_UNAVAILABLE",
    "LAYER_FAILED",
    "NEW_ARTIFACT",
    "NEW_REVISION",
    "NO_ARTIFACT",
    "PULL_FAILED",
    "READ_FAILED",
    "SOURCE_VERIFIED",
    "STORAGE_OPERATION_FAILED",
    "SUCCEEDED",
    "UNSUPPORTED",
    "URL_INVALID",
    "VERIFICATION_ERROR",
    "FetchError",
    "Source",
    "fetching",
    "mark_new_revision",
]

Source = GitRepository | OCIRepository | Bucket | HelmRepository | HelmChart
"""A kind this controller stores artifacts for."""

# Flux's condition types: the abnormal ones a source reconciler owns, and SourceVerified.
ARTIFACT_IN_STORAGE = "ArtifactInStorage"
ARTIFACT_OUTDATED = "ArtifactOutdated"
FETCH_FAILED = "FetchFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
SOURCE_VERIFIED = "SourceVerified"
INCLUDE_UNAVAILABLE = "IncludeUnavailable"

# Flux's reasons.
SUCCEEDED = "Succeeded"
NEW_REVISION = "NewRevision"
NEW_ARTIFACT = "NewArtifact"
NO_ARTIFACT = "NoArtifact"
AUTH_FAILED = "AuthenticationFailed"
URL_INVALID = "URLInvalid"
ARCHIVE_FAILED = "ArchiveOperationFailed"
READ_FAILED = "ReadOperationFailed"
PULL_FAILED = "OCIArtifactPullFailed"
LAYER_FAILED = "OCIArtifactLayerOperationFailed"
VERIFICATION_ERROR = "VerificationError"
BUCKET_OPERATION_FAILED = "BucketOperationFailed"
# weir's: a spec asking for what weir does not implement (yet).
UNSUPPORTED = "UnsupportedConfiguration"


class FetchError(Exception):
    """The source could not be fetched: ``FetchFailed=True`` with ``reason``; the run is
    retried, or stalls until the object changes when ``stalled``. Raised inside
    :func:`fetching`, which turns it into the run's error."""

    def __init__(self, message: str, reason: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.stalled = stalled


@contextmanager
def fetching(ctx: RunContext[Any]) -> Iterator[None]:
    """The ``FetchFailed`` idiom of every source kind: a :class:`FetchError` raised in the
    block marks ``FetchFailed=True`` and fails the run (``Stalling`` when it is stalled);
    getting through the block clears ``FetchFailed``. Other errors pass as they are."""
    try:
        yield
    except FetchError as err:
        ctx.mark(FETCH_FAILED, "True", err.reason, err.message)
        failure = Stalling if err.stalled else ReconcileError
        raise failure(err.message, reason=err.reason) from err
    ctx.clear(FETCH_FAILED)


async def mark_new_revision(ctx: RunContext[Any], obj: Source, message: str) -> None:
    """What Flux records once it knows a new artifact is to be built: ``ArtifactOutdated=True
    NewRevision`` with ``message`` when there is an artifact it replaces, and, written at
    once, ``Reconciling=True`` with ``building artifact: <message>``."""
    if obj.status.artifact is not None:
        ctx.mark(ARTIFACT_OUTDATED, "True", NEW_REVISION, message)
    await ctx.progress(f"building artifact: {message}")
