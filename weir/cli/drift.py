"""``weir drift export``: the changes made by hand to a Kustomization's objects, as a kustomize
patch to commit under its path (step 3 of a break-glass: "commit the same change to Git").

What counts as a change made by hand is what the next reconcile would undo, nothing else:

1. the fields where the server-side dry-run of the desired object (the build of the
   Kustomization's current artifact, planned as ``weir diff kustomization`` plans it) differs
   from the live object: a value someone changed (an image), a field someone removed;
2. the fields that managers the controller takes over own and the desired object does not
   set (``kubectl*``, ``before-first-apply``, ``kustomize-controller`` Update, as
   ``kustomize.apply.managedfields``): an env var added with ``kubectl patch`` or ``edit``.
   The controller reassigns them to itself and then drops them, unless another manager
   owns them too.

Fields that survive a reconcile are never exported: those of other managers (an HPA's
``replicas``, a mutating webhook's sidecar, a controller's status), the server's metadata,
and every field ``spec.ignore`` names for the object. A Secret's values are never written:
a drifted Secret is reported by name only (commit it encrypted).

Patches come as strategic-merge documents (one per object, only the changed fields, list
elements by their merge key for built-in kinds), or as JSON6902 ``patches:`` entries (one per
object, ops against the built object).
"""

from __future__ import annotations

import copy
import datetime
import json
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from controllers.api import ResourceInfo
from controllers.artifact import ArtifactError, fetch_artifact
from controllers.discovery import RestMapper, UnknownKind
from controllers.inventory import ObjectRef
from controllers.jsondiff import (
    IGNORE_ROOT,
    IgnoreRules,
    InvalidRule,
    compare,
    escape_pointer,
)
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization, KustomizationSpec
from kustomize.apply.changeset import Action
from kustomize.apply.errors import ApplyError
from kustomize.apply.managedfields import LAST_APPLIED_ANNOTATION
from kustomize.apply.manager import FIELD_MANAGER, ApplyOptions, ObjectDiff, ResourceManager
from source.api_v1 import Bucket, GitRepository, OCIRepository
from weir.cli.app import CliError, Exit, Session, cluster_command, main, note
from weir.cli.kinds import group_of
from weir.cli.localbuild import build_locally

__all__ = [
    "Change",
    "ObjectDrift",
    "drift",
    "hand_changes",
    "json6902_ops",
    "kustomization_drift",
    "source_identity",
    "strategic_merge_patch",
]

KS = Kustomization.info
_SOURCES = {info.kind: info for info in (GitRepository.info, OCIRepository.info, Bucket.info)}
_KUSTOMIZATION_NAMES = ("kustomization", "kustomizations", "ks")
# Managers whose fields the controller takes over before applying (Flux's cleanup list).
_TAKEN_OVER = (("kubectl", "Apply"), ("kubectl", "Update"), ("before-first-apply", "Update"))
# The merge keys of the lists of built-in kinds that strategic merge matches by key (the
# ``patchMergeKey`` of Kubernetes' API types); other lists are replaced whole.
_MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ports": ("containerPort", "port"),
}


@dataclass(frozen=True)
class Change:
    """One field changed by hand: its JSON pointer tokens in the live object, and whether it
    was removed (else its live value is the one to keep)."""

    tokens: tuple[str, ...]
    removed: bool = False

    @property
    def pointer(self) -> str:
        return "".join(f"/{escape_pointer(token)}" for token in self.tokens)


@dataclass(frozen=True)
class ObjectDrift:
    """The changes made by hand to one object: the object as built, and as it is live, and its
    name and namespace as the manifests under the Kustomization's path give them (before
    ``targetNamespace``, ``namePrefix`` and ``nameSuffix``: what a patch there must name)."""

    ref: ObjectRef
    desired: dict[str, Any]
    live: dict[str, Any]
    changes: tuple[Change, ...]
    name: str
    namespace: str | None


# Which fields were changed by hand.


def _builtin(obj: Mapping[str, Any]) -> bool:
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def _merge_key(field: str, element: Any) -> str | None:
    """The key a list element of ``field`` is matched by, when it has one."""
    if not isinstance(element, dict):
        return None
    for key in _MERGE_KEYS.get(field, ("name",)):
        if key in element:
            return key
    return None


def _resolve_field(node: Any, key: str) -> tuple[str, Any] | None:
    """The JSON pointer token and the child of ``node`` that a ``fieldsV1`` key names."""
    kind, _, rest = key.partition(":")
    if kind == "f" and isinstance(node, dict):
        return (rest, node[rest]) if rest in node else None
    if not isinstance(node, list):
        return None
    if kind == "i":
        index = int(rest)
        return (str(index), node[index]) if 0 <= index < len(node) else None
    try:
        wanted = json.loads(rest)
    except ValueError:
        return None
    for index, element in enumerate(node):
        if kind == "v" and element == wanted:
            return str(index), element
        if (
            kind == "k"
            and isinstance(element, dict)
            and isinstance(wanted, dict)
            and all(element.get(name) == value for name, value in wanted.items())
        ):
            return str(index), element
    return None


def _members(fields: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The fields a ``fieldsV1`` set owns, as paths of its keys (a node owned as a whole, with
    ``"."``, and its children are all members)."""
    for key, children in fields.items():
        if key == ".":
            continue
        path = (*prefix, key)
        if not children or "." in children:
            yield path
        if children:
            yield from _members(children, path)


def _pointer_in(obj: Any, path: Sequence[str]) -> tuple[str, ...] | None:
    """The pointer tokens of the field ``path`` (``fieldsV1`` keys) names in ``obj``."""
    tokens: list[str] = []
    node = obj
    for key in path:
        found = _resolve_field(node, key)
        if found is None:
            return None
        token, node = found
        tokens.append(token)
    return tuple(tokens)


def _taken_over(entry: Mapping[str, Any]) -> bool:
    name, operation = str(entry.get("manager") or ""), entry.get("operation")
    if entry.get("subresource"):
        return False
    if name == FIELD_MANAGER:
        return operation == "Update"
    return any(name.startswith(prefix) and operation == op for prefix, op in _TAKEN_OVER)


def _exportable(tokens: Sequence[str]) -> bool:
    """Whether a field is the object's own: not status, not the server's metadata, not
    kubectl's last-applied annotation (the controller removes that one anyway)."""
    if not tokens or tokens[0] == "status":
        return False
    if tokens[0] != "metadata":
        return True
    if len(tokens) < 3 or tokens[1] not in ("labels", "annotations"):
        return False
    return tokens[2] != LAST_APPLIED_ANNOTATION


def _dropped_fields(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[Change]:
    """The fields of taken-over managers that the desired object does not set and no other
    manager owns: the controller drops them on its next apply."""
    taken: set[tuple[str, ...]] = set()
    kept: set[tuple[str, ...]] = set()
    for entry in (live.get("metadata") or {}).get("managedFields") or ():
        fields = entry.get("fieldsV1") or {}
        ours = entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
        if _taken_over(entry):
            taken.update(_members(fields))
        elif not ours and not entry.get("subresource"):
            kept.update(_members(fields))
    # A field is kept when another manager owns it or anything below it.
    kept_prefixes = {path[:length] for path in kept for length in range(1, len(path) + 1)}
    dropped: list[tuple[str, ...]] = []
    changes = []
    for path in sorted(taken, key=len):
        if path in kept_prefixes or _pointer_in(desired, path) is not None:
            continue
        if any(path[: len(done)] == done for done in dropped):
            continue  # its parent is dropped as a whole
        tokens = _pointer_in(live, path)
        # Not the whole of metadata.annotations, say: the keys in it are looked at instead.
        if tokens is not None and _exportable(tokens):
            dropped.append(path)
            changes.append(Change(tokens))
    return changes


def _ignored(tokens: Sequence[str], pointers: Sequence[str]) -> bool:
    pointer = "".join(f"/{escape_pointer(token)}" for token in tokens)
    return any(pointer == p or pointer.startswith(f"{p}/") for p in pointers)


def hand_changes(
    desired: Mapping[str, Any],
    live: Mapping[str, Any],
    merged: Mapping[str, Any] | None,
    ignore: IgnoreRules,
) -> tuple[Change, ...]:
    """What the live object has that applying ``desired`` would undo: where the dry-run
    ``merged`` differs from ``live``, and the taken-over fields ``desired`` does not set;
    without the fields ``ignore`` names for the object."""
    # The whole-object pointer "" has no effect on a Kustomization's apply (kustomize.apply.
    # ignore), so it has none here: what apply would revert is exported.
    ignored = [path for path in ignore.paths_for(desired) if path != IGNORE_ROOT]
    found: list[Change] = []
    if merged is not None:
        for op in compare(merged, live):
            tokens = tuple(_split(op.path)) if op.path else ()
            found.append(Change(tokens, removed=op.op == "remove"))
    found.extend(_dropped_fields(desired, live))
    unique: dict[tuple[str, ...], Change] = {}
    for change in found:
        if _exportable(change.tokens) and not _ignored(change.tokens, ignored):
            unique.setdefault(change.tokens, change)
    # A change inside another one is part of it.
    return tuple(
        change
        for change in unique.values()
        if not any(
            other != change.tokens and change.tokens[: len(other)] == other for other in unique
        )
    )


def _split(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


# Writing them as patches.


def _header(drifted: ObjectDrift) -> dict[str, Any]:
    metadata = {"name": drifted.name}
    if drifted.namespace:
        metadata["namespace"] = drifted.namespace
    obj = drifted.live
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": metadata}


def source_identity(spec: KustomizationSpec, obj: Mapping[str, Any]) -> tuple[str, str | None]:
    """The name and namespace of ``obj`` (as applied) in the manifests under the path: the
    overlay's ``namePrefix`` and ``nameSuffix`` taken off; no namespace under a
    ``targetNamespace`` (kustomize then matches a manifest that sets none)."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    prefix, suffix = spec.name_prefix or "", spec.name_suffix or ""
    if prefix and name.startswith(prefix):
        name = name[len(prefix) :]
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    namespace = None if spec.target_namespace else meta.get("namespace") or None
    return name, namespace


def strategic_merge_patch(drifted: ObjectDrift) -> dict[str, Any]:
    """The strategic-merge patch that gives the built object the hand changes: the live value
    of each changed field (``null`` for a removed one); a list element of a built-in kind by
    its merge key, any other list whole."""
    patch = _header(drifted)
    keyed = _builtin(drifted.live)
    for change in drifted.changes:
        _put(patch, drifted.live, change, keyed)
    return patch


def _put(patch: dict[str, Any], live: Any, change: Change, keyed: bool) -> None:
    node, at = patch, live
    tokens = change.tokens
    position = 0
    while position < len(tokens):
        token = tokens[position]
        last = position == len(tokens) - 1
        if last:
            node[token] = None if change.removed else copy.deepcopy(at[token])
            return
        child = at[token]
        if isinstance(child, list):
            element = child[int(tokens[position + 1])]
            key = _merge_key(token, element) if keyed else None
            existing = node.get(token)
            if key is None or (token in node and not isinstance(existing, list)):
                node[token] = copy.deepcopy(child)
                return
            elements: list[dict[str, Any]] = node.setdefault(token, [])
            match = next((e for e in elements if e.get(key) == element[key]), None)
            if match is None:
                match = {key: element[key]}
                elements.append(match)
            if position + 1 == len(tokens) - 1:
                match.update(copy.deepcopy(element))
                return
            node, at = match, element
            position += 2
            continue
        existing = node.get(token)
        if token in node and not isinstance(existing, dict):
            return  # a parent already replaced whole
        node = node.setdefault(token, {})
        at = child
        position += 1


def json6902_ops(drifted: ObjectDrift) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) ops that give the built object the hand changes: ``replace``
    where the build has the field, ``add`` where it does not (a new list element at the end),
    ``remove`` for a field removed by hand. List elements are found by their key."""
    ops: dict[str, dict[str, Any]] = {}
    for change in drifted.changes:
        op = _op(drifted.desired, drifted.live, change)
        if op is not None:
            ops.setdefault(op["path"], op)
    return list(ops.values())


def _op(desired: Any, live: Any, change: Change) -> dict[str, Any] | None:
    path = ""
    built, at = desired, live
    tokens = change.tokens
    for position, token in enumerate(tokens):
        parent = tokens[position - 1] if position else ""
        last = position == len(tokens) - 1
        if isinstance(at, list):
            element = at[int(token)]
            index = _index_in(built, parent, element, int(token))
            if index is None:
                return {"op": "add", "path": f"{path}/-", "value": copy.deepcopy(element)}
            path, built, at = f"{path}/{index}", built[index], element
            continue
        if not isinstance(built, dict) or token not in built:
            if change.removed or token not in at:
                return None  # removed by hand, and the build does not set it either
            value = copy.deepcopy(at[token])
            return {"op": "add", "path": f"{path}/{escape_pointer(token)}", "value": value}
        path = f"{path}/{escape_pointer(token)}"
        if last:
            if change.removed:
                return {"op": "remove", "path": path}
            return {"op": "replace", "path": path, "value": copy.deepcopy(at[token])}
        built, at = built[token], at[token]
    return None


def _index_in(built: Any, field: str, element: Any, index: int) -> int | None:
    """Where the live list element ``element`` (at ``index``) is in the built list."""
    if not isinstance(built, list):
        return None
    key = _merge_key(field, element)
    if key is not None:
        for position, candidate in enumerate(built):
            if isinstance(candidate, dict) and candidate.get(key) == element[key]:
                return position
        return None
    return index if index < len(built) else None


def _target(drifted: ObjectDrift) -> dict[str, str]:
    obj = drifted.live
    group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
    target = {"group": group, "version": version, "kind": str(obj.get("kind") or "")}
    target["name"] = drifted.name
    target["namespace"] = drifted.namespace or ""
    return {key: value for key, value in target.items() if value}


def _dump_all(documents: Sequence[Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)


# The command.


@group_of(main)
def drift() -> None:
    """Work with changes made in the cluster outside GitOps.

    \b
    Example:
      weir drift export kustomization apps --output ./apps/production
    """


@drift.command("export")
@click.argument("kind")
@click.argument("name")
@click.option(
    "--format",
    "patch_format",
    type=click.Choice(["strategic-merge", "json6902"]),
    default="strategic-merge",
    show_default=True,
    help="strategic-merge documents, or JSON6902 patches: entries with their target.",
)
@click.option(
    "--output",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="write weir-drift-<time>.yaml into this directory (the Kustomization's path in your "
    "checkout) and print the patches: entries to add to its kustomization.yaml.",
)
@click.option(
    "--source-addr",
    metavar="URL",
    default=None,
    help="the source controller's artifact server as this machine reaches it (default: the "
    "artifact URL the source's status gives).",
)
@cluster_command
async def export_drift(
    session: Session,
    kind: str,
    name: str,
    patch_format: str,
    output: Path | None,
    source_addr: str | None,
) -> None:
    """Write the changes made by hand to the objects of Kustomization NAME (those its next
    reconcile would undo: see docs/cli.md) as a kustomize patch, against the build of its
    current artifact. Fields of other managers and those spec.ignore names are left out;
    Secret values are never written.

    Exit codes: 0 no drift, 1 drift exported, more than 1 an error.

    \b
    Examples:
      weir drift export kustomization apps -n flux-system
      weir drift export ks apps --format json6902
      weir drift export ks apps --output ./apps/production
    """
    if kind.lower() not in _KUSTOMIZATION_NAMES:
        raise CliError(
            f"weir drift export supports Kustomization only (kustomization, ks), not {kind!r}",
            Exit.USAGE,
        )
    client = await session.client()
    async with session.within_timeout():
        drifted, secrets = await kustomization_drift(
            session, client, session.namespace, name, source_addr
        )
    for secret in secrets:
        note(f"! {secret.subject} drifted: not exported (Secret values are never written)")
    if not drifted and not secrets:
        return
    if drifted:
        _write(drifted, patch_format, output)
    raise CliError(
        f"drift exported for {len(drifted)} objects"
        + (f", {len(secrets)} Secrets not exported" if secrets else "")
        + ", exiting with non-zero exit code"
    )


async def kustomization_drift(
    session: Session, client: KubeClient, namespace: str, name: str, source_addr: str | None
) -> tuple[list[ObjectDrift], list[ObjectRef]]:
    """The hand changes of each object of Kustomization ``namespace/name`` (what its next
    reconcile would undo), and its drifted Secrets (named only); ``CliError`` when they
    cannot be told. ``weir drift export`` writes them; ``weir resume`` lists them."""
    live = await client.get(KS, namespace, name)
    title = f"Kustomization {namespace}/{name}"
    try:
        kustomization = Kustomization.from_dict(live)
    except ValidationError as err:
        raise CliError(f"{title} is not valid: {err.errors()[0]['msg']}", Exit.USAGE) from None
    if kustomization.spec.kube_config is not None:
        raise CliError(
            f"{title} applies to another cluster (spec.kubeConfig): weir reads the drift in "
            "the cluster of your kubeconfig only",
            Exit.USAGE,
        )
    try:
        ignore = IgnoreRules.compile(
            (rule.paths, rule.target) for rule in kustomization.spec.ignore or ()
        )
    except InvalidRule as err:
        raise CliError(f"{title}: spec.ignore: {err}", Exit.USAGE) from None
    return await _drift_of(session, client, kustomization, live, ignore, source_addr)


async def _drift_of(
    session: Session,
    client: KubeClient,
    kustomization: Kustomization,
    live: dict[str, Any],
    ignore: IgnoreRules,
    source_addr: str | None,
) -> tuple[list[ObjectDrift], list[ObjectRef]]:
    """The hand changes of each inventory object, and the inventory's drifted Secrets."""
    meta = live["metadata"]
    inventory = ((live.get("status") or {}).get("inventory") or {}).get("entries") or []
    listed = {ObjectRef.parse(entry["id"]) for entry in inventory}
    workdir = Path(tempfile.mkdtemp(prefix="weir-drift-"))
    try:
        root = workdir / "artifact"
        await _fetch_source(client, kustomization, meta["namespace"], root, source_addr, session)
        path = (root / (kustomization.spec.path or ".").lstrip("/")).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_dir():
            raise CliError(
                f"spec.path {kustomization.spec.path!r} is not a directory of the artifact",
                Exit.USAGE,
            )
        built = await build_locally(
            client,
            meta["name"],
            meta["namespace"],
            path,
            None,
            strict=False,
            timeout=session.timeout,
            root=root,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mapper = RestMapper(client)
    manager = ResourceManager(
        client,
        mapper,
        owner_name=meta["name"],
        owner_namespace=meta["namespace"],
        field_manager=FIELD_MANAGER,
    )
    options = ApplyOptions(force=bool(kustomization.spec.force))
    try:
        planned = await manager.diff(built.objects, options)
    except ApplyError as err:
        raise CliError(err.message, Exit.USAGE) from None
    drifted: list[ObjectDrift] = []
    secrets: list[ObjectRef] = []
    for planned_diff in planned:
        if planned_diff.ref not in listed:
            continue
        current = await _live_of(client, mapper, planned_diff)
        if current is None:
            continue
        changes = hand_changes(planned_diff.desired, current, planned_diff.merged, ignore)
        if not changes:
            continue
        if planned_diff.ref.kind == "Secret" and planned_diff.ref.group == "":
            secrets.append(planned_diff.ref)
            continue
        name, namespace = source_identity(kustomization.spec, current)
        drifted.append(
            ObjectDrift(planned_diff.ref, planned_diff.desired, current, changes, name, namespace)
        )
    return drifted, secrets


async def _live_of(
    client: KubeClient, mapper: RestMapper, planned: ObjectDiff
) -> dict[str, Any] | None:
    """The live object the plan compared with; read for one the plan found unchanged (the
    taken-over fields it would drop are not a difference the dry-run shows)."""
    if planned.action == Action.CONFIGURED:
        return planned.live
    if planned.action != Action.UNCHANGED:
        return None
    desired = planned.desired
    try:
        info: ResourceInfo = await mapper.resource_for(desired["apiVersion"], desired["kind"])
    except UnknownKind:
        return None
    meta = desired["metadata"]
    namespace = meta.get("namespace") if info.namespaced else None
    return await client.get_or_none(info, namespace, meta["name"])


async def _fetch_source(
    client: KubeClient,
    kustomization: Kustomization,
    own_namespace: str,
    dest: Path,
    source_addr: str | None,
    session: Session,
) -> None:
    """The source's current artifact, unpacked into ``dest``."""
    ref = kustomization.spec.source_ref
    namespace = ref.namespace or own_namespace
    timeout = session.timeout
    info = _SOURCES.get(ref.kind)
    if info is None:
        raise CliError(f"sources of kind {ref.kind} are not supported here", Exit.USAGE)
    source = await client.get(info, namespace, ref.name)
    artifact = (source.get("status") or {}).get("artifact")
    if not artifact:
        raise CliError(f"{ref.kind} {namespace}/{ref.name} has no artifact", Exit.NOT_FOUND)
    url = str(artifact.get("url") or "")
    if source_addr:
        url = _at_address(url, source_addr)
    try:
        await fetch_artifact(url, str(artifact.get("digest") or ""), dest, timeout=timeout)
    except ArtifactError as err:
        hint = "" if source_addr else " (reach the source controller with --source-addr)"
        raise CliError(f"cannot download the artifact: {err}{hint}", Exit.CLUSTER) from None


def _at_address(url: str, address: str) -> str:
    """``url`` with the scheme and host of ``address`` (its path kept)."""
    base = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    parts = urllib.parse.urlsplit(url)
    prefix = base.path.rstrip("/")
    return urllib.parse.urlunsplit((base.scheme, base.netloc, prefix + parts.path, parts.query, ""))


def _write(drifted: Sequence[ObjectDrift], patch_format: str, output: Path | None) -> None:
    """The patch on stdout, or in ``output`` with the ``patches:`` entries on stdout."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    if patch_format == "strategic-merge":
        text = _dump_all([strategic_merge_patch(d) for d in drifted])
        if output is None:
            click.echo(text, nl=False)
            return
        file = output / f"weir-drift-{stamp}.yaml"
        _create(file, text)
        note(f"✔ wrote {file}; add it to {output / 'kustomization.yaml'}:")
        click.echo(_dump_all([{"patches": [{"path": file.name}]}]), nl=False)
        return
    entries = []
    for d in drifted:
        ops = yaml.safe_dump(json6902_ops(d), sort_keys=False, default_flow_style=False)
        if output is None:
            entries.append({"target": _target(d), "patch": ops})
            continue
        meta = d.live["metadata"]
        kind = str(d.live["kind"]).lower()
        where = f"{meta['namespace']}-" if meta.get("namespace") else ""
        file = output / f"weir-drift-{stamp}-{kind}-{where}{meta['name']}.yaml"
        _create(file, ops)
        note(f"✔ wrote {file}")
        entries.append({"path": file.name, "target": _target(d)})
    if output is not None:
        note(f"add to {output / 'kustomization.yaml'}:")
    click.echo(_dump_all([{"patches": entries}]), nl=False)


def _create(file: Path, text: str) -> None:
    try:
        with file.open("x", encoding="utf-8") as written:
            written.write(text)
    except OSError as err:
        raise CliError(f"cannot write {file}: {err}", Exit.USAGE) from None
