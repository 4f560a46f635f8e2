"""``weir diff kustomization``: what applying a local directory would change (``flux diff``).

The directory is built as ``weir build`` builds it; then every object is dry-run with
server-side apply exactly as the controller plans an apply (``kustomize.apply``: field manager
``kustomize-controller``, its opt-out annotations, nothing written). Per object:
``► Kind/namespace/name created``, ``drifted`` followed by a unified diff of the live object
and the dry-run result (server fields left out, Secret values masked as Flux masks them), or
``skipped``; and, with ``spec.prune``, ``deleted`` for what the inventory lists and the build no
longer has. Unchanged objects are not shown. The fields ``spec.ignore`` names are neither
compared nor shown (as Flux 2.9).
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
from pathlib import Path
from typing import Any

import click
import yaml
from rich.text import Text

from controllers import inventory
from controllers.discovery import RestMapper
from controllers.jsondiff import InvalidRule
from kustomize.apply.changeset import Action
from kustomize.apply.errors import ApplyError
from kustomize.apply.ignore import compile_ignore_rules
from kustomize.apply.manager import FIELD_MANAGER, ApplyOptions, ObjectDiff, ResourceManager
from weir.cli.app import CliError, Exit, Session, cluster_command, console, main
from weir.cli.kinds import group_of
from weir.cli.localbuild import SOPS_MASK, build_locally, build_options

__all__ = ["diff", "print_line", "print_unified_diff", "unified_diff"]

# What the API server adds to an object, or changes on every write: never a difference.
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
)
# fluxcd/pkg ssa SanitizeUnstructuredData's masks.
_MASK, _MASK_BEFORE, _MASK_AFTER = "***", "*** (before)", "*** (after)"
_STYLES = {"+": "green", "-": "red", "@": "cyan"}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(obj)
    shown.pop("status", None)
    metadata = shown.get("metadata") or {}
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    return shown


def _mask_secret_data(live: dict[str, Any], merged: dict[str, Any]) -> None:
    """Flux's ``SanitizeUnstructuredData``, in place: every value of ``data`` becomes ``***``,
    or ``*** (before)`` and ``*** (after)`` where the value changes."""
    old, new = live.get("data") or {}, merged.get("data") or {}
    for key in old.keys() | new.keys():
        changed = key in old and key in new and old[key] != new[key]
        if key in old:
            old[key] = _MASK_BEFORE if changed else _MASK
        if key in new:
            new[key] = _MASK_AFTER if changed else _MASK


def _holds_sops_mask(obj: dict[str, Any]) -> bool:
    for value in (obj.get("data") or {}).values():
        try:
            if SOPS_MASK.encode() in base64.b64decode(str(value), validate=True):
                return True
        except (binascii.Error, ValueError):
            continue
    return False


def unified_diff(subject: str, live: dict[str, Any], merged: dict[str, Any]) -> list[str]:
    """The lines of a unified diff from ``live`` to ``merged`` as YAML, without the fields the
    server sets and with a Secret's values masked."""
    before, after = _comparable(live), _comparable(merged)
    if before.get("kind") == "Secret":
        _mask_secret_data(before, after)

    def lines(obj: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).splitlines()

    return list(
        difflib.unified_diff(
            lines(before),
            lines(after),
            fromfile=f"{subject} (live)",
            tofile=f"{subject} (merged)",
            lineterm="",
        )
    )


def _drifted(change: ObjectDiff) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The live object and the dry-run result of an object that drifted, else None."""
    if change.action != Action.CONFIGURED or change.live is None or change.merged is None:
        return None
    # A Secret whose values the build masked can only be compared by its keys (as Flux).
    masked = change.ref.kind == "Secret" and _holds_sops_mask(change.desired)
    if masked and set(change.live.get("data") or {}) == set(change.merged.get("data") or {}):
        return None
    return change.live, change.merged


def print_line(text: str, style: str | None = None) -> None:
    """One line of a diff's output on stdout, in ``style`` when it is a terminal."""
    console.print(Text(text, style=style or ""), soft_wrap=True)


def print_unified_diff(subject: str, live: dict[str, Any], merged: dict[str, Any]) -> None:
    """:func:`unified_diff`'s lines, added lines green and removed ones red."""
    for line in unified_diff(subject, live, merged):
        header = line.startswith(("---", "+++"))
        print_line(line, None if header else _STYLES.get(line[:1]))


@group_of(main)
def diff() -> None:
    """Show what applying local manifests would change in the cluster.

    \b
    Example:
      weir diff kustomization apps --path ./apps/production
    """


@diff.command("kustomization")
@click.argument("name")
@build_options
@cluster_command
async def diff_kustomization(
    session: Session,
    name: str,
    path: Path,
    kustomization_file: Path | None,
    strict_substitute: bool,
) -> None:
    """Build --path as Kustomization NAME would (see weir build), dry-run every object with
    server-side apply and print what would be created, what drifted (with a diff) and, with
    spec.prune, what would be deleted. Nothing is written.

    Exit codes: 0 no change, 1 changes, more than 1 an error.

    \b
    Examples:
      weir diff kustomization apps --path ./apps/production
      weir diff ks apps --path ./apps/production --kustomization-file ./clusters/prod/apps.yaml
    """
    client = await session.client()
    local = await build_locally(
        client,
        name,
        session.namespace,
        path,
        kustomization_file,
        strict=strict_substitute,
        timeout=session.timeout,
    )
    spec = local.kustomization.spec
    if spec.kube_config is not None:
        raise CliError(
            f"Kustomization {session.namespace}/{name} applies to another cluster "
            "(spec.kubeConfig): weir diff compares with the cluster of your kubeconfig only",
            Exit.USAGE,
        )
    try:
        ignore = compile_ignore_rules(spec.ignore)
    except InvalidRule as err:
        raise CliError(f"invalid ignore rule: {err}", Exit.USAGE) from None
    manager = ResourceManager(
        client,
        RestMapper(client),
        owner_name=name,
        owner_namespace=session.namespace,
        field_manager=FIELD_MANAGER,
    )
    options = ApplyOptions(force=bool(spec.force), ignore=ignore)
    try:
        async with session.within_timeout():
            changes = await manager.diff(local.objects, options)
    except ApplyError as err:
        raise CliError(err.message, Exit.USAGE) from None

    changed = False
    for change in changes:
        subject = change.ref.subject
        if change.action == Action.SKIPPED:
            print_line(f"► {subject} skipped", "yellow")
        elif change.action == Action.CREATED:
            print_line(f"► {subject} created", "green")
            changed = True
        elif (drifted := _drifted(change)) is not None:
            print_line(f"► {subject} drifted")
            print_unified_diff(subject, *drifted)
            changed = True

    old = ((local.live or {}).get("status") or {}).get("inventory") or {}
    if spec.prune and old.get("entries"):
        applied = inventory.entries_for(change.ref for change in changes)
        for ref in inventory.diff(old["entries"], applied):
            print_line(f"► {ref.subject} deleted", "red")
            changed = True
    if changed:
        raise CliError("identified at least one change, exiting with non-zero exit code")


diff.add_aliases("kustomization", ("kustomizations", "ks"))
