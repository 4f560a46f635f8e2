"""``weir trace``: from a live object to the Kustomization that applied it and that
Kustomization's source, each layer with its revision and whether it is Ready (``flux trace``).

The Kustomization is found from the ``kustomize.toolkit.fluxcd.io/name`` and ``/namespace``
labels it sets on everything it applies, on the object or, following ``ownerReferences``, on
an owner (a Pod's Deployment).
"""

from __future__ import annotations

from typing import Any

import click

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper, UnknownKind
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from kustomize.apply.annotations import OWNER_GROUP
from weir.cli.app import CliError, Exit, Session, cluster_command, fail, main
from weir.cli.kinds import find_kind
from weir.cli.resources import find_resource, find_resource_by_kind

__all__ = ["trace"]

KS = Kustomization.info
NAME_LABEL = f"{OWNER_GROUP}/name"
NAMESPACE_LABEL = f"{OWNER_GROUP}/namespace"
# How far up ownerReferences to look (Pod → ReplicaSet → Deployment is two).
_MAX_OWNER_DEPTH = 8


def _field(key: str, value: str) -> str:
    return f"{key + ':':<17}{value}"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _condition(obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _ready_fields(obj: dict[str, Any]) -> list[str]:
    """Suspended, Ready, when it last changed, and its message."""
    lines = []
    if (obj.get("spec") or {}).get("suspend"):
        lines.append(_field("Suspended", "True"))
    ready = _condition(obj)
    status = str(ready.get("status") or "Unknown")
    lines.append(_field("Ready", status))
    when = ready.get("lastTransitionTime")
    if when and status == "True":
        lines.append(_field("Status", f"Last reconciled at {when}"))
    elif when and status == "False":
        lines.append(_field("Status", f"Last reconciliation failed at {when}"))
    elif ready:
        lines.append(_field("Status", "Reconciling"))
    if ready.get("message"):
        lines.append(_field("Message", str(ready["message"])))
    return lines


def _problems(title: str, obj: dict[str, Any]) -> list[str]:
    """Why the layer ``obj`` (named ``title``) is not fine, if it is not."""
    if (obj.get("spec") or {}).get("suspend"):
        return [f"{title} is suspended"]
    ready = _condition(obj)
    if ready.get("status") != "True":
        message = ready.get("message") or "no Ready condition yet"
        return [f"{title} is not ready: {message}"]
    generation = _meta(obj).get("generation")
    if generation and (obj.get("status") or {}).get("observedGeneration") != generation:
        return [f"{title} has not reconciled its latest spec yet"]
    return []


def _object_layer(info: ResourceInfo, obj: dict[str, Any]) -> list[str]:
    meta = _meta(obj)
    lines = [_field("Object", f"{info.kind}/{meta.get('name')}")]
    if meta.get("namespace"):
        lines.append(_field("Namespace", str(meta["namespace"])))
    lines.append(_field("Status", "Managed by weir"))
    return lines


def _kustomization_layer(ks: dict[str, Any]) -> list[str]:
    meta, spec = _meta(ks), ks.get("spec") or {}
    lines = [_field("Kustomization", str(meta.get("name"))), _field("Namespace", meta["namespace"])]
    if spec.get("targetNamespace"):
        lines.append(_field("Target", str(spec["targetNamespace"])))
    lines.append(_field("Path", str(spec.get("path") or "./")))
    applied = (ks.get("status") or {}).get("lastAppliedRevision")
    lines.append(_field("Revision", str(applied or "none applied yet")))
    return lines + _ready_fields(ks)


def _reference(spec: dict[str, Any]) -> list[str]:
    """The reference a source follows, as Flux shows it (the one that wins)."""
    ref = spec.get("ref") or {}
    for key, title in (("digest", "Digest"), ("commit", "Commit"), ("semver", "Tag")):
        if ref.get(key):
            return [_field(title, str(ref[key]))]
    if ref.get("tag"):
        return [_field("Tag", str(ref["tag"]))]
    if ref.get("name"):
        return [_field("Reference", str(ref["name"]))]
    if ref.get("branch"):
        return [_field("Branch", str(ref["branch"]))]
    return []


def _source_layer(kind: str, namespace: str, name: str, source: dict[str, Any] | None) -> list[str]:
    lines = [_field(kind, name), _field("Namespace", namespace)]
    if source is None:
        return [*lines, _field("Status", "Not found")]
    spec = source.get("spec") or {}
    if spec.get("url"):
        lines.append(_field("URL", str(spec["url"])))
    if spec.get("endpoint"):
        lines.append(_field("Endpoint", str(spec["endpoint"])))
    if spec.get("bucketName"):
        lines.append(_field("Bucket", str(spec["bucketName"])))
    lines += _reference(spec)
    artifact = (source.get("status") or {}).get("artifact") or {}
    if artifact.get("revision"):
        lines.append(_field("Revision", str(artifact["revision"])))
    return lines + _ready_fields(source)


async def _applied_by(
    client: KubeClient, mapper: RestMapper, obj: dict[str, Any], depth: int = 0
) -> tuple[str, str] | None:
    """(namespace, name) of the Kustomization that applied ``obj`` or its nearest owner."""
    meta = _meta(obj)
    labels = meta.get("labels") or {}
    if labels.get(NAME_LABEL):
        return str(labels.get(NAMESPACE_LABEL) or meta.get("namespace") or ""), labels[NAME_LABEL]
    if depth >= _MAX_OWNER_DEPTH:
        return None
    for reference in meta.get("ownerReferences") or []:
        try:
            info = await mapper.resource_for(str(reference.get("apiVersion")), reference["kind"])
        except UnknownKind:
            continue
        namespace = meta.get("namespace") if info.namespaced else None
        owner = await client.get_or_none(info, namespace, str(reference.get("name")))
        if owner is not None and (found := await _applied_by(client, mapper, owner, depth + 1)):
            return found
    return None


async def _resolve(
    mapper: RestMapper, args: tuple[str, ...], kind: str | None, api_version: str | None
) -> tuple[ResourceInfo, str]:
    """The kind and name the arguments give: ``KIND/NAME``, ``KIND NAME``, or ``NAME`` with
    ``--kind`` and ``--api-version``."""
    if kind or api_version:
        if not (kind and api_version) or len(args) != 1:
            raise CliError("give NAME with both --kind and --api-version", Exit.USAGE)
        return await find_resource_by_kind(mapper, api_version, kind), args[0]
    if len(args) == 1 and "/" in args[0]:
        typed, _, name = args[0].partition("/")
    elif len(args) == 2:
        typed, name = args
    else:
        raise CliError("give the object as KIND/NAME or KIND NAME", Exit.USAGE)
    if not typed or not name:
        raise CliError("give the object as KIND/NAME or KIND NAME", Exit.USAGE)
    return await find_resource(mapper, typed), name


@main.command("trace")
@click.argument("args", nargs=-1, required=True, metavar="KIND/NAME | KIND NAME | NAME")
@click.option("--kind", default=None, help="the object's kind, e.g. Deployment (with NAME).")
@click.option(
    "--api-version", default=None, help="the object's API version, e.g. apps/v1 (with NAME)."
)
@cluster_command
async def trace(
    session: Session, args: tuple[str, ...], kind: str | None, api_version: str | None
) -> None:
    """Show which Kustomization applied an object, from which source and revision, and
    whether each of them is Ready. Exits 1 when one is not.

    \b
    Examples:
      weir trace deployment/podinfo -n apps
      weir trace cm settings -n apps
      weir trace podinfo --kind=Deployment --api-version=apps/v1 -n apps
    """
    client = await session.client()
    mapper = RestMapper(client)
    info, name = await _resolve(mapper, args, kind, api_version)
    namespace = session.namespace if info.namespaced else None
    shown = f"{info.kind} {namespace}/{name}" if namespace else f"{info.kind} {name}"
    obj = await client.get_or_none(info, namespace, name)
    if obj is None:
        raise CliError(f"{shown} not found", Exit.NOT_FOUND)
    owner = await _applied_by(client, mapper, obj)
    if owner is None:
        raise CliError(
            f"{shown} is not managed by weir: no {NAME_LABEL} label on it or its owners",
            Exit.NOT_FOUND,
        )
    ks = await client.get_or_none(KS, *owner)
    ks_title = f"Kustomization {owner[0]}/{owner[1]}"
    if ks is None:
        raise CliError(f"{shown} was applied by {ks_title}, which is gone", Exit.NOT_FOUND)
    layers = [_object_layer(info, obj), _kustomization_layer(ks)]
    problems = _problems(ks_title, ks)

    ref = (ks.get("spec") or {}).get("sourceRef") or {}
    source_kind = find_kind(str(ref.get("kind")))
    source_namespace = str(ref.get("namespace") or owner[0])
    source_title = f"{ref.get('kind')} {source_namespace}/{ref.get('name')}"
    if source_kind is None:
        problems.append(f"{ks_title} reads {source_title}, a kind weir does not serve")
    else:
        source = await client.get_or_none(source_kind.info, source_namespace, ref["name"])
        layers.append(_source_layer(source_kind.info.kind, source_namespace, ref["name"], source))
        problems += _problems(source_title, source) if source else [f"{source_title} not found"]
        applied = (ks.get("status") or {}).get("lastAppliedRevision")
        latest = source_kind.revision_of(source) if source else ""
        if applied and latest and applied != latest:
            problems.append(f"{ks_title} applied {applied}, but {source_title} is at {latest}")

    click.echo("\n---\n".join("\n".join(lines) for lines in layers))
    for problem in problems[:-1]:
        fail(problem)
    if problems:
        raise CliError(problems[-1], Exit.FAILED)
