"""``weir create``: sources, Kustomizations, HelmReleases, Receivers, Alerts and Providers
from flags, applied or printed (``--export``).

Each command builds the manifest a user would write, checks it against the kind's model
(the same rules as its CRD), then either prints it (``--export``) or applies it with
server-side apply (field manager ``weir``) and waits until the controller reports Ready; an
Alert or a Provider, which no controller reports on, is judged at once (``weir.cli.alerts``),
and a static object (a HelmRepository of type oci) is only applied.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from controllers import safeyaml
from controllers.api import CustomResource
from controllers.kube import APPLY_PATCH, KubeClient, resource_path
from helm.api_v2 import HelmRelease
from kustomize.api_v1 import Kustomization
from notification.api_v1 import RECEIVER_TYPES, EventSourceKind, Receiver
from notification.api_v1beta3 import PROVIDER_TYPES, Alert, Provider
from source.api_v1 import Bucket, GitRepository, HelmRepository, OCIRepository
from weir.cli.app import CliError, Exit, Session, cluster_command, err_console, main, note
from weir.cli.kinds import Kind, find_kind, group_of
from weir.cli.output import ready_of, to_yaml

__all__ = ["EXPORT", "INTERVAL", "apply_and_wait", "create", "create_object", "report_judged"]

FIELD_MANAGER = "weir"


@group_of(main)
def create() -> None:
    """Create or update sources, Kustomizations, HelmReleases, Receivers, Alerts, Providers
    and image automation objects, or print them (--export).

    \b
    Examples:
      weir create source git podinfo --url=https://github.com/stefanprodan/podinfo --branch=master
      weir create kustomization podinfo --source=GitRepository/podinfo --path=./kustomize --prune
      weir create helmrelease podinfo --source=HelmRepository/podinfo --chart=podinfo
      weir create receiver github --type=github --event=push --secret-ref=webhook-token \\
        --resource=GitRepository/podinfo
      weir create image policy podinfo --image-ref=podinfo --select-semver='>=1.0.0'
    """


@group_of(create)
def source() -> None:
    """Create or update a source.

    \b
    Example:
      weir create source git podinfo --url=https://github.com/stefanprodan/podinfo --branch=master
    """


create.add_aliases("source", ("sources",))

EXPORT = click.option("--export", is_flag=True, help="print the manifest instead of applying it.")
INTERVAL = click.option(
    "--interval", default="1m", show_default=True, help="how often to reconcile."
)


def _checked(model: type[CustomResource], manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest``, refused with its first problem if the kind's model rejects it."""
    try:
        model.from_dict(manifest)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"invalid {model.info.kind}: {where}: {first['msg']}", Exit.USAGE) from None
    return manifest


def _manifest(
    model: type[CustomResource], name: str, namespace: str, spec: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": model.info.api_version,
        "kind": model.info.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {key: value for key, value in spec.items() if value not in (None, [], {})},
    }


async def report_judged(client: KubeClient, kind: Kind, obj: dict[str, Any]) -> None:
    """Say whether ``obj``, of a kind without status, is ready; raise ``CliError`` when it is
    not (a Secret the user may not read only leaves it unknown, and is said)."""
    assert kind.judge is not None
    meta = obj["metadata"]
    title = f"{kind.info.kind} {meta['namespace']}/{meta['name']}"
    ((ready, message),) = await kind.judge(client, [obj])
    if ready == "False":
        raise CliError(f"{title}: {message}")
    note(f"{'✔' if ready == 'True' else '?'} {title}: {message}")


async def apply_and_wait(
    client: KubeClient, manifest: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Server-side apply ``manifest`` and wait until its controller has reconciled this
    generation; raise ``CliError`` when that run ended not Ready. A kind without status is
    judged instead (``report_judged``)."""
    kind = find_kind(manifest["kind"])
    assert kind is not None
    meta = manifest["metadata"]
    title = f"{kind.info.kind} {meta['namespace']}/{meta['name']}"
    note(f"► applying {title}")
    path = resource_path(kind.info, meta["namespace"], meta["name"])
    obj = await client.request(
        "PATCH",
        path,
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=manifest,
        content_type=APPLY_PATCH,
    )
    if not kind.reconciled:
        await report_judged(client, kind, obj)
        return obj
    if kind.is_static(obj):
        note(f"✔ {title} applied (static: no controller reconciles it)")
        return obj
    generation = obj["metadata"].get("generation")
    version = str(obj["metadata"]["resourceVersion"])
    with err_console.status(f"waiting for {title} to be reconciled"):
        async with asyncio.timeout(timeout):
            while not _reconciled(obj, generation):
                async for event in client.watch(kind.info, version, namespace=meta["namespace"]):
                    version = str(
                        event.object.get("metadata", {}).get("resourceVersion") or version
                    )
                    if (
                        event.type != "BOOKMARK"
                        and event.object["metadata"]["name"] == meta["name"]
                    ):
                        obj = event.object
                        if _reconciled(obj, generation):
                            break
    ready, message = ready_of(obj)
    if ready != "True":
        raise CliError(f"{title}: {message or 'not ready'}")
    revision = kind.revision_of(obj)
    note(f"✔ {title} is ready" + (f" at revision {revision}" if revision else ""))
    return obj


def _reconciled(obj: dict[str, Any], generation: int | None) -> bool:
    """Whether a run of ``generation`` ended: its Ready condition is for that generation and
    says True or False (a failed run that will be retried counts: its outcome is known)."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            ran = bool(condition.get("observedGeneration") == generation)
            return ran and bool(condition.get("status") != "Unknown")
    return False


async def create_object(
    session: Session,
    model: type[CustomResource],
    name: str,
    spec: dict[str, Any],
    export: bool,
) -> dict[str, Any] | None:
    """Print or apply the object; as it is once ready when applied."""
    manifest = _checked(model, _manifest(model, name, session.namespace, spec))
    if export:
        click.echo(to_yaml([manifest]), nl=False)
        return None
    client = await session.client()
    return await apply_and_wait(client, manifest, session.timeout)


@source.command("git")
@click.argument("name")
@click.option("--url", required=True, help="repository address: https://, http:// or ssh://.")
@click.option("--branch", help="branch to follow (the default when no ref is given: master).")
@click.option("--tag", help="tag to check out.")
@click.option("--tag-semver", help="semver range of tags to follow.")
@click.option("--commit", help="commit SHA to check out.")
@click.option("--ref-name", help="any Git reference (refs/...).")
@INTERVAL
@click.option("--secret-ref", help="Secret with the credentials (weir create secret git).")
@click.option("--ignore-paths", multiple=True, help="paths to leave out (gitignore syntax).")
@EXPORT
@cluster_command
async def git(
    session: Session,
    name: str,
    url: str,
    branch: str | None,
    tag: str | None,
    tag_semver: str | None,
    commit: str | None,
    ref_name: str | None,
    interval: str,
    secret_ref: str | None,
    ignore_paths: tuple[str, ...],
    export: bool,
) -> None:
    """Create or update a GitRepository.

    \b
    Example:
      weir create source git podinfo --url=https://github.com/stefanprodan/podinfo --branch=master
    """
    ref = {"branch": branch, "tag": tag, "semver": tag_semver, "commit": commit, "name": ref_name}
    spec = {
        "url": url,
        "interval": interval,
        "ref": {k: v for k, v in ref.items() if v} or {"branch": "master"},
        "secretRef": {"name": secret_ref} if secret_ref else None,
        "ignore": "\n".join(ignore_paths) or None,
    }
    await create_object(session, GitRepository, name, spec, export)


@source.command("oci")
@click.argument("name")
@click.option("--url", required=True, help="repository address: oci://host/path.")
@click.option("--tag", help="tag to pull (the default when no ref is given: latest).")
@click.option("--tag-semver", help="semver range of tags to follow.")
@click.option("--digest", help="digest to pull (sha256:...).")
@INTERVAL
@click.option("--secret-ref", help="docker-registry Secret with the credentials.")
@click.option("--insecure", is_flag=True, help="plain HTTP to the registry.")
@EXPORT
@cluster_command
async def oci(
    session: Session,
    name: str,
    url: str,
    tag: str | None,
    tag_semver: str | None,
    digest: str | None,
    interval: str,
    secret_ref: str | None,
    insecure: bool,
    export: bool,
) -> None:
    """Create or update an OCIRepository.

    \b
    Example:
      weir create source oci podinfo --url=oci://ghcr.io/stefanprodan/manifests/podinfo --tag=latest
    """
    ref = {"tag": tag, "semver": tag_semver, "digest": digest}
    spec = {
        "url": url,
        "interval": interval,
        "ref": {k: v for k, v in ref.items() if v} or {"tag": "latest"},
        "secretRef": {"name": secret_ref} if secret_ref else None,
        "insecure": insecure or None,
    }
    await create_object(session, OCIRepository, name, spec, export)


@source.command("bucket")
@click.argument("name")
@click.option("--bucket-name", required=True, help="name of the bucket.")
@click.option("--endpoint", required=True, help="host[:port] of the object store.")
@click.option(
    "--provider",
    type=click.Choice(["generic", "aws", "gcp", "azure"]),
    default="generic",
    show_default=True,
)
@click.option("--region", help="region of the bucket.")
@click.option("--prefix", help="only the objects under this prefix.")
@INTERVAL
@click.option("--secret-ref", help="Secret with accesskey and secretkey.")
@click.option("--insecure", is_flag=True, help="plain HTTP to the endpoint.")
@EXPORT
@cluster_command
async def bucket(
    session: Session,
    name: str,
    bucket_name: str,
    endpoint: str,
    provider: str,
    region: str | None,
    prefix: str | None,
    interval: str,
    secret_ref: str | None,
    insecure: bool,
    export: bool,
) -> None:
    """Create or update a Bucket.

    \b
    Example:
      weir create source bucket podinfo --bucket-name=podinfo --endpoint=minio.minio:9000 --insecure
    """
    spec = {
        "bucketName": bucket_name,
        "endpoint": endpoint,
        "provider": provider,
        "region": region,
        "prefix": prefix,
        "interval": interval,
        "secretRef": {"name": secret_ref} if secret_ref else None,
        "insecure": insecure or None,
    }
    await create_object(session, Bucket, name, spec, export)


@source.command("helm")
@click.argument("name")
@click.option(
    "--url",
    required=True,
    help="repository address: https:// or http:// (an index.yaml), or oci://host/path.",
)
@INTERVAL
@click.option(
    "--secret-ref",
    help="Secret with the credentials: username and password, or a docker config for oci.",
)
@click.option(
    "--pass-credentials", is_flag=True, help="send the credentials to every host, not only --url's."
)
@click.option(
    "--oci-provider",
    type=click.Choice(["generic", "aws", "azure", "gcp"]),
    help="how an oci repository authenticates (default generic).",
)
@EXPORT
@cluster_command
async def helm(
    session: Session,
    name: str,
    url: str,
    interval: str,
    secret_ref: str | None,
    pass_credentials: bool,
    oci_provider: str | None,
    export: bool,
) -> None:
    """Create or update a HelmRepository. An oci:// one is of type oci: static, no index to
    fetch (its HelmCharts pull from the registry), so it is applied without waiting.

    \b
    Examples:
      weir create source helm podinfo --url=https://stefanprodan.github.io/podinfo
      weir create source helm podinfo --url=oci://ghcr.io/stefanprodan/charts
    """
    scheme, _, _ = url.partition("://")
    if scheme not in ("http", "https", "oci"):
        raise CliError(f"--url scheme {scheme!r} not supported: http, https or oci", Exit.USAGE)
    if oci_provider and scheme != "oci":
        raise CliError("--oci-provider is for oci:// repositories", Exit.USAGE)
    spec = {
        "url": url,
        "interval": interval,
        "type": "oci" if scheme == "oci" else None,
        "provider": oci_provider,
        "secretRef": {"name": secret_ref} if secret_ref else None,
        "passCredentials": pass_credentials or None,
    }
    await create_object(session, HelmRepository, name, spec, export)


_SOURCE_KINDS = {"git": "GitRepository", "oci": "OCIRepository", "bucket": "Bucket"}


def _source_ref(text: str) -> dict[str, str]:
    """``[Kind/]name[.namespace]``, as flux's ``--source`` takes it; GitRepository by default."""
    kind, slash, rest = text.rpartition("/")
    kind = _SOURCE_KINDS.get(kind.lower(), kind) if slash else "GitRepository"
    if kind not in _SOURCE_KINDS.values():
        raise CliError(
            f"--source kind must be one of {', '.join(_SOURCE_KINDS.values())}", Exit.USAGE
        )
    name, dot, namespace = rest.partition(".")
    ref = {"kind": kind, "name": name}
    if dot:
        ref["namespace"] = namespace
    return ref


@create.command("kustomization")
@click.argument("name")
@click.option(
    "--source",
    "source_",
    required=True,
    metavar="[KIND/]NAME[.NAMESPACE]",
    help="the source to apply from (GitRepository when no kind is given).",
)
@click.option("--path", default="./", show_default=True, help="directory in the source.")
@click.option("--prune", is_flag=True, help="delete what leaves the source.")
@INTERVAL
@click.option("--target-namespace", help="namespace to put every namespaced object in.")
@click.option(
    "--depends-on", multiple=True, metavar="[NAMESPACE/]NAME", help="Kustomizations to wait for."
)
@click.option("--wait", "wait_", is_flag=True, help="wait until every applied object is healthy.")
@click.option("--service-account", help="ServiceAccount to apply as.")
@click.option("--health-check-timeout", help="how long a run may take (default: interval).")
@EXPORT
@cluster_command
async def kustomization(
    session: Session,
    name: str,
    source_: str,
    path: str,
    prune: bool,
    interval: str,
    target_namespace: str | None,
    depends_on: tuple[str, ...],
    wait_: bool,
    service_account: str | None,
    health_check_timeout: str | None,
    export: bool,
) -> None:
    """Create or update a Kustomization.

    \b
    Example:
      weir create kustomization podinfo --source=GitRepository/podinfo --path=./kustomize --prune
    """
    dependencies = []
    for text in depends_on:
        namespace, slash, dependency = text.rpartition("/")
        dependencies.append({"name": dependency, **({"namespace": namespace} if slash else {})})
    spec = {
        "sourceRef": _source_ref(source_),
        "path": path,
        "prune": prune,
        "interval": interval,
        "targetNamespace": target_namespace,
        "dependsOn": dependencies,
        "wait": wait_ or None,
        "serviceAccountName": service_account,
        "timeout": health_check_timeout,
    }
    await create_object(session, Kustomization, name, spec, export)


create.add_aliases("kustomization", ("ks", "kustomizations"))


def _kind_name_namespace(text: str, flag: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """``Kind/name[.namespace]`` with ``Kind`` one of ``kinds`` in any case, as flux parses
    ``--source`` and ``--chart-ref`` of ``create helmrelease``."""
    kind, slash, rest = text.partition("/")
    canonical = {k.lower(): k for k in kinds}.get(kind.lower())
    name, dot, namespace = rest.partition(".")
    if not slash or not name or canonical is None:
        raise CliError(
            f"{flag} {text!r}: expected KIND/NAME[.NAMESPACE], KIND one of {', '.join(kinds)}",
            Exit.USAGE,
        )
    return {"kind": canonical, "name": name, **({"namespace": namespace} if dot else {})}


def _merged(into: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` merged into ``into``: maps key by key, anything else replaced (flux's merge
    of ``--values`` files)."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merged(into[key], value)
        else:
            into[key] = value
    return into


def _values_files(paths: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in paths:
        try:
            document = safeyaml.load(Path(path).read_bytes(), what=f"'{path}'")
        except (OSError, safeyaml.YAMLLoadError) as err:
            raise CliError(f"--values {path}: {err}", Exit.USAGE) from None
        if document is None:
            continue
        if not isinstance(document, dict):
            raise CliError(f"--values {path}: not a map of values", Exit.USAGE)
        _merged(values, document)
    return values


@create.command("helmrelease")
@click.argument("name")
@click.option(
    "--source",
    "source_",
    metavar="KIND/NAME[.NAMESPACE]",
    help="where the chart is: HelmRepository, GitRepository or Bucket.",
)
@click.option("--chart", help="chart name (HelmRepository) or path (GitRepository, Bucket).")
@click.option("--chart-version", help="semver range of chart versions (HelmRepository).")
@click.option(
    "--chart-ref",
    metavar="KIND/NAME[.NAMESPACE]",
    help="a chart ready to use instead of --source and --chart: OCIRepository or HelmChart.",
)
@click.option("--release-name", help="Helm's release name (default: [TARGET-NAMESPACE-]NAME).")
@INTERVAL
@click.option("--target-namespace", help="namespace to install into (default: the object's).")
@click.option(
    "--create-target-namespace", is_flag=True, help="create the target namespace if missing."
)
@click.option(
    "--storage-namespace", help="namespace Helm stores the release in (default: the target)."
)
@click.option(
    "--values",
    "values_files",
    multiple=True,
    metavar="FILE",
    help="local values YAML, put inline (spec.values). Repeat it or separate with commas; "
    "later files win.",
)
@click.option(
    "--values-from",
    multiple=True,
    metavar="KIND/NAME",
    help="Secret or ConfigMap whose values.yaml key holds values. Repeat it or separate "
    "with commas.",
)
@click.option(
    "--depends-on", multiple=True, metavar="[NAMESPACE/]NAME", help="HelmReleases to wait for."
)
@click.option("--service-account", help="ServiceAccount to release as.")
@click.option(
    "--reconcile-strategy",
    type=click.Choice(["ChartVersion", "Revision"]),
    default="ChartVersion",
    show_default=True,
    help="when the HelmChart gets a new artifact: a new chart version, or any new revision.",
)
@click.option("--chart-interval", help="how often the HelmChart checks (default: --interval).")
@click.option(
    "--crds",
    type=click.Choice(["Skip", "Create", "CreateReplace"]),
    help="the chart's CRDs on upgrade (install creates them).",
)
@click.option(
    "--kubeconfig-secret-ref", help="Secret with a kubeconfig: release into that cluster."
)
@EXPORT
@cluster_command
async def helmrelease(
    session: Session,
    name: str,
    source_: str | None,
    chart: str | None,
    chart_version: str | None,
    chart_ref: str | None,
    release_name: str | None,
    interval: str,
    target_namespace: str | None,
    create_target_namespace: bool,
    storage_namespace: str | None,
    values_files: tuple[str, ...],
    values_from: tuple[str, ...],
    depends_on: tuple[str, ...],
    service_account: str | None,
    reconcile_strategy: str,
    chart_interval: str | None,
    crds: str | None,
    kubeconfig_secret_ref: str | None,
    export: bool,
) -> None:
    """Create or update a HelmRelease: a chart installed and upgraded with values.

    \b
    Examples:
      weir create helmrelease podinfo --source=HelmRepository/podinfo --chart=podinfo \\
        --chart-version='>=6.0.0' --values=./values.yaml --values-from=Secret/podinfo-values
      weir create helmrelease podinfo --chart-ref=OCIRepository/podinfo.flux-system \\
        --target-namespace=apps --create-target-namespace
    """
    if bool(chart) == bool(chart_ref):
        raise CliError("give --chart (with --source) or --chart-ref", Exit.USAGE)
    template: dict[str, Any] | None = None
    if chart:
        if not source_:
            raise CliError("--chart needs --source", Exit.USAGE)
        chart_spec = {
            "chart": chart,
            "version": chart_version,
            "sourceRef": _kind_name_namespace(
                source_, "--source", ("HelmRepository", "GitRepository", "Bucket")
            ),
            "reconcileStrategy": reconcile_strategy,
            "interval": chart_interval,
        }
        template = {"spec": {k: v for k, v in chart_spec.items() if v}}
    elif source_ or chart_version:
        raise CliError("--source and --chart-version go with --chart, not --chart-ref", Exit.USAGE)
    dependencies = []
    for text in _split(depends_on):
        namespace, slash, dependency = text.rpartition("/")
        dependencies.append({"name": dependency, **({"namespace": namespace} if slash else {})})
    install = {
        "createNamespace": create_target_namespace or None,
        "crds": "Create" if crds else None,
    }
    spec = {
        "releaseName": release_name,
        "interval": interval,
        "chart": template,
        "chartRef": (
            _kind_name_namespace(chart_ref, "--chart-ref", ("OCIRepository", "HelmChart"))
            if chart_ref
            else None
        ),
        "targetNamespace": target_namespace,
        # As flux: the release is stored where it is installed unless told otherwise.
        "storageNamespace": storage_namespace or target_namespace,
        "install": {k: v for k, v in install.items() if v},
        "upgrade": {"crds": crds} if crds else None,
        "dependsOn": dependencies,
        "serviceAccountName": service_account,
        "kubeConfig": (
            {"secretRef": {"name": kubeconfig_secret_ref}} if kubeconfig_secret_ref else None
        ),
        "values": _values_files(_split(values_files)),
        "valuesFrom": [
            _kind_name_namespace(text, "--values-from", ("Secret", "ConfigMap"))
            for text in _split(values_from)
        ],
    }
    await create_object(session, HelmRelease, name, spec, export)


create.add_aliases("helmrelease", ("hr", "helmreleases"))


# The kinds a Receiver may name and an Alert may watch, by their names in any case.
_EVENT_SOURCE_KINDS = {kind.lower(): kind for kind in EventSourceKind.__args__}  # type: ignore[attr-defined]


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeated values, each of which may list several separated by commas (as flux takes
    them)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _object_ref(text: str, flag: str, *, with_namespace: bool) -> dict[str, str]:
    """``Kind/name`` (and ``.namespace`` after the last dot when ``with_namespace``), as flux
    parses ``--resource`` and ``--event-source``; the kind in any case, the name may be ``*``."""
    kind, slash, name = text.partition("/")
    canonical = _EVENT_SOURCE_KINDS.get(kind.lower())
    if not slash or not name or canonical is None:
        kinds = ", ".join(_EVENT_SOURCE_KINDS.values())
        raise CliError(f"{flag} {text!r}: expected KIND/NAME, KIND one of {kinds}", Exit.USAGE)
    ref = {"kind": canonical, "name": name}
    if with_namespace and "." in name:
        ref["name"], _, ref["namespace"] = name.rpartition(".")
    return ref


# generic-oidc Receivers need oidcProviders, a list of CEL rules: a manifest says them better.
_RECEIVER_FLAG_TYPES = [kind for kind in RECEIVER_TYPES if kind != "generic-oidc"]


@create.command("receiver")
@click.argument("name")
@click.option(
    "--type",
    "type_",
    required=True,
    type=click.Choice(_RECEIVER_FLAG_TYPES),
    metavar="TYPE",
    help=f"who sends the webhooks, one of {', '.join(_RECEIVER_FLAG_TYPES)}.",
)
@click.option(
    "--event",
    "events",
    multiple=True,
    help="event type to act on (push for GitHub, 'Push Hook' for GitLab); all when none. "
    "Repeat it or separate with commas.",
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    metavar="KIND/NAME",
    help="object to reconcile when a webhook comes (at least one). Repeat it or separate with "
    "commas.",
)
@click.option(
    "--secret-ref",
    required=True,
    help="Secret whose 'token' signs the webhooks and makes the hook path.",
)
@EXPORT
@cluster_command
async def receiver(
    session: Session,
    name: str,
    type_: str,
    events: tuple[str, ...],
    resources: tuple[str, ...],
    secret_ref: str,
    export: bool,
) -> None:
    """Create or update a Receiver: webhooks that reconcile objects at once.

    Once ready, its webhook path is printed: the receiver server's address plus this path is
    the URL to give the Git host (weir trigger receiver posts to it too).

    \b
    Example:
      weir create receiver github --type=github --event=ping,push --secret-ref=webhook-token \\
        --resource=GitRepository/podinfo
    """
    targets = [_object_ref(text, "--resource", with_namespace=False) for text in _split(resources)]
    if not targets:
        raise CliError("at least one --resource is required", Exit.USAGE)
    spec = {
        "type": type_,
        "events": _split(events),
        "resources": targets,
        "secretRef": {"name": secret_ref},
    }
    obj = await create_object(session, Receiver, name, spec, export)
    path = ((obj or {}).get("status") or {}).get("webhookPath")
    if path:
        note(f"✔ webhook path: {path}")


@create.command("alert")
@click.argument("name")
@click.option("--provider-ref", required=True, help="the Provider alerts are sent through.")
@click.option(
    "--event-source",
    "event_sources",
    multiple=True,
    metavar="KIND/NAME[.NAMESPACE]",
    help="objects whose events are sent (NAME may be *). Repeat it or separate with commas.",
)
@click.option(
    "--event-severity",
    type=click.Choice(["info", "error"]),
    help="info sends every event, error only errors (default info).",
)
@EXPORT
@cluster_command
async def alert(
    session: Session,
    name: str,
    provider_ref: str,
    event_sources: tuple[str, ...],
    event_severity: str | None,
    export: bool,
) -> None:
    """Create or update an Alert: which events go to a Provider.

    \b
    Example:
      weir create alert apps --provider-ref=slack --event-source='Kustomization/*' \\
        --event-severity=error
    """
    sources = [
        _object_ref(text, "--event-source", with_namespace=True) for text in _split(event_sources)
    ]
    if not sources:
        raise CliError("at least one --event-source is required", Exit.USAGE)
    spec = {
        "providerRef": {"name": provider_ref},
        "eventSeverity": event_severity,
        "eventSources": sources,
    }
    await create_object(session, Alert, name, spec, export)


@create.command("alert-provider")
@click.argument("name")
@click.option(
    "--type",
    "type_",
    required=True,
    type=click.Choice(PROVIDER_TYPES),
    metavar="TYPE",
    help="the service alerts go to: slack, msteams, discord, generic, github, gitea, ... "
    "(weir get alert-providers says whether weir sends to it).",
)
@click.option("--channel", help="channel to post to, for chat services.")
@click.option("--username", help="name to post as.")
@click.option(
    "--address",
    help="where alerts go: a webhook URL, or a repository URL for commit statuses.",
)
@click.option(
    "--secret-ref",
    help="Secret with the credentials: 'token', 'address' (which wins over --address), 'headers'.",
)
@EXPORT
@cluster_command
async def alert_provider(
    session: Session,
    name: str,
    type_: str,
    channel: str | None,
    username: str | None,
    address: str | None,
    secret_ref: str | None,
    export: bool,
) -> None:
    """Create or update a Provider: a chat service, a webhook or a Git host's commit statuses.

    \b
    Example:
      weir create alert-provider slack --type=slack --channel=general --secret-ref=slack-url
    """
    spec = {
        "type": type_,
        "channel": channel,
        "username": username,
        "address": address,
        "secretRef": {"name": secret_ref} if secret_ref else None,
    }
    await create_object(session, Provider, name, spec, export)


create.add_aliases("alert-provider", ("alert-providers",))
create.add_aliases("receiver", ("receivers",))
create.add_aliases("alert", ("alerts",))
