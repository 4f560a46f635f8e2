"""Charts in an OCI registry, for a HelmChart whose HelmRepository is of ``type: oci``.

As Flux's ``OCIChartRepository``: the chart ``<name>`` lives in the repository
``<HelmRepository URL>/<name>``; an exact SemVer version is pulled by its tag without listing
tags, anything else is a range matched against the repository's tags (an exact tag first,
then the highest version the range allows; empty or ``*``: the highest stable one). Helm
stores ``+`` of a version as ``_`` in a tag (tags may not hold ``+``), so tags are read back
with ``_`` as ``+``. The chart is the manifest's layer of media type
``application/vnd.cncf.helm.chart.content.v1.tar+gzip``.

Pulls go through the source controller's own registry client (:mod:`source.oci`), with the
HelmRepository's settings: ``secretRef`` (a docker config or ``username``/``password``),
``certSecretRef`` (CA and client certificate), ``insecure`` (plain HTTP), ``timeout``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controllers.oci.client import RegistryClient
from controllers.oci.credentials import Credentials, credentials_from_secret, tls_context
from controllers.oci.errors import AuthenticationError, InvalidReference, OCIError
from controllers.oci.manifest import select_layer, select_manifest
from controllers.oci.reference import Repository, parse_repository
from controllers.reconcile import RunContext
from controllers.secrets import SecretError, read_secret
from controllers.semver import InvalidConstraint, parse_constraints, parse_version
from source.api_v1 import HelmRepository
from source.conditions import AUTH_FAILED, UNSUPPORTED, URL_INVALID, FetchError

__all__ = [
    "HELM_CHART_CONTENT",
    "OCIChart",
    "chart_tag",
    "pull_oci_chart",
    "registry_client",
    "resolve_chart",
    "select_tag",
]

HELM_CHART_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
"""The media type of the layer that holds a chart pushed by ``helm push``."""

# Flux's reasons for this kind, as in source.helmchart.
CHART_PULL_ERROR = "ChartPullError"
# SemVer 2.0 exactly (Flux's version.ParseVersion is Masterminds' StrictNewVersion).
_NUMBER = r"(?:0|[1-9][0-9]*)"
_IDENTIFIERS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_STRICT_VERSION = re.compile(
    rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-{_IDENTIFIERS})?(?:\+{_IDENTIFIERS})?"
)


@dataclass(frozen=True)
class OCIChart:
    """The chart version chosen in a registry: its repository and the tag that holds it."""

    repository: Repository
    name: str
    version: str

    @property
    def tag(self) -> str:
        return chart_tag(self.version)

    @property
    def url(self) -> str:
        return f"oci://{self.repository}:{self.tag}"


def chart_tag(version: str) -> str:
    """The tag Helm pushes ``version`` as: ``+`` (not allowed in a tag) written ``_``."""
    return version.replace("+", "_")


async def registry_client(
    ctx: RunContext[Any], repository: HelmRepository, name: str
) -> RegistryClient:
    """A client for the registry repository of chart ``name`` in the OCI HelmRepository,
    with the HelmRepository's credentials and TLS settings; use it with ``async with``."""
    try:
        base = parse_repository(repository.spec.url.rstrip("/"))
        target = parse_repository(
            f"oci://{base.host}/{base.name}/{name}", insecure=bool(repository.spec.insecure)
        )
    except InvalidReference as err:
        raise FetchError(
            f"invalid OCI registry URL '{repository.spec.url}': {err.message}",
            URL_INVALID,
            stalled=True,
        ) from None
    spec, namespace = repository.spec, repository.metadata.namespace or ""
    # As in Flux, a Secret's credentials win over the provider's.
    if spec.provider not in (None, "generic") and spec.secret_ref is None:
        raise FetchError(
            f"failed to get credential from {spec.provider}: cloud provider authentication "
            "is not supported yet; use provider 'generic' with spec.secretRef",
            UNSUPPORTED,
            stalled=True,
        )
    credentials: Credentials | None = None
    try:
        if spec.secret_ref is not None:
            data = await read_secret(ctx.client, namespace, spec.secret_ref.name)
            credentials = credentials_from_secret(data, target.host, data.ref)
        tls = None
        if spec.cert_secret_ref is not None:
            data = await read_secret(ctx.client, namespace, spec.cert_secret_ref.name)
            tls = await asyncio.to_thread(tls_context, data, data.ref)
    except (SecretError, OCIError) as err:
        text = err.message if isinstance(err, OCIError) else str(err)
        raise FetchError(f"failed to get credential: {text}", AUTH_FAILED) from None
    return RegistryClient(target, credentials, tls=tls, timeout=repository.timeout_seconds)


async def resolve_chart(client: RegistryClient, name: str, wanted: str, timeout: float) -> OCIChart:
    """The version of chart ``name`` that ``wanted`` selects in the client's repository."""
    if _STRICT_VERSION.fullmatch(wanted):
        # Flux's shortcut: an exact version is its tag, no listing of tags.
        return OCIChart(client.repository, name, wanted)
    try:
        async with asyncio.timeout(timeout):
            tags = [tag.replace("_", "+") for tag in await client.tags()]
    except (OCIError, TimeoutError) as err:
        raise _pull_error(
            f"failed to get chart version for remote reference: could not get tags for '{name}'",
            err,
        ) from None
    if not tags:
        raise FetchError(
            "chart pull error: failed to get chart version for remote reference: unable to "
            f"locate any tags in provided repository: {name}",
            CHART_PULL_ERROR,
        )
    return OCIChart(client.repository, name, select_tag(tags, wanted))


def select_tag(tags: list[str], wanted: str) -> str:
    """Flux's ``getLastMatchingVersionOrConstraint``: ``wanted`` itself when it is a tag, else
    the highest version among ``tags`` that the range allows (empty or ``*``: the highest
    stable one). None found is a :class:`FetchError` that is retried, as in Flux: the
    version may yet be pushed."""
    if wanted and wanted in tags:
        return wanted
    prefix = "chart pull error: failed to get chart version for remote reference: "
    try:
        constraints = parse_constraints(wanted if wanted and wanted != "*" else "*")
    except InvalidConstraint as err:
        raise FetchError(prefix + str(err), CHART_PULL_ERROR) from None
    best = None
    for tag in tags:
        version = parse_version(tag)
        if version is None or not constraints.check(version):
            continue
        if best is None or version.compare(best[0]) > 0:
            best = (version, tag)
    if best is None:
        raise FetchError(
            "chart pull error: failed to get chart version for remote reference: could not "
            f"locate a version matching provided version string {wanted}",
            CHART_PULL_ERROR,
        )
    return best[1]


async def pull_oci_chart(
    client: RegistryClient, chart: OCIChart, dest: Path, max_size: int, timeout: float
) -> None:
    """Download the chart layer of ``chart`` to ``dest``, at most ``max_size`` bytes."""
    what = f"failed to download chart for remote reference: failed to get '{chart.url}'"
    try:
        async with asyncio.timeout(timeout):
            manifest = await client.manifest(chart.tag)
            if manifest.is_index:
                manifest = await client.manifest(select_manifest(manifest).digest)
            layer = select_layer(manifest, HELM_CHART_CONTENT)
            await client.fetch_blob(layer, dest, max_size)
    except (OCIError, TimeoutError) as err:
        raise _pull_error(what, err) from None


def _pull_error(what: str, err: Exception) -> FetchError:
    if isinstance(err, TimeoutError):
        return FetchError(f"chart pull error: {what}: timed out", CHART_PULL_ERROR)
    assert isinstance(err, OCIError)
    reason = AUTH_FAILED if isinstance(err, AuthenticationError) else CHART_PULL_ERROR
    if reason == AUTH_FAILED:
        return FetchError(
            f"failed to authenticate with the Helm repository: {what}: {err.message}", reason
        )
    return FetchError(f"chart pull error: {what}: {err.message}", reason)
