"""How commands print objects: tables as ``flux get`` lays them out, or YAML and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml
from rich.table import Table

from weir.cli.app import console

__all__ = ["OUTPUT_OPTION", "print_line", "print_objects", "print_table", "ready_of", "to_yaml"]

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "yaml", "json"]),
    default="table",
    show_default=True,
    help="output format.",
)


def ready_of(obj: dict[str, Any]) -> tuple[str, str]:
    """The Ready condition's status and message (``Unknown`` and "" before the first run)."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown"), str(condition.get("message") or "")
    return "Unknown", ""


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.file.flush()  # --watch goes on: what was printed must reach a pipe now


def print_line(text: str) -> None:
    """One line as it happens (``--watch``), flushed at once even into a pipe."""
    console.print(text, markup=False, highlight=False)
    console.file.flush()


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    """Objects as a YAML stream, each document after ``---``, keys in the order given."""
    return "".join(
        "---\n" + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects
    )


def print_objects(objects: Sequence[dict[str, Any]], output: str) -> None:
    """``objects`` as YAML documents, or as one JSON object (a ``List`` when several)."""
    if output == "yaml":
        click.echo(to_yaml(objects), nl=False)
    else:
        body: Any = (
            objects[0]
            if len(objects) == 1
            else {
                "apiVersion": "v1",
                "kind": "List",
                "items": list(objects),
            }
        )
        click.echo(json.dumps(body, indent=2))
