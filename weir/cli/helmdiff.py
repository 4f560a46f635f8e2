"""``weir diff helmrelease``: what the next upgrade of a HelmRelease would change in the cluster.

Flux has no such command. The steps are the helm controller's, with nothing written:

1. the chart: the artifact of the HelmChart made from ``spec.chart`` (``<ns>-<name>`` in the
   source's namespace) or of the ``chartRef`` target (an OCIRepository's chart getting the
   digest in its version, as the controller does), downloaded and its digest checked;
2. the values, composed as the controller composes them (``helm.values.compose_values``);
3. Helm's own ``--dry-run=server`` upgrade (install when no release is stored), post-rendered
   as the controller post-renders (origin labels, ``commonMetadata``, ``postRenderers``), in a
   child process (:mod:`weir.cli.helmrender` says why);
4. each rendered object dry-run with server-side apply as ``helm-controller`` and compared with
   the live one (``helm.drift.detect``), ``driftDetection.ignore`` rules honoured.

Output as ``weir diff kustomization``: ``► Kind/namespace/name created``, ``drifted`` with a
unified diff (server fields left out, Secret values masked), ``skipped`` (drift detection
disabled on the object, or ignored whole), and ``deleted`` for what the stored release has and
the new one does not (and that still exists, without ``helm.sh/resource-policy: keep``).
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from controllers.api import ResourceInfo
from controllers.artifact import ArtifactError, fetch_file
from controllers.discovery import RestMapper, UnknownKind
from controllers.jsondiff import IgnoreRules, InvalidRule, remove_pointers
from controllers.kube import KubeClient, NotFound
from controllers.safeyaml import YAMLLoadError
from helm.api_v2 import HelmRelease
from helm.chart import (
    HELM_CHART,
    OCI_REPOSITORY,
    ChartMutateError,
    ChartNotReady,
    InvalidChart,
    artifact_of,
    chart_metadata,
    helm_chart_template,
    oci_chart_version,
    set_chart_version,
)
from helm.drift import DriftReport, DriftType, compile_ignore_rules, detect, release_objects
from helm.values import ValuesError, compose_values
from weir.cli.app import CliError, Exit, Session, cluster_command, note
from weir.cli.diff import diff, print_line, print_unified_diff
from weir.cli.helmrender import RenderError, Rendering, render_release

__all__ = ["diff_helmrelease"]

# The source controller stores no chart bigger (Flux's default chart size limit).
MAX_CHART_SIZE = 10 * 1024 * 1024
# Helm leaves an object with this annotation in place when the release no longer has it.
_RESOURCE_POLICY = "helm.sh/resource-policy"


@diff.command("helmrelease")
@click.argument("name")
@click.option(
    "--source-addr",
    metavar="URL",
    default=None,
    help="the source controller's artifact server as this machine reaches it, e.g. "
    "http://127.0.0.1:9090 after `kubectl -n flux-system port-forward svc/source-controller "
    "9090:80` (default: the artifact URL the source's status gives).",
)
@cluster_command
async def diff_helmrelease(session: Session, name: str, source_addr: str | None) -> None:
    """Show what upgrading HelmRelease NAME to its pending chart and values would change:
    Helm renders the upgrade (install if no release is stored) with a dry run, and every
    object is dry-run with server-side apply as the helm controller. Prints what would be
    created, what drifted (with a diff) and what the release would delete. Nothing is written.

    Exit codes: 0 no change, 1 changes, more than 1 an error.

    \b
    Examples:
      weir diff helmrelease podinfo -n apps
      weir diff hr podinfo -n apps --source-addr=http://127.0.0.1:9090
    """
    if session.context:
        raise CliError(
            "--context: weir diff helmrelease uses the kubeconfig's current context (Helm's "
            "library is given the kubeconfig file as it is)",
            Exit.USAGE,
        )
    client = await session.client()
    raw = await client.get(HelmRelease.info, session.namespace, name)
    try:
        obj = HelmRelease.model_validate(raw)
    except ValidationError as err:
        message = f"HelmRelease {session.namespace}/{name} is not valid: {err}"
        raise CliError(message, Exit.USAGE) from None
    title = f"HelmRelease {session.namespace}/{name}"
    if obj.spec.kube_config is not None:
        raise CliError(
            f"{title} releases to another cluster (spec.kubeConfig): weir diff compares with "
            "the cluster of your kubeconfig only",
            Exit.USAGE,
        )
    try:
        ignore = compile_ignore_rules(obj.drift_detection.ignore)
    except InvalidRule as err:
        raise CliError(f"{title}: driftDetection.ignore: {err}", Exit.USAGE) from None

    workdir = Path(tempfile.mkdtemp(prefix="weir-diff-helm-"))
    try:
        async with session.within_timeout():
            chart = await _chart(client, obj, workdir / "chart.tgz", source_addr, session.timeout)
            try:
                values = await compose_values(client, obj)
            except ValuesError as err:
                raise CliError(f"{title}: {err}", Exit.USAGE) from None
            try:
                rendering = await render_release(
                    raw, chart, values, kubeconfig=_kubeconfig_file(session), workdir=workdir
                )
            except RenderError as err:
                message = f"{title}: Helm cannot render the release: {err}"
                raise CliError(message, Exit.USAGE) from None
            note(_what(obj, rendering))
            mapper = RestMapper(client)
            report = await detect(
                client,
                mapper,
                rendering.manifest,
                release_name=obj.helm_release_name,
                release_namespace=obj.release_namespace,
                ignore=ignore,
            )
            changed = _print_report(report, ignore)
            deleted = await _deleted(client, mapper, obj, rendering)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    for subject in deleted:
        print_line(f"► {subject} deleted", "red")
    if report.errors:
        raise CliError(
            "the API server refused the dry-run of: " + "; ".join(report.errors), Exit.USAGE
        )
    if changed or deleted:
        raise CliError("identified at least one change, exiting with non-zero exit code")


diff.add_aliases("helmrelease", ("helmreleases", "hr"))


def _kubeconfig_file(session: Session) -> str:
    """The kubeconfig file Helm is given: ``--kubeconfig``, else the first of $KUBECONFIG (as
    the helm controller takes it), else ``~/.kube/config``; "" in a cluster."""
    if session.kubeconfig:
        return session.kubeconfig
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return listed[0]
    default = Path.home() / ".kube" / "config"
    return str(default) if default.exists() else ""


async def _chart(
    client: KubeClient,
    obj: HelmRelease,
    dest: Path,
    source_addr: str | None,
    timeout: float,
) -> Path:
    """The chart artifact the controller would release, downloaded to ``dest``."""
    info, namespace, name = _chart_source(obj)
    what = f"{info.kind} '{namespace}/{name}'"
    try:
        source = await client.get(info, namespace, name)
    except NotFound:
        raise CliError(f"{what} not found", Exit.NOT_FOUND) from None
    if info == HELM_CHART and obj.spec.chart is not None:
        wanted = helm_chart_template(obj)["spec"]
        live = source.get("spec") or {}
        if any(live.get(key) != value for key, value in wanted.items() if key != "interval"):
            note(
                f"! {what} is not yet as spec.chart describes it (the helm controller updates "
                "it on its next run): the diff uses its current artifact"
            )
    try:
        artifact = artifact_of(source, info.kind)
    except ChartNotReady as err:
        raise CliError(str(err), Exit.NOT_FOUND) from None
    url = str(artifact.get("url", ""))
    if source_addr:
        url = _at_address(url, source_addr)
    try:
        await fetch_file(
            url, str(artifact.get("digest", "")), dest, max_size=MAX_CHART_SIZE, timeout=timeout
        )
        metadata = await asyncio.to_thread(chart_metadata, dest)
        if info == OCI_REPOSITORY:
            # As the controller: the digest in the chart's version (what Helm would record).
            version, _digest = oci_chart_version(metadata.version, str(artifact.get("revision")))
            await asyncio.to_thread(set_chart_version, dest, version)
    except ArtifactError as err:
        hint = "" if source_addr else " (reach the source controller with --source-addr)"
        raise CliError(f"cannot download the chart: {err}{hint}", Exit.CLUSTER) from None
    except (InvalidChart, ChartMutateError) as err:
        raise CliError(f"cannot load the chart: {err}", Exit.USAGE) from None
    return dest


def _chart_source(obj: HelmRelease) -> tuple[ResourceInfo, str, str]:
    """Kind, namespace and name of the chart's source, as the controller finds it."""
    namespace = obj.metadata.namespace or ""
    if obj.spec.chart is not None:
        source_ref = obj.spec.chart.spec.source_ref
        return HELM_CHART, source_ref.namespace or namespace, obj.helm_chart_name
    ref = obj.spec.chart_ref
    assert ref is not None  # the CRD requires chart or chartRef
    kinds = {HELM_CHART.kind: HELM_CHART, OCI_REPOSITORY.kind: OCI_REPOSITORY}
    if ref.kind not in kinds:
        raise CliError(f"chartRef of kind {ref.kind}: not supported by weir yet", Exit.USAGE)
    return kinds[ref.kind], ref.namespace or namespace, ref.name


def _at_address(url: str, address: str) -> str:
    """``url`` with the scheme and host of ``address`` (its path kept)."""
    base = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    parts = urllib.parse.urlsplit(url)
    prefix = base.path.rstrip("/")
    return urllib.parse.urlunsplit((base.scheme, base.netloc, prefix + parts.path, parts.query, ""))


def _what(obj: HelmRelease, rendering: Rendering) -> str:
    release = f"{obj.release_namespace}/{obj.helm_release_name}"
    if rendering.action == "install":
        return f"► release {release} is not installed: the diff is of an install"
    return f"► upgrade of release {release} from revision {rendering.previous_version}"


def _print_report(report: DriftReport, ignore: IgnoreRules) -> bool:
    """Print each created, drifted or skipped object; whether any would change."""
    changed = False
    for drift in report.objects:
        if drift.type == DriftType.CREATE:
            print_line(f"► {drift.subject} created", "green")
            changed = True
        elif drift.type == DriftType.EXCLUDE:
            print_line(f"► {drift.subject} skipped", "yellow")
        elif drift.type == DriftType.UPDATE:
            assert drift.live is not None
            assert drift.dry_run is not None
            # The fields the ignore rules name are no change: left out of both sides.
            paths = ignore.paths_for(drift.desired)
            live, merged = copy.deepcopy(drift.live), copy.deepcopy(drift.dry_run)
            remove_pointers(live, paths)
            remove_pointers(merged, paths)
            print_line(f"► {drift.subject} drifted")
            print_unified_diff(drift.subject, live, merged)
            changed = True
    return changed


async def _deleted(
    client: KubeClient,
    mapper: RestMapper,
    obj: HelmRelease,
    rendering: Rendering,
) -> list[str]:
    """``Kind/namespace/name`` of what the stored release has, the new one does not, and Helm
    would delete: still in the cluster, not kept by ``helm.sh/resource-policy: keep``."""
    if not rendering.previous_manifest:
        return []
    namespace = obj.release_namespace
    try:
        previous = release_objects(rendering.previous_manifest)
        kept = {_key(new, namespace) for new in release_objects(rendering.manifest)}
    except YAMLLoadError as err:
        raise CliError(f"a release manifest cannot be read: {err}") from None
    deleted = []
    for old in previous:
        meta = old.get("metadata") or {}
        if _key(old, namespace) in kept:
            continue
        if (meta.get("annotations") or {}).get(_RESOURCE_POLICY) == "keep":
            continue
        try:
            info = await mapper.resource_for(str(old.get("apiVersion")), str(old.get("kind")))
        except UnknownKind:
            continue  # its kind is gone from the cluster: so is the object
        where = (meta.get("namespace") or namespace) if info.namespaced else None
        if await client.get_or_none(info, where, str(meta.get("name"))) is None:
            continue
        parts = [str(old.get("kind")), *([where] if where else []), str(meta.get("name"))]
        deleted.append("/".join(parts))
    return deleted


def _key(obj: dict[str, Any], default_namespace: str) -> tuple[str, str, str, str]:
    """API group, kind, namespace (``default_namespace`` when unset) and name."""
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    namespace = str(meta.get("namespace") or default_namespace)
    return group, str(obj.get("kind")), namespace, str(meta.get("name"))
