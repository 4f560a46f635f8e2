"""``weir create``: sources and Kustomizations from flags, applied or printed (``--export``).

Each command builds the manifest a user would write, checks it against the kind's model
(the same rules as its CRD), then either prints it (``--export``) or applies it with
server-side apply (field manager ``weir``) and waits until the controller reports Ready.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click
from pydantic import ValidationError

from controllers.api import CustomResource
from controllers.kube import APPLY_PATCH, KubeClient, resource_path
from kustomize.api_v1 import Kustomization
from source.api_v1 import Bucket, GitRepository, OCIRepository
from weir.cli.app import CliError, Exit, Session, cluster_command, err_console, main, note
from weir.cli.kinds import find_kind, group_of
from weir.cli.output import ready_of, to_yaml

__all__ = ["apply_and_wait", "create"]

FIELD_MANAGER = "weir"


@group_of(main)
def create() -> None:
    """Create or update sources and Kustomizations, or print them (--export).

    \b
    Examples:
      weir create source git podinfo --url=https://github.com/stefanprodan/podinfo --branch=master
      weir create kustomization podinfo --source=GitRepository/podinfo --path=./kustomize --prune
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


async def apply_and_wait(
    client: KubeClient, manifest: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Server-side apply ``manifest`` and wait until its controller has reconciled this
    generation; raise ``CliError`` when that run ended not Ready."""
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
    revision = kind.revision(obj)
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


async def _create(
    session: Session,
    model: type[CustomResource],
    name: str,
    spec: dict[str, Any],
    export: bool,
) -> None:
    manifest = _checked(model, _manifest(model, name, session.namespace, spec))
    if export:
        click.echo(to_yaml([manifest]), nl=False)
        return
    client = await session.client()
    await apply_and_wait(client, manifest, session.timeout)


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
    await _create(session, GitRepository, name, spec, export)


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
    await _create(session, OCIRepository, name, spec, export)


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
    await _create(session, Bucket, name, spec, export)


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
    await _create(session, Kustomization, name, spec, export)


create.add_aliases("kustomization", ("ks", "kustomizations"))
