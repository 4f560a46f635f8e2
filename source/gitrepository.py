"""The GitRepository reconciler: remote ref → checkout → tar.gz artifact in storage.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), include (the included GitRepositories' artifacts), source (credentials,
ls-remote, skip when nothing moved, checkout, signatures; a new revision marks
``ArtifactOutdated`` and reports progress), artifact (archive with ignore rules, record it in
status).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controllers.api import Artifact, parse_duration
from controllers.artifact import ArtifactError, extract_tarball
from controllers.git.credentials import read_credentials
from controllers.git.remote import check_auth
from controllers.reconcile import ReconcileError, Reconciler, Result, RunContext, Stalling, Step
from controllers.secrets import read_secret
from source import git
from source.api_v1 import GitRepository, GitRepositoryInclude, GitRepositoryStatus
from source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    FETCH_FAILED,
    INCLUDE_UNAVAILABLE,
    SOURCE_VERIFIED,
    STORAGE_OPERATION_FAILED,
    SUCCEEDED,
    UNSUPPORTED,
    FetchError,
    fetching,
    mark_new_revision,
)
from source.storage import ArtifactStorage, StorageError
from source.storage_step import (
    collect_garbage,
    keep_artifact,
    reconcile_storage,
    record_artifact,
    store_artifact,
)
from source.verify import VerificationError, verify_signature

__all__ = ["GitRepositoryReconciler"]


@dataclass
class GitRunState:
    """What the steps of one run hand on to each other."""

    includes: list[Artifact] = field(default_factory=list)
    revision: str = ""
    message: str = ""
    workdir: Path | None = None  # None: unchanged, nothing checked out


class GitRepositoryReconciler(Reconciler[GitRepository, GitRunState]):
    """Reconciles GitRepository objects into artifacts in ``storage``."""

    model = GitRepository
    owned_conditions: tuple[str, ...] = (
        ARTIFACT_IN_STORAGE,
        ARTIFACT_OUTDATED,
        FETCH_FAILED,
        STORAGE_OPERATION_FAILED,
        SOURCE_VERIFIED,
        INCLUDE_UNAVAILABLE,
    )

    def __init__(self, storage: ArtifactStorage) -> None:
        self.storage = storage
        self.stats: Counter[str] = Counter()

    @property
    def steps(self) -> Sequence[Step[GitRepository, GitRunState]]:
        return [
            self.reconcile_storage,
            self.reconcile_include,
            self.reconcile_source,
            self.reconcile_artifact,
        ]

    def new_state(self) -> GitRunState:
        return GitRunState()

    async def finalize(self, ctx: RunContext[GitRunState], obj: GitRepository) -> None:
        await asyncio.to_thread(
            self.storage.remove_all,
            "GitRepository",
            obj.metadata.namespace or "",
            obj.metadata.name,
        )

    async def reconcile_storage(self, ctx: RunContext[GitRunState], obj: GitRepository) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_include(self, ctx: RunContext[GitRunState], obj: GitRepository) -> Result:
        """The artifacts of the GitRepositories in ``spec.include``, which must all have one."""
        run = ctx.state
        for include in obj.spec.include or []:
            name = include.repository.name
            raw = await ctx.read(GitRepository.info, obj.metadata.namespace, name)
            # Only its status: an include whose own spec is invalid still has an artifact.
            status = GitRepositoryStatus.model_validate(raw.get("status") or {}) if raw else None
            artifact = status.artifact if status else None
            if artifact is None:
                why = "not found" if raw is None else "has no artifact yet"
                message = f"included GitRepository '{name}' {why}"
                ctx.mark(
                    INCLUDE_UNAVAILABLE,
                    "True",
                    "NotFound" if raw is None else "NoArtifact",
                    message,
                )
                raise ReconcileError(message, reason=INCLUDE_UNAVAILABLE)
            run.includes.append(artifact)
        ctx.clear(INCLUDE_UNAVAILABLE)
        return Result()

    async def reconcile_source(self, ctx: RunContext[GitRunState], obj: GitRepository) -> Result:
        """Resolve the ref; check it out unless the artifact already holds that revision."""
        spec, run = obj.spec, ctx.state
        timeout = parse_duration(spec.timeout or "60s")
        with fetching(ctx):
            if spec.provider not in (None, "generic"):
                raise FetchError(
                    f"the '{spec.provider}' provider is not supported yet; use 'generic' with "
                    "credentials in spec.secretRef",
                    UNSUPPORTED,
                    stalled=True,
                )
            try:
                auth, proxy = await read_credentials(
                    ctx.client,
                    obj.metadata.namespace or "",
                    spec.secret_ref.name if spec.secret_ref else None,
                    spec.proxy_secret_ref.name if spec.proxy_secret_ref else None,
                )
                check_auth(spec.url, auth)
                ref = spec.ref
                heads = None
                if ref is None or not ref.commit:
                    heads = await git.list_heads(spec.url, auth, proxy=proxy, timeout=timeout)
                target = git.resolve(ref, heads)
                if target.commit and self._up_to_date(obj, target.revision(target.commit), run):
                    self.stats["skipped"] += 1
                    run.revision = target.revision(target.commit)
                    return Result()
                workdir = ctx.tempdir("weir-git-")
                self.stats["checkouts"] += 1
                checkout = await git.checkout(
                    spec.url,
                    target,
                    workdir,
                    auth,
                    proxy=proxy,
                    timeout=timeout,
                    recurse_submodules=bool(spec.recurse_submodules),
                )
            except git.GitError as err:
                message = f"failed to checkout and determine revision: {err.message}"
                raise FetchError(message, err.reason) from err
        await self._verify(ctx, obj, checkout)
        run.revision, run.message, run.workdir = checkout.revision, checkout.message, workdir
        artifact = obj.status.artifact
        if artifact is None or artifact.revision != run.revision:
            await mark_new_revision(ctx, obj, f"new upstream revision '{run.revision}'")
        return Result()

    async def _verify(
        self, ctx: RunContext[GitRunState], obj: GitRepository, checkout: git.Checkout
    ) -> None:
        """``spec.verify``: the commit's and/or the tag's PGP signature by a trusted key."""
        spec = obj.spec.verify
        if spec is None:
            ctx.clear(SOURCE_VERIFIED)
            obj.status.source_verification_mode = None
            return
        mode = "HEAD" if spec.mode in (None, "head") else spec.mode
        keys = dict(
            await read_secret(ctx.client, obj.metadata.namespace or "", spec.secret_ref.name)
        )
        checks = []
        if mode in ("Tag", "TagAndHEAD"):
            if not (obj.spec.ref and (obj.spec.ref.tag or obj.spec.ref.semver)):
                raise Stalling(
                    f"verify mode '{mode}' needs a tag or semver ref", reason="InvalidVerifyMode"
                )
            tag = checkout.revision.split("@", 1)[0]
            checks.append(("tag", tag, checkout.tag_signature, checkout.tag_signed_data))
        if mode in ("HEAD", "TagAndHEAD"):
            checks.append(("commit", checkout.commit, checkout.signature, checkout.signed_data))
        verified = []
        for what, name, signature, data in checks:
            try:
                fingerprint = await verify_signature(signature, data, keys)
            except VerificationError as err:
                reason = "InvalidTagSignature" if what == "tag" else "InvalidCommitSignature"
                message = f"signature verification of {what} '{name}' failed: {err}"
                ctx.mark(SOURCE_VERIFIED, "False", reason, message)
                raise ReconcileError(message, reason=reason) from err
            verified.append(f"{what} '{name}' with key '{fingerprint}'")
        message = (
            f"verified signature of {verified[0]}"
            if len(verified) == 1
            else "verified signature of\n" + "\n".join(f"\t- {v}" for v in verified)
        )
        ctx.mark(SOURCE_VERIFIED, "True", SUCCEEDED, message)
        obj.status.source_verification_mode = mode

    def _up_to_date(self, obj: GitRepository, revision: str, run: GitRunState) -> bool:
        artifact = obj.status.artifact
        included = [a.revision for a in obj.status.included_artifacts or []]
        return (
            artifact is not None
            and obj.status.observed_include == obj.spec.include
            and included == [a.revision for a in run.includes]
            and artifact.revision == revision
            and obj.status.observed_ignore == obj.spec.ignore
            and obj.status.observed_recurse_submodules == obj.spec.recurse_submodules
            and obj.status.source_verification_mode
            == (None if obj.spec.verify is None else obj.spec.verify.mode.replace("head", "HEAD"))
        )

    async def reconcile_artifact(self, ctx: RunContext[GitRunState], obj: GitRepository) -> Result:
        """Archive the checkout into storage and record it in status."""
        fetched = ctx.state
        stored = f"stored artifact for revision '{fetched.revision}'"
        workdir = fetched.workdir
        if workdir is None:
            return keep_artifact(ctx, obj, stored=stored)
        namespace, name = obj.metadata.namespace or "", obj.metadata.name
        commit = fetched.revision.rsplit(":", 1)[-1]
        new = self.storage.new_artifact(
            "GitRepository", namespace, name, fetched.revision, f"{commit}.tar.gz"
        )

        def write() -> Artifact:
            for include, included in zip(obj.spec.include or [], fetched.includes, strict=True):
                self._copy_include(include, included, workdir)
            return self.storage.archive(new, workdir, ignore=obj.spec.ignore)

        artifact = await store_artifact(ctx, write)
        await collect_garbage(self.storage, ctx, obj, artifact)
        obj.status.observed_ignore = obj.spec.ignore
        obj.status.observed_recurse_submodules = obj.spec.recurse_submodules
        obj.status.observed_include = obj.spec.include
        obj.status.included_artifacts = fetched.includes or None
        event = f"stored artifact for commit '{fetched.message}'"
        return record_artifact(ctx, obj, artifact, stored=stored, event=event)

    def _copy_include(
        self, include: GitRepositoryInclude, artifact: Artifact, workdir: Path
    ) -> None:
        """Unpack ``artifact``'s ``fromPath`` into ``workdir/toPath`` (default: its name)."""
        with tempfile.TemporaryDirectory(prefix="weir-include-") as scratch:
            unpacked = Path(scratch) / "unpacked"
            try:
                extract_tarball(self.storage.local_path(artifact), unpacked)
            except ArtifactError as err:
                raise StorageError(f"include '{include.repository.name}': {err}") from err
            source = _inside(unpacked, include.from_path or ".", "fromPath")
            target = _inside(workdir, include.to_path or include.repository.name, "toPath")
            if not source.is_dir():
                raise StorageError(
                    f"include '{include.repository.name}': no directory {include.from_path!r}"
                )
            shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)


def _inside(root: Path, relative: str, what: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise StorageError(f"{what} {relative!r} leaves the artifact")
    return path
