"""The HelmChart reconciler: a chart version from a HelmRepository → a chart artifact.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), source (read the HelmRepository; from a ``default`` one, download its index
artifact with the digest checked and pick the chart version; from an ``oci`` one, pick the
version among the registry's tags (:mod:`source.helmoci`); download the chart unless the
artifact already holds it; merge ``valuesFiles`` and package again (:mod:`source.chartbuild`)),
artifact (store ``<chart>-<version>.tgz`` with revision ``<version>``, record it in status).

The version is Flux's choice (its ``ChartRepository.GetChartVersion``): an entry whose version
is exactly ``spec.version``, else the highest that satisfies it as a Masterminds range
(``*`` or empty: the highest stable one), a tie in SemVer order broken by the later
``created``. The chart is fetched from the entry's first URL, resolved against the repository
URL as Helm does; the repository's basic auth goes only to the repository's scheme and host
unless ``passCredentials``. One chart is at most 10 MiB (Flux's ``MaxChartSize``), and it must
hold a ``Chart.yaml`` with a name and version, as Flux checks before storing it. With values
files the version gets the generation as build metadata (``1.0.0+3``), as in Flux.

From a GitRepository or a Bucket (:mod:`source.chartlocal`, Flux's local builder): the chart at
the path ``spec.chart`` of the source's artifact (read from this controller's storage, as Flux
does), its version from ``Chart.yaml`` with build metadata for ``reconcileStrategy: Revision``
(``+<12 hex digits of the source revision>``) and values files (the generation), its missing
dependencies added (``file://`` from the artifact; HTTP(S) from the HelmRepository of the
namespace with that URL) and packaged by Helm; rebuilt when that version changes or the
generation moves. New source artifacts requeue the charts built from them.

Not implemented yet, and refused with ``Stalled`` (reason ``UnsupportedConfiguration``) so
that nothing is silently ignored: ``verify``, and dependencies from OCI registries.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controllers.api import Artifact, object_key
from controllers.artifact import ArtifactError, extract_tarball, fetch_file
from controllers.download import BodyTooLarge, save_body
from controllers.reconcile import Reconciler, Result, RunContext, Step, Watch
from controllers.safeyaml import YAMLLoadError, load
from controllers.semver import InvalidConstraint, Version, parse_constraints, parse_version
from controllers.tls import system_context
from source.api_v1 import Bucket, GitRepository, HelmChart, HelmRepository
from source.chartbuild import ChartBuildError, package, repackage, values_files, with_metadata
from source.chartlocal import (
    Dependency,
    LocalChart,
    copy_packaged,
    locate_chart,
    prepare_chart,
    version_metadata,
)
from source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    FETCH_FAILED,
    STORAGE_OPERATION_FAILED,
    UNSUPPORTED,
    URL_INVALID,
    FetchError,
    fetching,
)
from source.helmindex import MAX_INDEX_SIZE, InvalidIndex, load_index
from source.helmoci import pull_oci_chart, registry_client, resolve_chart
from source.helmrepository import Connection, repository_connection, shown_url
from source.storage import ArtifactStorage
from source.storage_step import reconcile_storage, store_artifact

__all__ = [
    "MAX_CHART_SIZE",
    "ChartVersion",
    "HelmChartReconciler",
    "HelmChartRunState",
    "chart_url",
    "charts_of_new_artifact",
    "check_chart_name",
    "select_version",
]

KIND = "HelmChart"
MAX_CHART_SIZE = 10 * 1024 * 1024
"""Flux's ``helm.MaxChartSize``: the largest chart downloaded."""
# Flux's reasons for this kind.
CHART_PULL_SUCCEEDED = "ChartPullSucceeded"
CHART_PULL_ERROR = "ChartPullError"
INVALID_CHART_REFERENCE = "InvalidChartReference"
NEW_CHART = "NewChart"
DEPENDENCY_BUILD_ERROR = "DependencyBuildError"
NO_SOURCE_ARTIFACT = "NoSourceArtifact"
SOURCE_UNAVAILABLE = "SourceUnavailable"
# Flux's RemoteReference.Validate pattern, ``^([-a-z0-9]+/?\.?)+$``, made atomic: Python's
# backtracking engine would take exponential time on a long near-miss, Go's RE2 never does.
_CHART_NAME = re.compile(r"^(?>[-a-z0-9]+/?\.?)+$")
# Chart.yaml is small; a bigger one is no chart Flux would load.
_MAX_UNPACKED = 100 * 1024 * 1024
_MAX_REDIRECTS = 10


@dataclass(frozen=True)
class ChartVersion:
    """The index entry chosen: chart name, version and where to download it."""

    name: str
    version: str
    urls: tuple[str, ...]


@dataclass
class HelmChartRunState:
    """What the source step hands to the artifact step."""

    chosen: ChartVersion | None = None
    version: str = ""  # the artifact's version: the chosen one, with build metadata if any
    chart: Path | None = None  # the chart to store; None: the artifact already holds it
    packaged: bool = False  # weir packaged the chart (values files, version metadata)
    values_files: list[str] = field(default_factory=list)  # merged into values.yaml

    def summary(self, action: str) -> str:
        """Flux's ``Build.Summary``: ``pulled 'podinfo' chart with version '6.0.0'``."""
        assert self.chosen is not None
        if action == "pulled" and self.packaged:
            action = "packaged"
        text = f"{action} '{self.chosen.name}' chart with version '{self.version}'"
        if self.values_files:
            text += f" and merged values files [{' '.join(self.values_files)}]"
        return text


class HelmChartReconciler(Reconciler[HelmChart, HelmChartRunState]):
    """Reconciles HelmChart objects into chart artifacts in ``storage``.

    ``stats`` counts ``downloads`` (charts fetched) and ``unchanged`` (runs whose chosen
    version the artifact already holds)."""

    model = HelmChart
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
        max_chart_size: int = MAX_CHART_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_chart_size < 1:
            raise ValueError("max_chart_size must be positive")
        self.storage = storage
        self.max_chart_size = max_chart_size
        self.transport = transport
        self.stats: dict[str, int] = {"downloads": 0, "unchanged": 0}

    @property
    def steps(self) -> Sequence[Step[HelmChart, HelmChartRunState]]:
        return [self.reconcile_storage, self.reconcile_source, self.reconcile_artifact]

    @property
    def watches(self) -> Sequence[Watch]:
        return [
            Watch(HelmRepository.info, charts_of_new_index),
            Watch(GitRepository.info, charts_of_new_artifact("GitRepository")),
            Watch(Bucket.info, charts_of_new_artifact("Bucket")),
        ]

    def new_state(self) -> HelmChartRunState:
        return HelmChartRunState()

    async def finalize(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, KIND, obj.metadata.namespace or "", obj.metadata.name
        )

    async def reconcile_storage(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_source(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> Result:
        """Read the HelmRepository (its index, or its registry), choose the version, download
        the chart unless the artifact holds it already, and merge the values files."""
        with fetching(ctx):
            _check_supported(obj)
            if obj.spec.source_ref.kind != "HelmRepository":
                await self._from_source_artifact(ctx, obj)
                return Result()
            check_chart_name(obj.spec.chart)
            repository = await self._repository(ctx, obj)
            if repository.spec.type == "oci":
                await self._from_registry(ctx, obj, repository)
            else:
                await self._from_index(ctx, obj, repository)
            await self._build(ctx, obj)
        return Result()

    async def _from_index(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart, repository: HelmRepository
    ) -> None:
        index = await self._index(ctx, obj, repository)
        chosen = select_version(index, obj.spec.chart, obj.spec.version)
        if not await self._choose(ctx, obj, chosen, _generation_metadata(obj)):
            return
        connection = await repository_connection(ctx, repository)
        ctx.state.chart = await self._download(ctx, repository, connection, chosen)

    async def _from_registry(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart, repository: HelmRepository
    ) -> None:
        timeout = repository.timeout_seconds
        async with await registry_client(ctx, repository, obj.spec.chart) as client:
            found = await resolve_chart(client, obj.spec.chart, obj.spec.version, timeout)
            chosen = ChartVersion(found.name, found.version, (found.url,))
            if not await self._choose(ctx, obj, chosen, _generation_metadata(obj)):
                return
            workdir = ctx.tempdir("weir-helmchart-")
            dest = workdir / "chart.tgz"
            self.stats["downloads"] += 1
            await pull_oci_chart(client, found, dest, self.max_chart_size, timeout)
        await asyncio.to_thread(_check_chart, dest, workdir / "unpacked", chosen)
        ctx.log.info("chart pulled", url=found.url, version=found.version)
        ctx.state.chart = dest

    async def _from_source_artifact(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart
    ) -> None:
        """Build the chart at ``spec.chart`` in the GitRepository's or Bucket's artifact
        (Flux's ``buildFromTarballArtifact``), unless the artifact holds its version already."""
        kind = obj.spec.source_ref.kind
        artifact = await self._source_artifact(ctx, obj)
        root = ctx.tempdir("weir-helmchart-source-") / "source"
        workdir = ctx.tempdir("weir-helmchart-build-")
        try:
            await asyncio.to_thread(
                extract_tarball,
                self.storage.local_path(artifact),
                root,
                self.storage.max_content_size,
            )
        except ArtifactError as err:
            raise FetchError(f"artifact untar error: {err}", "Failed") from None
        files = values_files(obj.spec.values_files)
        try:
            chart = await asyncio.to_thread(locate_chart, root, obj.spec.chart, workdir)
        except ChartBuildError as err:
            raise _build_error(err) from None
        metadata = version_metadata(
            strategy=obj.spec.reconcile_strategy,
            kind=kind,
            revision=artifact.revision,
            values_files=bool(files),
            generation=obj.metadata.generation,
        )
        # Flux packages a chart directory always, a packaged chart only when it changes it.
        must_package = chart.archive is None or bool(metadata) or bool(files)
        chosen = ChartVersion(chart.name, chart.version, ())
        build = await self._choose(ctx, obj, chosen, metadata)
        ctx.state.packaged = must_package
        if build:
            await self._build_local(ctx, obj, root, chart, workdir, must_package=must_package)

    async def _source_artifact(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart
    ) -> Artifact:
        """The artifact of the GitRepository or Bucket the chart refers to, present in
        storage."""
        kind, name = obj.spec.source_ref.kind, obj.spec.source_ref.name
        namespace = obj.metadata.namespace
        model = GitRepository if kind == "GitRepository" else Bucket
        raw = await ctx.read(model.info, namespace, name)
        if raw is None:
            raise FetchError(
                f"failed to get source: {kind} '{namespace}/{name}' not found", SOURCE_UNAVAILABLE
            )
        artifact = model.model_validate(raw).status.artifact
        if artifact is None or not await asyncio.to_thread(self.storage.has, artifact):
            # Not a failure of the chart: the watch on the source brings it back.
            raise FetchError(
                f"no artifact available for {kind} source '{name}'", NO_SOURCE_ARTIFACT
            )
        obj.status.observed_source_artifact_revision = artifact.revision
        return artifact

    async def _build_local(
        self,
        ctx: RunContext[HelmChartRunState],
        obj: HelmChart,
        root: Path,
        chart: LocalChart,
        workdir: Path,
        *,
        must_package: bool,
    ) -> None:
        """Merge the values files, resolve the missing dependencies and package the chart."""
        state = ctx.state
        try:
            used, added, remote = await asyncio.to_thread(
                prepare_chart,
                root,
                chart,
                values_files(obj.spec.values_files),
                ignore_missing=bool(obj.spec.ignore_missing_values_files),
            )
            if remote:
                await self._add_remote(ctx, obj, chart, remote)
            if must_package:
                state.chart = await asyncio.to_thread(
                    package, chart.directory, workdir / "packaged", state.version
                )
            else:
                state.chart = await asyncio.to_thread(copy_packaged, chart, workdir / "packaged")
        except ChartBuildError as err:
            raise _build_error(err) from None
        state.values_files = used
        if added or remote:
            ctx.log.info("chart dependencies resolved", count=added + len(remote))

    async def _add_remote(
        self,
        ctx: RunContext[HelmChartRunState],
        obj: HelmChart,
        chart: LocalChart,
        remote: Sequence[Dependency],
    ) -> None:
        """Download each dependency from the HelmRepository of the namespace whose URL is the
        dependency's repository (its index artifact, credentials and TLS, as Flux's
        dependency manager), into the chart's ``charts/``."""
        namespace = obj.metadata.namespace or ""
        listing = await ctx.client.list(HelmRepository.info, namespace)
        repositories = [HelmRepository.model_validate(item) for item in listing["items"]]
        for dependency in remote:
            name = dependency.alias or dependency.name

            def failed(problem: str, *, name: str = name) -> FetchError:
                return FetchError(
                    f"dependency build error: failed to add remote dependency '{name}': {problem}",
                    DEPENDENCY_BUILD_ERROR,
                )

            url = _normalized(dependency.repository)
            if not url.startswith(("http://", "https://")):
                raise _refuse_remote([dependency])
            repository = next(
                (
                    r
                    for r in repositories
                    if r.spec.type != "oci" and _normalized(r.spec.url) == url
                ),
                None,
            )
            if repository is None or repository.status.artifact is None:
                raise failed(
                    f"no HelmRepository for '{url}' with an index artifact in namespace "
                    f"'{namespace}'"
                )
            try:
                index = await self._index(ctx, obj, repository)
                chosen = select_version(index, dependency.name, dependency.version)
                connection = await repository_connection(ctx, repository)
                archive = await self._download(ctx, repository, connection, chosen)
            except FetchError as err:
                raise failed(err.message) from None
            target = chart.directory / "charts" / f"{chosen.name}-{chosen.version}.tgz"
            await asyncio.to_thread(_place, archive, target)

    async def _choose(
        self,
        ctx: RunContext[HelmChartRunState],
        obj: HelmChart,
        chosen: ChartVersion,
        metadata: str,
    ) -> bool:
        """Record the chosen version, with build ``metadata`` if any; whether the chart must
        be fetched or built (the artifact does not hold it yet)."""
        state = ctx.state
        state.chosen = chosen
        files = values_files(obj.spec.values_files)
        state.version = chosen.version
        if metadata:
            # Flux's VersionMetadata, so that a consumer sees the change.
            try:
                state.version = with_metadata(chosen.version, metadata)
            except ChartBuildError as err:
                raise _build_error(err) from None
        ctx.attempted_revision = state.version
        if self._holds(obj, chosen.name, state.version):
            self.stats["unchanged"] += 1
            state.packaged = bool(files)
            state.values_files = list(obj.status.observed_values_files or files)
            return False
        if obj.status.artifact is not None:
            ctx.mark(ARTIFACT_OUTDATED, "True", NEW_CHART, state.summary("new"))
        await ctx.progress(f"building artifact: {state.summary('new')}")
        return True

    async def _build(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> None:
        """Merge the values files into the fetched chart and package it at the version with
        its build metadata (Flux's remote builder); the chart as fetched otherwise."""
        state, files = ctx.state, values_files(obj.spec.values_files)
        if state.chart is None or not files:
            return
        archive = state.chart
        workdir = ctx.tempdir("weir-helmchart-build-")
        try:
            state.chart, state.values_files = await asyncio.to_thread(
                repackage,
                archive,
                workdir,
                files,
                ignore_missing=bool(obj.spec.ignore_missing_values_files),
                version=state.version,
            )
        except ChartBuildError as err:
            raise _build_error(err) from None
        state.packaged = True

    async def _repository(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart
    ) -> HelmRepository:
        """The HelmRepository the chart refers to, with an index artifact unless it is of
        type ``oci`` (which has none)."""
        name, namespace = obj.spec.source_ref.name, obj.metadata.namespace
        raw = await ctx.read(HelmRepository.info, namespace, name)
        if raw is None:
            raise FetchError(
                f"failed to get source: HelmRepository '{namespace}/{name}' not found",
                SOURCE_UNAVAILABLE,
            )
        repository = HelmRepository.model_validate(raw)
        if repository.spec.type == "oci":
            if not repository.spec.url.startswith("oci://"):
                raise FetchError(
                    f"invalid OCI registry URL: {repository.spec.url}", URL_INVALID, stalled=True
                )
            return repository
        artifact = repository.status.artifact
        if artifact is None:
            # Not a failure of the chart: the watch on HelmRepositories brings it back.
            raise FetchError(
                f"no artifact available for HelmRepository source '{name}'", NO_SOURCE_ARTIFACT
            )
        obj.status.observed_source_artifact_revision = artifact.revision
        return repository

    async def _index(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart, repository: HelmRepository
    ) -> dict[str, Any]:
        """The repository's index, from its artifact, the digest checked."""
        artifact = repository.status.artifact
        assert artifact is not None
        dest = ctx.tempdir("weir-helmchart-") / "index.json"
        try:
            await fetch_file(
                artifact.url,
                artifact.digest or "",
                dest,
                max_size=MAX_INDEX_SIZE,
                timeout=repository.timeout_seconds,
            )
            return await asyncio.to_thread(_load_file, dest)
        except (ArtifactError, InvalidIndex) as err:
            raise FetchError(
                _pull_error(f"failed to get chart version for remote reference: {err}"),
                CHART_PULL_ERROR,
            ) from None

    def _holds(self, obj: HelmChart, name: str, version: str) -> bool:
        """Whether the artifact is chart ``name`` at ``version``, built for this generation
        (Flux rebuilds when the generation moved, its ``Force``)."""
        artifact = obj.status.artifact
        return (
            artifact is not None
            and artifact.revision == version
            and obj.status.observed_chart_name == name
            and obj.status.observed_generation == obj.metadata.generation
        )

    async def _download(
        self,
        ctx: RunContext[HelmChartRunState],
        repository: HelmRepository,
        connection: Connection,
        chosen: ChartVersion,
    ) -> Path:
        """The chosen chart, downloaded and checked."""
        if not chosen.urls:
            raise FetchError(
                _pull_error(
                    "failed to download chart for remote reference: chart "
                    f"'{chosen.name}' has no downloadable URLs"
                ),
                CHART_PULL_ERROR,
            )
        try:
            url = chart_url(repository.spec.url, chosen.urls[0])
        except httpx.InvalidURL as err:
            raise FetchError(
                _pull_error(f"failed to download chart for remote reference: {err}"),
                CHART_PULL_ERROR,
            ) from None
        # Helm's getter: the repository's credentials go to its own scheme and host only.
        auth = connection.auth
        if not repository.spec.pass_credentials and not _same_origin(
            url, httpx.URL(repository.spec.url)
        ):
            auth = None
        workdir = ctx.tempdir("weir-helmchart-")
        dest = workdir / "chart.tgz"
        self.stats["downloads"] += 1
        await self._get(url, auth, connection.tls, dest, repository.timeout_seconds)
        await asyncio.to_thread(_check_chart, dest, workdir / "unpacked", chosen)
        ctx.log.info("chart downloaded", url=shown_url(url), version=chosen.version)
        return dest

    async def _get(
        self,
        url: httpx.URL,
        auth: httpx.BasicAuth | None,
        tls: ssl.SSLContext | None,
        dest: Path,
        timeout: float,
    ) -> None:
        shown = shown_url(url)

        def failed(problem: str) -> FetchError:
            return FetchError(
                _pull_error(f"failed to download chart for remote reference: {problem}"),
                CHART_PULL_ERROR,
            )

        client = httpx.AsyncClient(
            verify=tls if tls is not None else system_context(),
            auth=auth,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            transport=self.transport,
            # The repository and its Secrets say everything: no ~/.netrc, no proxy variables.
            trust_env=False,
            headers={"Accept-Encoding": "identity"},
        )
        try:
            async with client, asyncio.timeout(timeout), client.stream("GET", url) as response:
                if response.status_code != httpx.codes.OK:
                    phrase = f"{response.status_code} {response.reason_phrase}".strip()
                    raise failed(f"{shown} answered {phrase}")
                await save_body(response, dest, algorithm="sha256", max_size=self.max_chart_size)
        except BodyTooLarge:
            raise failed(
                f"chart exceeds the maximum chart size of {self.max_chart_size} bytes"
            ) from None
        except TimeoutError:
            raise failed(f"{shown}: timed out after {timeout:g}s") from None
        except (httpx.HTTPError, ssl.SSLError, OSError) as err:
            text = (str(err).strip() or type(err).__name__).splitlines()[0]
            raise failed(f"{shown}: {text}") from None

    async def reconcile_artifact(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart
    ) -> Result:
        """Store the downloaded chart and record the artifact in status."""
        state = ctx.state
        chosen, chart = state.chosen, state.chart
        assert chosen is not None
        summary = state.summary("pulled")
        if chart is not None:
            new = self.storage.new_artifact(
                KIND,
                obj.metadata.namespace or "",
                obj.metadata.name,
                state.version,
                f"{chosen.name}-{state.version}.tgz",
            )
            stored = await store_artifact(
                ctx, lambda: self.storage.copy_file(new, chart), verb="copy Helm chart"
            )
            previous = obj.status.artifact
            obj.status.artifact = stored
            obj.status.observed_chart_name = chosen.name
            # Flux records the merged files only when some may have been skipped.
            obj.status.observed_values_files = (
                state.values_files if obj.spec.ignore_missing_values_files else None
            )
            if previous is None or previous.digest != stored.digest:
                ctx.notify(CHART_PULL_SUCCEEDED, summary, revision=stored.revision)
        artifact = obj.status.artifact
        assert artifact is not None
        obj.status.url = artifact.url
        ctx.mark(ARTIFACT_IN_STORAGE, "True", CHART_PULL_SUCCEEDED, summary)
        ctx.clear(ARTIFACT_OUTDATED)
        return Result(message=summary)


def select_version(index: dict[str, Any], name: str, wanted: str) -> ChartVersion:
    """The version of chart ``name`` that ``wanted`` (an exact version or a range; ``*`` or
    empty: the highest stable) selects in ``index``, as Flux chooses; a stalling
    :class:`FetchError` (``InvalidChartReference``) when there is none."""

    def invalid(problem: str) -> FetchError:
        return FetchError(
            f"invalid chart reference: {problem}", INVALID_CHART_REFERENCE, stalled=True
        )

    check_chart_name(name)
    prefix = "failed to get chart version for remote reference: "
    entries = (index.get("entries") or {}).get(name)
    if entries is None:
        raise invalid(prefix + "no chart name found")
    if not entries:
        raise invalid(prefix + "no chart version found")
    if wanted:
        for entry in entries:
            if entry.get("version") == wanted:
                return _chart_version(entry)
    try:
        constraints = parse_constraints(wanted if wanted and wanted != "*" else "*")
    except InvalidConstraint as err:
        raise invalid(prefix + str(err)) from None
    matched: list[tuple[Version, str, dict[str, Any]]] = []
    for entry in entries:
        version = parse_version(str(entry.get("version", "")))
        if version is not None and constraints.check(version):
            matched.append((version, str(entry.get("created") or ""), entry))
    if not matched:
        raise invalid(prefix + f"no '{name}' chart with version matching '{wanted}' found")
    best = matched[0]
    for candidate in matched[1:]:
        order = candidate[0].compare(best[0])
        if order > 0 or (order == 0 and candidate[1] > best[1]):
            best = candidate
    return _chart_version(best[2])


def check_chart_name(name: str) -> None:
    """Flux's ``RemoteReference.Validate``: a stalling :class:`FetchError`
    (``InvalidChartReference``) for a name no repository can hold."""
    problem = ""
    if not name:
        problem = "no name set for remote chart reference"
    elif not _CHART_NAME.fullmatch(name):
        problem = (
            f"invalid chart name '{name}': a valid name must be lower case letters and numbers "
            "and MAY be separated with dashes (-), slashes (/) or periods (.)"
        )
    if problem:
        raise FetchError(
            f"invalid chart reference: {problem}", INVALID_CHART_REFERENCE, stalled=True
        )


def chart_url(repository_url: str, reference: str) -> httpx.URL:
    """Where a chart URL of the index points: ``reference`` itself when absolute, else
    resolved against the repository URL taken as a directory, with the repository's query
    (Helm's ``ResolveReferenceURL``). Raises ``httpx.InvalidURL``."""
    ref = httpx.URL(reference)
    if ref.is_absolute_url:
        url = ref
    else:
        base = httpx.URL(repository_url)
        base = base.copy_with(path=base.path.rstrip("/") + "/")
        url = base.join(reference).copy_with(query=base.query or None)
    if url.scheme not in ("http", "https") or not url.host:
        raise httpx.InvalidURL(f"unsupported chart URL scheme '{url.scheme}'")
    return url


def charts_of_new_index(
    old: dict[str, Any] | None, new: dict[str, Any] | None, charts: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the HelmCharts using HelmRepository ``new`` whose last observed index revision
    is not its artifact's (Flux's requestsForHelmRepositoryChange)."""
    revision = (((new or {}).get("status") or {}).get("artifact") or {}).get("revision")
    if not revision:
        return []
    meta = (new or {}).get("metadata") or {}
    keys = []
    for chart in charts:
        chart_meta = chart.get("metadata") or {}
        ref = (chart.get("spec") or {}).get("sourceRef") or {}
        status = chart.get("status") or {}
        if (
            ref.get("kind") == "HelmRepository"
            and ref.get("name") == meta.get("name")
            and chart_meta.get("namespace") == meta.get("namespace")
            and status.get("observedSourceArtifactRevision") != revision
        ):
            keys.append(object_key(chart))
    return keys


def charts_of_new_artifact(
    kind: str,
) -> Callable[[dict[str, Any] | None, dict[str, Any] | None, Iterable[dict[str, Any]]], list[str]]:
    """The requeue function of a watch on ``kind`` (GitRepository, Bucket): the keys of the
    HelmCharts built from the changed source whose last observed revision is not its
    artifact's (Flux's requestsForGitRepositoryChange and requestsForBucketChange)."""

    def requeue(
        old: dict[str, Any] | None, new: dict[str, Any] | None, charts: Iterable[dict[str, Any]]
    ) -> list[str]:
        revision = (((new or {}).get("status") or {}).get("artifact") or {}).get("revision")
        if not revision:
            return []
        meta = (new or {}).get("metadata") or {}
        keys = []
        for chart in charts:
            chart_meta = chart.get("metadata") or {}
            ref = (chart.get("spec") or {}).get("sourceRef") or {}
            observed = (chart.get("status") or {}).get("observedSourceArtifactRevision")
            if (
                ref.get("kind") == kind
                and ref.get("name") == meta.get("name")
                and chart_meta.get("namespace") == meta.get("namespace")
                and observed != revision
            ):
                keys.append(object_key(chart))
        return keys

    return requeue


def _refuse_remote(remote: Sequence[Dependency]) -> FetchError:
    """Dependencies from OCI registries are not resolved yet: the chart stalls, naming them,
    rather than being packaged without them."""
    listed = ", ".join(f"'{d.alias or d.name}' ({d.repository})" for d in remote)
    return FetchError(
        f"dependency build error: dependencies from OCI registries are not supported yet: "
        f"{listed}; vendor them into the chart's charts/ directory",
        UNSUPPORTED,
        stalled=True,
    )


def _normalized(url: str) -> str:
    """A repository URL as Flux compares them: without trailing slashes."""
    return url.strip().rstrip("/")


def _place(archive: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, target)


def _generation_metadata(obj: HelmChart) -> str:
    """Flux's build metadata for a chart from a HelmRepository: the generation when values
    files change the chart."""
    return str(obj.metadata.generation) if values_files(obj.spec.values_files) else ""


def _check_supported(obj: HelmChart) -> None:
    spec = obj.spec
    if spec.verify is not None:
        raise FetchError(
            "spec.verify: weir does not verify chart signatures yet", UNSUPPORTED, stalled=True
        )


def _build_error(err: ChartBuildError) -> FetchError:
    """Flux's BuildError: the reason's summary before the message; values files and
    metadata errors stall (they need a spec or chart change)."""
    summaries = {
        "InvalidChartReference": "invalid chart reference",
        "ValuesFilesError": "values files merge error",
        "MetadataPatchError": "chart metadata patch error",
        "DependencyBuildError": "dependency build error",
        "ChartPackageError": "chart package error",
    }
    return FetchError(
        f"{summaries.get(err.reason, 'build error')}: {err.message}",
        err.reason,
        stalled=err.stalled
        or err.reason in ("InvalidChartReference", "ValuesFilesError", "MetadataPatchError"),
    )


def _chart_version(entry: dict[str, Any]) -> ChartVersion:
    urls = entry.get("urls") or []
    return ChartVersion(
        name=str(entry.get("name", "")),
        version=str(entry.get("version", "")),
        urls=tuple(str(url) for url in urls if isinstance(url, str)),
    )


def _check_chart(archive: Path, unpacked: Path, chosen: ChartVersion) -> None:
    """Refuse a download that is no chart: a tar.gz with a ``Chart.yaml`` at the top of its
    directory that names the chart and a version (Flux loads the metadata before storing)."""
    try:
        extract_tarball(archive, unpacked, _MAX_UNPACKED)
        found = sorted(unpacked.glob("*/Chart.yaml"))
        if not found:
            raise ValueError("no Chart.yaml in the archive")
        data = found[0].read_bytes()
        metadata = load(data, what="Chart.yaml") if data else None
    except (ArtifactError, YAMLLoadError, ValueError, OSError) as err:
        raise FetchError(
            _pull_error(f"failed to load chart '{chosen.name}' version '{chosen.version}': {err}"),
            CHART_PULL_ERROR,
        ) from None
    if not isinstance(metadata, dict) or not metadata.get("name") or not metadata.get("version"):
        raise FetchError(
            _pull_error(
                f"chart '{chosen.name}' version '{chosen.version}': Chart.yaml needs a name "
                "and a version"
            ),
            CHART_PULL_ERROR,
        )


def _load_file(path: Path) -> dict[str, Any]:
    return load_index(path.read_bytes())


def _pull_error(problem: str) -> str:
    return f"chart pull error: {problem}"


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
