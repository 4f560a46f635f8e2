"""``weir events``: the Kubernetes events of weir's objects (and others), oldest first."""

from __future__ import annotations

import datetime
from typing import Any

import click

from controllers.api import parse_time
from controllers.kinds import EVENT
from weir.cli.app import CliError, Exit, Session, cluster_command, main
from weir.cli.output import OUTPUT_OPTION, print_line, print_objects, print_table

__all__ = ["events"]


def _when(event: dict[str, Any]) -> datetime.datetime:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        stamp = parse_time(
            str(event.get(key) or (event.get("metadata") or {}).get("creationTimestamp") or "")
        )
        if stamp is not None:
            return stamp
    return datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _age(stamp: datetime.datetime, now: datetime.datetime) -> str:
    seconds = max(0, int((now - stamp).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _row(event: dict[str, Any], session: Session, now: datetime.datetime) -> list[str]:
    involved = event.get("involvedObject") or {}
    row = [
        _age(_when(event), now),
        str(event.get("type") or ""),
        str(event.get("reason") or ""),
        f"{involved.get('kind')}/{involved.get('name')}",
        str(event.get("message") or "").strip(),
    ]
    if session.all_namespaces:
        row.insert(0, str(involved.get("namespace") or ""))
    return row


def _matches(event: dict[str, Any], wanted: tuple[str, str] | None) -> bool:
    if wanted is None:
        return True
    involved = event.get("involvedObject") or {}
    kind, name = wanted
    return str(involved.get("kind", "")).lower() == kind and involved.get("name") == name


@main.command()
@click.option("--for", "for_", metavar="KIND/NAME", help="only the events of this object.")
@click.option("-w", "--watch", is_flag=True, help="keep printing new events.")
@OUTPUT_OPTION
@cluster_command
async def events(session: Session, for_: str | None, watch: bool, output: str) -> None:
    """Show events, oldest first.

    \b
    Examples:
      weir events --for Kustomization/apps
      weir events -A --watch
    """
    wanted = None
    if for_ is not None:
        kind, slash, name = for_.partition("/")
        if not slash or not kind or not name:
            raise CliError(f"--for takes KIND/NAME, not {for_!r}", Exit.USAGE)
        wanted = (kind.lower(), name)
    client = await session.client()
    page = await client.list(EVENT, session.scope)
    found = sorted((e for e in page["items"] if _matches(e, wanted)), key=_when)
    if output != "table":
        print_objects([{"apiVersion": "v1", "kind": "Event", **e} for e in found], output)
        return
    now = datetime.datetime.now(datetime.UTC)
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    if session.all_namespaces:
        headers.insert(0, "NAMESPACE")
    if found or not watch:
        print_table(headers, [_row(e, session, now) for e in found])
    if not watch:
        return
    version = str(page["metadata"]["resourceVersion"])
    while True:
        async for change in client.watch(EVENT, version, namespace=session.scope):
            version = str((change.object.get("metadata") or {}).get("resourceVersion") or version)
            if change.type in ("ADDED", "MODIFIED") and _matches(change.object, wanted):
                now = datetime.datetime.now(datetime.UTC)
                print_line("  ".join(_row(change.object, session, now)))
