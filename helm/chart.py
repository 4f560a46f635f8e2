"""The HelmRelease's chart: the HelmChart made from ``spec.chart``, the ``chartRef`` source, and
its artifact.

The HelmChart is read and written as a plain object (the helm controller never imports the
source controller): applied server-side with the field manager ``helm-controller`` and Flux's
owner labels, deleted when the release goes or turns to ``chartRef``.

A ``chartRef`` of kind OCIRepository names an OCIRepository whose artifact is the chart itself:
its ``layerSelector`` picks the Helm chart layer
(``application/vnd.cncf.helm.chart.content.v1.tar+gzip``) with ``operation: copy``, so the
source controller stores the packaged chart as it is. As Flux's helm-controller does
(``mutateChartWithSourceRevision``), the chart's version then carries the first 12 hex digits
of the artifact's digest as build metadata (``1.2.0+0123456789ab``): an image pushed again
under the same tag is a new chart version to Helm, so it upgrades. ``oci_chart_version`` is
that rule, ``set_chart_version`` writes the version into the packaged chart before Helm loads
it (Helm's library takes no in-memory change), and the digest itself is
``status.lastAttemptedRevisionDigest`` (and a history snapshot's ``ociDigest``).

Wiring in the reconciler, for ``chartRef.kind == "OCIRepository"``::

    raw = await ctx.read(OCI_REPOSITORY, ref.namespace or obj.metadata.namespace, ref.name)
    artifact = artifact_of(raw)              # ChartNotReady: Waiting, as for a HelmChart
    ... fetch_file(artifact url/digest) and chart_metadata(dest) as for a HelmChart ...
    version, digest = oci_chart_version(metadata.version, artifact["revision"])
                                             # ChartMutateError: ReconcileError, reason
                                             # CHART_MUTATE_ERROR
    set_chart_version(dest, version)         # in a thread
    status.lastAttemptedRevision = version; status.lastAttemptedRevisionDigest = digest
    watches: Watch(OCI_REPOSITORY, releases_of_changed_oci_repository)
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controllers.api import ResourceInfo, object_key
from controllers.kube import APPLY_PATCH, KubeClient
from controllers.safeyaml import YAMLLoadError, load
from helm.api_v2 import GROUP, HelmRelease

__all__ = [
    "CHART_MUTATE_ERROR",
    "FIELD_MANAGER",
    "HELM_CHART",
    "OCI_REPOSITORY",
    "ChartMetadata",
    "ChartMutateError",
    "ChartNotReady",
    "InvalidChart",
    "apply_helm_chart",
    "artifact_of",
    "chart_metadata",
    "helm_chart_template",
    "oci_chart_version",
    "releases_of_changed_chart",
    "releases_of_changed_oci_repository",
    "set_chart_version",
]

FIELD_MANAGER = "helm-controller"
HELM_CHART = ResourceInfo(
    group="source.toolkit.fluxcd.io", version="v1", kind="HelmChart", plural="helmcharts"
)
OCI_REPOSITORY = ResourceInfo(
    group="source.toolkit.fluxcd.io", version="v1", kind="OCIRepository", plural="ocirepositories"
)
# Flux's Ready reason when the chart's version cannot take the artifact's digest.
CHART_MUTATE_ERROR = "ChartMutateError"
OWNER_NAME_LABEL = f"{GROUP}/name"
OWNER_NAMESPACE_LABEL = f"{GROUP}/namespace"
# Chart.yaml is a few KiB; anything this big is no chart Helm would load.
_MAX_CHART_YAML = 1024 * 1024


class ChartNotReady(Exception):
    """The HelmChart has no artifact for its current generation yet."""


class InvalidChart(Exception):
    """The chart artifact holds no readable ``Chart.yaml``."""


class ChartMutateError(Exception):
    """The chart's version cannot carry the OCIRepository's digest (Flux's message)."""


@dataclass(frozen=True)
class ChartMetadata:
    name: str
    version: str


def helm_chart_template(obj: HelmRelease) -> dict[str, Any]:
    """The HelmChart ``spec.chart`` describes (Flux's ``buildHelmChartFromTemplate``)."""
    template = obj.spec.chart
    assert template is not None
    spec = template.spec
    chart_spec: dict[str, Any] = {
        "chart": spec.chart,
        "version": spec.version,
        "sourceRef": {"kind": spec.source_ref.kind, "name": spec.source_ref.name},
        "interval": spec.interval or obj.spec.interval,
        "reconcileStrategy": spec.reconcile_strategy,
    }
    if spec.values_files is not None:
        chart_spec["valuesFiles"] = spec.values_files
    if spec.ignore_missing_values_files is not None:
        chart_spec["ignoreMissingValuesFiles"] = spec.ignore_missing_values_files
    if spec.verify is not None:
        chart_spec["verify"] = spec.verify.to_dict()
    meta = template.metadata
    labels = {
        **((meta.labels if meta else None) or {}),
        OWNER_NAME_LABEL: obj.metadata.name,
        OWNER_NAMESPACE_LABEL: obj.metadata.namespace or "",
    }
    metadata: dict[str, Any] = {
        "name": obj.helm_chart_name,
        "namespace": spec.source_ref.namespace or obj.metadata.namespace,
        "labels": labels,
    }
    if meta is not None and meta.annotations:
        metadata["annotations"] = meta.annotations
    return {
        "apiVersion": HELM_CHART.api_version,
        "kind": HELM_CHART.kind,
        "metadata": metadata,
        "spec": chart_spec,
    }


async def apply_helm_chart(client: KubeClient, desired: dict[str, Any]) -> dict[str, Any]:
    """Create or update the HelmChart, server-side, as the helm controller."""
    meta = desired["metadata"]
    return await client.patch(
        HELM_CHART,
        meta["namespace"],
        meta["name"],
        desired,
        content_type=APPLY_PATCH,
        field_manager=FIELD_MANAGER,
        force=True,
    )


def artifact_of(chart: dict[str, Any], kind: str = HELM_CHART.kind) -> dict[str, Any]:
    """The artifact of the source of ``kind`` (a HelmChart, or ``OCI_REPOSITORY.kind`` for a
    ``chartRef``), if it is Ready with one built for its current generation (Flux's
    ``isSourceReady``); else :class:`ChartNotReady` saying why."""
    meta, status = chart.get("metadata") or {}, chart.get("status") or {}
    key = f"{kind} '{meta.get('namespace')}/{meta.get('name')}'"
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    ready = conditions.get("Ready") or {}
    if meta.get("generation") != status.get("observedGeneration"):
        message = "latest generation of object has not been reconciled"
        if ready.get("status") == "False":
            message = ready.get("message") or message
        raise ChartNotReady(f"{key} is not ready: {message}")
    stalled = conditions.get("Stalled") or {}
    if stalled.get("status") == "True":
        raise ChartNotReady(f"{key} is not ready: {stalled.get('message', '')}")
    artifact = status.get("artifact")
    if not artifact or ready.get("status") != "True":
        raise ChartNotReady(f"{key} is not ready: does not have an artifact")
    return dict(artifact)


def chart_metadata(path: Path) -> ChartMetadata:
    """Name and version from the packaged chart's ``<chart>/Chart.yaml``."""
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    if member.size > _MAX_CHART_YAML:
                        raise InvalidChart("Chart.yaml is too large")
                    handle = archive.extractfile(member)
                    assert handle is not None
                    text = io.TextIOWrapper(handle, encoding="utf-8").read()
                    break
            else:
                raise InvalidChart("no Chart.yaml in the chart artifact")
        data = load(text, what="Chart.yaml")
    except (tarfile.TarError, OSError, UnicodeDecodeError, YAMLLoadError) as err:
        raise InvalidChart(f"cannot read the chart artifact: {err}") from None
    if not isinstance(data, dict) or not data.get("name") or not data.get("version"):
        raise InvalidChart("Chart.yaml has no name or version")
    return ChartMetadata(str(data["name"]), str(data["version"]))


def _chart_state(chart: dict[str, Any] | None) -> tuple[Any, ...]:
    if chart is None:
        return ()
    status = chart.get("status") or {}
    ready = next(
        (c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"),
        None,
    )
    artifact = status.get("artifact") or {}
    return (
        artifact.get("revision"),
        artifact.get("digest"),
        status.get("observedGeneration"),
        ready,
    )


def releases_of_changed_chart(
    old: dict[str, Any] | None, new: dict[str, Any] | None, releases: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the HelmReleases using the HelmChart whose artifact or readiness changed."""
    if new is None or _chart_state(old) == _chart_state(new):
        return []
    meta = new.get("metadata") or {}
    chart_key = f"{meta.get('namespace')}/{meta.get('name')}"
    keys = []
    for release in releases:
        release_meta = release.get("metadata") or {}
        spec, status = release.get("spec") or {}, release.get("status") or {}
        ref = spec.get("chartRef") or {}
        if ref.get("kind") == "HelmChart":
            used = f"{ref.get('namespace') or release_meta.get('namespace')}/{ref.get('name')}"
        else:
            used = status.get("helmChart") or ""
            if spec.get("chart") and not used:
                source = (spec["chart"].get("spec") or {}).get("sourceRef") or {}
                namespace = source.get("namespace") or release_meta.get("namespace")
                used = f"{namespace}/{release_meta.get('namespace')}-{release_meta.get('name')}"
        if used == chart_key:
            keys.append(object_key(release))
    return keys


# chartRef: OCIRepository.

# Masterminds/semver's lenient NewVersion, as Flux parses a chart version and an OCI tag
# (source/semver.py has the same rule; the helm controller may not import the source
# controller).
_SEMVER = re.compile(
    r"^v?(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+))?(?:\.(?P<patch>[0-9]+))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<meta>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# What a chart may hold once decompressed (Helm's own loader allows 100 MiB).
_MAX_CHART_CONTENT = 100 * 1024 * 1024


def _semver(text: str) -> tuple[int, int, int, str] | None:
    """Major, minor, patch and prerelease; build metadata left out (it does not order)."""
    found = _SEMVER.match(text)
    if found is None:
        return None
    return (
        int(found["major"]),
        int(found["minor"] or 0),
        int(found["patch"] or 0),
        found["pre"] or "",
    )


def _digest_prefix(revision: str) -> str:
    _algorithm, sep, hexdigits = revision.partition(":")
    if not sep or ":" in hexdigits or len(hexdigits) < 12:
        raise ChartMutateError(f"invalid artifact revision {revision}")
    return hexdigits[:12]


def oci_chart_version(chart_version: str, revision: str) -> tuple[str, str]:
    """The chart's version with the OCIRepository artifact's digest as build metadata, and that
    digest (Flux's ``mutateChartWithSourceRevision``). ``revision`` is the artifact's:
    ``<tag>@<algorithm>:<hex>``, or ``<algorithm>:<hex>`` for a digest reference. A tag that is
    a version must be the chart's (OCI tags write ``+`` as ``_``); else
    :class:`ChartMutateError`."""
    version = _semver(chart_version)
    if version is None:
        raise ChartMutateError(f"invalid chart version {chart_version}")
    tag, at, digest = revision.partition("@")
    if at:
        tag_version = _semver(tag.replace("_", "+"))
    else:
        tag_version, digest = _semver(revision), revision
    if tag_version is not None and (not at or tag_version != version):
        raise ChartMutateError(
            f"artifact revision {tag} does not match chart version {chart_version}"
        )
    metadata = _digest_prefix(digest)
    major, minor, patch, pre = version
    mutated = f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else "") + f"+{metadata}"
    return mutated, digest


def set_chart_version(path: Path, version: str) -> None:
    """Rewrite the packaged chart at ``path`` with ``version`` in its ``Chart.yaml``, every other
    member copied as it is. Raises :class:`InvalidChart`."""
    rewritten = path.with_name(path.name + ".version")
    try:
        with tarfile.open(path, "r:*") as source, tarfile.open(rewritten, "w:gz") as dest:
            done, total = False, 0
            for member in source:
                total += member.size
                if total > _MAX_CHART_CONTENT:
                    raise InvalidChart("the chart is too large once decompressed")
                parts = member.name.split("/")
                handle = source.extractfile(member) if member.isfile() else None
                if len(parts) == 2 and parts[1] == "Chart.yaml" and handle is not None:
                    if member.size > _MAX_CHART_YAML:
                        raise InvalidChart("Chart.yaml is too large")
                    data = load(handle.read().decode("utf-8"), what="Chart.yaml")
                    if not isinstance(data, Mapping):
                        raise InvalidChart("Chart.yaml is not a mapping")
                    text = yaml.safe_dump({**data, "version": version}, sort_keys=False)
                    body = text.encode("utf-8")
                    member.size = len(body)
                    dest.addfile(member, io.BytesIO(body))
                    done = True
                else:
                    dest.addfile(member, handle)
            if not done:
                raise InvalidChart("no Chart.yaml in the chart artifact")
        os.replace(rewritten, path)
    except (tarfile.TarError, OSError, UnicodeDecodeError, YAMLLoadError) as err:
        raise InvalidChart(f"cannot rewrite the chart's version: {err}") from None
    finally:
        rewritten.unlink(missing_ok=True)


def _artifact_revision(source: Mapping[str, Any] | None) -> str | None:
    artifact = ((source or {}).get("status") or {}).get("artifact") or {}
    revision = artifact.get("revision")
    return str(revision) if revision else None


def _is_true(obj: Mapping[str, Any] | None, type_: str) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or ()
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def releases_of_changed_oci_repository(
    old: dict[str, Any] | None, new: dict[str, Any] | None, releases: Iterable[dict[str, Any]]
) -> list[str]:
    """Keys of the HelmReleases whose ``chartRef`` names the OCIRepository that just got an
    artifact, a new artifact revision or became Ready (Flux's
    ``SourceRevisionChangePredicate``); of them, those Ready or Reconciling that last attempted
    this very digest are left alone (``requestsForOCIRepositoryChange``)."""
    revision = _artifact_revision(new)
    if new is None or revision is None:
        return []
    became_ready = not _is_true(old, "Ready") and _is_true(new, "Ready")
    changed = _artifact_revision(old) != revision or became_ready
    if not changed:
        return []
    digest = revision.partition("@")[2] if "@" in revision else revision
    meta = new.get("metadata") or {}
    repository = (meta.get("namespace"), meta.get("name"))
    keys = []
    for release in releases:
        release_meta = release.get("metadata") or {}
        ref = (release.get("spec") or {}).get("chartRef") or {}
        if ref.get("kind") != OCI_REPOSITORY.kind:
            continue
        if (ref.get("namespace") or release_meta.get("namespace"), ref.get("name")) != repository:
            continue
        status = release.get("status") or {}
        busy = _is_true(release, "Ready") or _is_true(release, "Reconciling")
        if busy and status.get("lastAttemptedRevisionDigest") == digest:
            continue
        keys.append(object_key(release))
    return keys
