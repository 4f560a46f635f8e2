"""The HelmRelease's chart: the HelmChart made from ``spec.chart``, and its artifact.

The HelmChart is read and written as a plain object (the helm controller never imports the
source controller): applied server-side with the field manager ``helm-controller`` and Flux's
owner labels, deleted when the release goes or turns to ``chartRef``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controllers.api import ResourceInfo, object_key
from controllers.kube import APPLY_PATCH, KubeClient
from controllers.safeyaml import YAMLLoadError, load
from helm.api_v2 import GROUP, HelmRelease

__all__ = [
    "FIELD_MANAGER",
    "HELM_CHART",
    "ChartMetadata",
    "ChartNotReady",
    "InvalidChart",
    "apply_helm_chart",
    "artifact_of",
    "chart_metadata",
    "helm_chart_template",
    "releases_of_changed_chart",
]

FIELD_MANAGER = "helm-controller"
HELM_CHART = ResourceInfo(
    group="source.toolkit.fluxcd.io", version="v1", kind="HelmChart", plural="helmcharts"
)
OWNER_NAME_LABEL = f"{GROUP}/name"
OWNER_NAMESPACE_LABEL = f"{GROUP}/namespace"
# Chart.yaml is a few KiB; anything this big is no chart Helm would load.
_MAX_CHART_YAML = 1024 * 1024


class ChartNotReady(Exception):
    """The HelmChart has no artifact for its current generation yet."""


class InvalidChart(Exception):
    """The chart artifact holds no readable ``Chart.yaml``."""


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


def artifact_of(chart: dict[str, Any]) -> dict[str, Any]:
    """The HelmChart's artifact, if it is Ready with one built for its current generation
    (Flux's ``isSourceReady``); else :class:`ChartNotReady` saying why."""
    meta, status = chart.get("metadata") or {}, chart.get("status") or {}
    key = f"HelmChart '{meta.get('namespace')}/{meta.get('name')}'"
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
