"""``weir export``: objects as YAML a user could commit to Git."""

from __future__ import annotations

from typing import Any

import click

from weir.cli.app import CliError, Exit, Session, cluster_command, main
from weir.cli.kinds import Kind, attach, group_of
from weir.cli.output import to_yaml

__all__ = ["export", "exportable"]

# Set by the API server or kubectl, never part of what a user writes.
_SERVER_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "reconcile.fluxcd.io/requestedAt",
    # weir reconcile helmrelease --force, --reset: one-off requests like requestedAt.
    "reconcile.fluxcd.io/forceAt",
    "reconcile.fluxcd.io/resetAt",
)


@group_of(main)
def export() -> None:
    """Print objects as YAML to commit to Git: spec, name, labels, annotations; no status.

    \b
    Examples:
      weir export kustomization --all > kustomizations.yaml
      weir export source git podinfo
    """


def exportable(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without what the cluster added: status, server metadata, defaults are kept."""
    meta = obj.get("metadata") or {}
    clean: dict[str, Any] = {"name": meta["name"]}
    if meta.get("namespace"):
        clean["namespace"] = meta["namespace"]
    if meta.get("labels"):
        clean["labels"] = meta["labels"]
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS
    }
    if annotations:
        clean["annotations"] = annotations
    return {
        "apiVersion": kind.info.api_version,
        "kind": kind.info.kind,
        "metadata": clean,
        "spec": obj.get("spec") or {},
    }


def _make(kind: Kind) -> click.Command:
    words = " ".join(kind.words)

    @click.command(
        help=f"Export {kind.info.kind} objects.\n\n\b\nExample:\n  weir export {words} --all"
    )
    @click.argument("name", required=False)
    @click.option("--all", "every", is_flag=True, help="every object of the namespace (or -A).")
    @cluster_command
    async def command(session: Session, name: str | None, every: bool) -> None:
        if bool(name) == every:
            raise CliError("name an object or give --all", Exit.USAGE)
        client = await session.client()
        if name:
            objects = [await client.get(kind.info, session.namespace, name)]
        else:
            objects = (await client.list(kind.info, session.scope))["items"]
            objects.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        click.echo(to_yaml([exportable(kind, obj) for obj in objects]), nl=False)

    return command


attach(export, _make)
