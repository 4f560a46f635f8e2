"""``weir stats``: how many objects of each kind are running, failing and suspended, and the
storage their artifacts take, as ``flux stats`` shows them."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from controllers.kube import NotFound
from weir.cli.app import Session, cluster_command, main
from weir.cli.kinds import KINDS
from weir.cli.output import OUTPUT_OPTION, print_table, ready_of

__all__ = ["stats"]


def _size(total: int) -> str:
    value = float(total)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _counts(
    objects: list[dict[str, Any]], readiness: list[str]
) -> tuple[int, int, int, int | None]:
    """(running, failing, suspended, artifact bytes or None for kinds without artifacts), from
    the objects and the Ready status of each."""
    running = failing = suspended = 0
    size: int | None = None
    for obj, ready in zip(objects, readiness, strict=True):
        if (obj.get("spec") or {}).get("suspend"):
            suspended += 1
        elif ready == "False":
            failing += 1
        else:
            running += 1
        artifact = (obj.get("status") or {}).get("artifact")
        if artifact is not None:
            size = (size or 0) + int(artifact.get("size") or 0)
    return running, failing, suspended, size


@main.command()
@OUTPUT_OPTION
@cluster_command
async def stats(session: Session, output: str) -> None:
    """Count the objects of each kind: running, failing, suspended; and artifact storage.

    \b
    Example:
      weir stats -A
    """
    client = await session.client()
    rows, counts = [], []
    for kind in KINDS:
        try:
            objects = (await client.list(kind.info, session.scope))["items"]
        except NotFound:
            continue  # a kind of a controller that is not installed
        if kind.judge is not None:
            readiness = [ready for ready, _ in await kind.judge(client, objects)]
        else:
            readiness = [ready_of(obj)[0] for obj in objects]
        running, failing, suspended, size = _counts(objects, readiness)
        storage = "-" if size is None else _size(size)
        rows.append([kind.info.kind, str(running), str(failing), str(suspended), storage])
        counts.append(
            {
                "kind": kind.info.kind,
                "running": running,
                "failing": failing,
                "suspended": suspended,
                "artifactBytes": size,
            }
        )
    if output != "table":
        click.echo(json.dumps(counts, indent=2) if output == "json" else yaml.safe_dump(counts))
        return
    print_table(["RECONCILERS", "RUNNING", "FAILING", "SUSPENDED", "STORAGE"], rows)
