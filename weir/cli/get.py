"""``weir get``: the objects of a kind, or of every kind, and whether each is Ready.

Ready is the controller's condition; for Alerts and Providers, which have no status, the
command's own judgement (``weir.cli.alerts``). When an object of a table is suspended, a
SUSPENDED BY column follows Flux's columns: who suspended it, how long ago and why, as
``weir suspend`` recorded it (``controllers.suspension``).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any

import click

from controllers.kube import Gone, KubeClient, NotFound
from controllers.suspension import Suspension
from weir.cli.app import CliError, Exit, Session, cluster_command, console, main
from weir.cli.kinds import KINDS, Kind, attach, group_of
from weir.cli.output import OUTPUT_OPTION, print_line, print_objects, print_table, ready_of

__all__ = ["coarse_age", "get", "suspended_by"]


@group_of(main)
def get() -> None:
    """Show objects with their revision and whether they are Ready.

    \b
    Examples:
      weir get kustomizations -A
      weir get sources git podinfo -n apps
      weir get receivers
      weir get all --watch
    """


# A reason longer than this is cut in the table (``-o yaml`` shows the annotation whole).
MAX_SHOWN_REASON = 60


def _headers(kind: Kind, session: Session, audited: bool) -> list[str]:
    audit = ["SUSPENDED BY"] if audited else []
    headers = ["NAME", *(header for header, _ in kind.table_columns), *audit, "READY", "MESSAGE"]
    return ["NAMESPACE", *headers] if session.all_namespaces else headers


def _suspended(obj: dict[str, Any]) -> bool:
    return bool((obj.get("spec") or {}).get("suspend"))


def _audited(objects: Sequence[dict[str, Any]]) -> bool:
    """Whether the table has a SUSPENDED BY column: only when something is suspended, so
    that Flux's columns are all there is otherwise."""
    return any(_suspended(obj) for obj in objects)


def coarse_age(seconds: float) -> str:
    """An age to the minute, as a table shows it: ``<1m``, ``45m``, ``2h5m``, ``3d4h``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "<1m"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes}m" if hours else f"{minutes}m"


def suspended_by(obj: dict[str, Any], now: datetime.datetime) -> str:
    """The SUSPENDED BY cell: ``jane, 2h5m ago: INC-1234: hotfix image``, or without the
    reason when none was given (the cell stays short); empty when the object is not
    suspended."""
    if not _suspended(obj):
        return ""
    record = Suspension.from_annotations((obj.get("metadata") or {}).get("annotations"))
    if not record.recorded:
        return "unknown (not weir suspend)"
    age = record.age(now)
    ago = f", {coarse_age(age)} ago" if age is not None else ""
    reason = record.reason or ""
    if len(reason) > MAX_SHOWN_REASON:
        reason = reason[:MAX_SHOWN_REASON] + "..."
    return f"{record.by or 'unknown'}{ago}" + (f": {reason}" if reason else "")


async def _rows(
    client: KubeClient,
    kind: Kind,
    objects: Sequence[dict[str, Any]],
    session: Session,
    *,
    prefixed: bool,
    audited: bool,
) -> list[list[str]]:
    if kind.judge is not None:
        readiness = await kind.judge(client, objects)
    else:
        readiness = [ready_of(obj) for obj in objects]
    rows = []
    now = datetime.datetime.now(datetime.UTC)
    for obj, (ready, message) in zip(objects, readiness, strict=True):
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        if prefixed:
            name = f"{kind.info.kind.lower()}/{name}"
        audit = [suspended_by(obj, now)] if audited else []
        row = [name, *(value(obj) for _, value in kind.table_columns), *audit, ready, message]
        rows.append([str(meta.get("namespace") or ""), *row] if session.all_namespaces else row)
    return rows


async def _objects(client: KubeClient, kind: Kind, session: Session, name: str | None) -> Any:
    """(objects, resourceVersion to watch from)."""
    if name is not None:
        obj = await client.get(kind.info, session.namespace, name)
        return [obj], str(obj["metadata"]["resourceVersion"])
    page = await client.list(kind.info, session.scope)
    items = [
        {"apiVersion": kind.info.api_version, "kind": kind.info.kind, **item}
        for item in page["items"]
    ]
    items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return items, str(page["metadata"]["resourceVersion"])


async def _watch(
    client: KubeClient,
    kinds: Sequence[tuple[Kind, str, bool]],
    session: Session,
    name: str | None,
    prefixed: bool,
) -> None:
    """Print a row for each change until interrupted; a kind's rows have the SUSPENDED BY
    column when its table had it."""

    async def follow(kind: Kind, version: str, audited: bool) -> None:
        while True:
            try:
                async for event in client.watch(kind.info, version, namespace=session.scope):
                    meta = event.object.get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if event.type == "BOOKMARK" or (name and meta.get("name") != name):
                        continue
                    (row,) = await _rows(
                        client, kind, [event.object], session, prefixed=prefixed, audited=audited
                    )
                    if event.type == "DELETED":
                        row[-1] = "deleted"
                    print_line("  ".join(row))
            except Gone:
                _, version = await _objects(client, kind, session, name)

    await asyncio.gather(*(follow(*followed) for followed in kinds))


def _make(kind: Kind) -> click.Command:
    @click.command(
        help=f"Show {kind.info.kind} objects (all of the namespace, or NAME).\n\n"
        f"\b\nExample:\n  weir get {' '.join(kind.words)} -A",
    )
    @click.argument("name", required=False)
    @OUTPUT_OPTION
    @click.option("-w", "--watch", is_flag=True, help="keep printing changes.")
    @cluster_command
    async def command(session: Session, name: str | None, output: str, watch: bool) -> None:
        client = await session.client()
        objects, version = await _objects(client, kind, session, name)
        if output != "table":
            print_objects(objects, output)
            return
        if not objects and not watch:
            raise CliError(
                f"no {kind.info.kind} objects found in "
                + ("any namespace" if session.all_namespaces else f"{session.namespace} namespace"),
                Exit.NOT_FOUND,
            )
        audited = _audited(objects)
        rows = await _rows(client, kind, objects, session, prefixed=False, audited=audited)
        print_table(_headers(kind, session, audited), rows)
        if watch:
            await _watch(client, [(kind, version, audited)], session, name, prefixed=False)

    return command


attach(get, _make)


async def _show_all(session: Session, kinds: Sequence[Kind], output: str, watch: bool) -> None:
    """The objects of ``kinds``, one table per kind that has some."""
    client = await session.client()
    found = []
    for kind in kinds:
        try:
            found.append((kind, *await _objects(client, kind, session, None)))
        except NotFound:
            continue  # a kind of a controller that is not installed
    if output != "table":
        print_objects([obj for _, objects, _ in found for obj in objects], output)
        return
    shown = [(kind, objects) for kind, objects, _ in found if objects]
    for i, (kind, objects) in enumerate(shown):
        if i:
            console.print()
        audited = _audited(objects)
        rows = await _rows(client, kind, objects, session, prefixed=True, audited=audited)
        print_table(_headers(kind, session, audited), rows)
    if watch:
        followed = [(kind, version, _audited(objects)) for kind, objects, version in found]
        await _watch(client, followed, session, None, True)


@get.command("all")
@OUTPUT_OPTION
@click.option("-w", "--watch", is_flag=True, help="keep printing changes.")
@cluster_command
async def get_all(session: Session, output: str, watch: bool) -> None:
    """Show the objects of every kind weir serves, one table per kind.

    \b
    Example:
      weir get all -A
    """
    await _show_all(session, KINDS, output, watch)


def _make_group_all(group: str) -> click.Command:
    kinds = [kind for kind in KINDS if len(kind.words) == 2 and kind.words[0] == group]

    @click.command(
        "all",
        help=f"Show the objects of every {group} kind, one table per kind.\n\n"
        f"\b\nExample:\n  weir get {group}s all -A",
    )
    @OUTPUT_OPTION
    @click.option("-w", "--watch", is_flag=True, help="keep printing changes.")
    @cluster_command
    async def command(session: Session, output: str, watch: bool) -> None:
        await _show_all(session, kinds, output, watch)

    return command


# As flux get sources all, flux get images all.
for _name, _group in get.commands.items():
    if isinstance(_group, click.Group):
        _group.add_command(_make_group_all(_name))
