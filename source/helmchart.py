"""The HelmChart reconciler: a chart version from a HelmRepository → a chart artifact.

Steps, as in Flux's source-controller: storage (garbage collection, is the recorded artifact
still there?), source (read the HelmRepository, download its index artifact with the digest
checked, pick the chart version, download the chart unless the artifact already holds it),
artifact (store ``<chart>-<version>.tgz`` with revision ``<version>``, record it in status).

The version is Flux's choice (its ``ChartRepository.GetChartVersion``): an entry whose version
is exactly ``spec.version``, else the highest that satisfies it as a Masterminds range
(``*`` or empty: the highest stable one), a tie in SemVer order broken by the later
``created``. The chart is fetched from the entry's first URL, resolved against the repository
URL as Helm does; the repository's basic auth goes only to the repository's scheme and host
unless ``passCredentials``. One chart is at most 10 MiB (Flux's ``MaxChartSize``), and it must
hold a ``Chart.yaml`` with a name and version, as Flux checks before storing it.

Not implemented yet, and refused with ``Stalled`` (reason ``UnsupportedConfiguration``) so
that nothing is silently ignored: GitRepository and Bucket sources, OCI HelmRepositories,
``valuesFiles`` and ``verify``. ``reconcileStrategy`` only matters for GitRepository and
Bucket sources (Flux ignores it for a HelmRepository), so it is accepted.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controllers.api import object_key
from controllers.artifact import ArtifactError, extract_tarball, fetch_file
from controllers.download import BodyTooLarge, save_body
from controllers.reconcile import Reconciler, Result, RunContext, Step, Watch
from controllers.safeyaml import YAMLLoadError, load
from controllers.tls import system_context
from source.api_v1 import HelmChart, HelmRepository
from source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    FETCH_FAILED,
    STORAGE_OPERATION_FAILED,
    UNSUPPORTED,
    FetchError,
    fetching,
)
from source.helmindex import MAX_INDEX_SIZE, InvalidIndex, load_index
from source.helmrepository import Connection, repository_connection, shown_url
from source.semver import InvalidConstraint, Version, parse_constraints, parse_version
from source.storage import ArtifactStorage
from source.storage_step import reconcile_storage, store_artifact

__all__ = [
    "MAX_CHART_SIZE",
    "ChartVersion",
    "HelmChartReconciler",
    "HelmChartRunState",
    "chart_url",
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
    chart: Path | None = None  # the downloaded chart; None: the artifact already holds it


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
        return [Watch(HelmRepository.info, charts_of_new_index)]

    def new_state(self) -> HelmChartRunState:
        return HelmChartRunState()

    async def finalize(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, KIND, obj.metadata.namespace or "", obj.metadata.name
        )

    async def reconcile_storage(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> Result:
        return await reconcile_storage(self.storage, ctx, obj)

    async def reconcile_source(self, ctx: RunContext[HelmChartRunState], obj: HelmChart) -> Result:
        """Read the HelmRepository and its index, choose the version, download the chart
        unless the artifact holds it already."""
        with fetching(ctx):
            _check_supported(obj)
            repository = await self._repository(ctx, obj)
            index = await self._index(ctx, obj, repository)
            chosen = select_version(index, obj.spec.chart, obj.spec.version)
            ctx.state.chosen = chosen
            ctx.attempted_revision = chosen.version
            if self._holds(obj, chosen):
                self.stats["unchanged"] += 1
                return Result()
            summary = _summary("new", chosen)
            if obj.status.artifact is not None:
                ctx.mark(ARTIFACT_OUTDATED, "True", NEW_CHART, summary)
            await ctx.progress(f"building artifact: {summary}")
            connection = await repository_connection(ctx, repository)
            ctx.state.chart = await self._download(ctx, repository, connection, chosen)
        return Result()

    async def _repository(
        self, ctx: RunContext[HelmChartRunState], obj: HelmChart
    ) -> HelmRepository:
        """The HelmRepository the chart refers to, with an index artifact."""
        name, namespace = obj.spec.source_ref.name, obj.metadata.namespace
        raw = await ctx.read(HelmRepository.info, namespace, name)
        if raw is None:
            raise FetchError(
                f"failed to get source: HelmRepository '{namespace}/{name}' not found",
                SOURCE_UNAVAILABLE,
            )
        repository = HelmRepository.model_validate(raw)
        if repository.spec.type == "oci" or repository.spec.url.startswith("oci://"):
            raise FetchError(
                f"HelmRepository '{name}' is of type 'oci': weir does not pull charts from "
                "OCI Helm repositories yet",
                UNSUPPORTED,
                stalled=True,
            )
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

    def _holds(self, obj: HelmChart, chosen: ChartVersion) -> bool:
        """Whether the artifact is the chosen chart version, built for this generation
        (Flux rebuilds when the generation moved, its ``Force``)."""
        artifact = obj.status.artifact
        return (
            artifact is not None
            and artifact.revision == chosen.version
            and obj.status.observed_chart_name == chosen.name
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
        chosen, chart = ctx.state.chosen, ctx.state.chart
        assert chosen is not None
        summary = _summary("pulled", chosen)
        if chart is not None:
            new = self.storage.new_artifact(
                KIND,
                obj.metadata.namespace or "",
                obj.metadata.name,
                chosen.version,
                f"{chosen.name}-{chosen.version}.tgz",
            )
            stored = await store_artifact(
                ctx, lambda: self.storage.copy_file(new, chart), verb="copy Helm chart"
            )
            previous = obj.status.artifact
            obj.status.artifact = stored
            obj.status.observed_chart_name = chosen.name
            obj.status.observed_values_files = None
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

    if not name:
        raise invalid("no name set for remote chart reference")
    if not _CHART_NAME.fullmatch(name):
        raise invalid(
            f"invalid chart name '{name}': a valid name must be lower case letters and numbers "
            "and MAY be separated with dashes (-), slashes (/) or periods (.)"
        )
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


def _check_supported(obj: HelmChart) -> None:
    spec = obj.spec
    if spec.source_ref.kind != "HelmRepository":
        raise FetchError(
            f"sourceRef kind '{spec.source_ref.kind}': weir builds charts from HelmRepository "
            "sources only; GitRepository and Bucket sources are not supported yet",
            UNSUPPORTED,
            stalled=True,
        )
    if spec.values_files:
        raise FetchError(
            "spec.valuesFiles: weir does not merge values files into charts yet; remove it "
            "and set the values on the HelmRelease",
            UNSUPPORTED,
            stalled=True,
        )
    if spec.verify is not None:
        raise FetchError(
            "spec.verify: weir does not verify chart signatures yet", UNSUPPORTED, stalled=True
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


def _summary(action: str, chosen: ChartVersion) -> str:
    """Flux's Build.Summary: ``pulled 'podinfo' chart with version '6.0.0'``."""
    return f"{action} '{chosen.name}' chart with version '{chosen.version}'"
