"""``weir logs``: the controllers' logs, readable, filtered by object and level.

As ``flux logs``: the logs of the controllers' pods (found by the install's labels in
``--controllers-namespace``), read through the API server; each JSON line (the controllers log
with ``--log-encoding=json``) is shown as ``time level Kind/namespace/name controller: event
key=value...``, oldest first. ``-n`` keeps the lines about objects of that namespace (``-A``:
every namespace); lines about no object (start-up, leadership) are kept unless ``--kind`` or
``--name`` asks for an object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import click

from controllers.api import ResourceInfo, parse_duration
from controllers.kube import resource_path
from weir.bundle import INSTANCE_LABEL, PART_OF, PART_OF_LABEL
from weir.cli.app import CliError, Exit, Session, cluster_command, console, main

__all__ = ["logs"]

POD = ResourceInfo(group="", version="v1", kind="Pod", plural="pods")
LEVELS = ("debug", "info", "warning", "error")
MAX_LOG_BYTES = 16 * 1024 * 1024
# The fields every line has, shown in their own places; the rest follow as key=value.
_PLACED = ("timestamp", "level", "event", "controller", "kind", "namespace", "name")


@dataclass(frozen=True)
class Filter:
    kind: str | None
    name: str | None
    namespace: str | None
    level: str

    def keeps(self, entry: dict[str, Any]) -> bool:
        level = str(entry.get("level") or "info").lower()
        if level in LEVELS and LEVELS.index(level) < LEVELS.index(self.level):
            return False
        about_object = "kind" in entry or "name" in entry
        if self.kind and str(entry.get("kind", "")).lower() != self.kind.lower():
            return False
        if self.name and entry.get("name") != self.name:
            return False
        return not (self.namespace and about_object and entry.get("namespace") != self.namespace)


def readable(entry: dict[str, Any]) -> str:
    """One JSON log entry as one line a person reads."""
    subject = ""
    if entry.get("kind") or entry.get("name"):
        subject = f"{entry.get('kind', '')}/{entry.get('namespace', '')}/{entry.get('name', '')} "
    rest = " ".join(
        f"{key}={json.dumps(value) if not isinstance(value, str) or ' ' in value else value}"
        for key, value in entry.items()
        if key not in _PLACED
    )
    text = (
        f"{entry.get('timestamp', '')} {entry.get('level', '')} {subject}"
        f"{entry.get('controller', '')}: {entry.get('event', '')}"
    )
    return f"{text} {rest}".rstrip()


def entries(text: str) -> list[dict[str, Any]]:
    """The JSON entries of a container's log; other lines become ``{"event": line}``."""
    found = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        found.append(entry if isinstance(entry, dict) else {"event": line})
    return found


@main.command()
@click.option("--kind", help="only lines about objects of this kind (GitRepository...).")
@click.option("--name", help="only lines about objects of this name.")
@click.option(
    "--level",
    type=click.Choice(LEVELS),
    default="debug",
    show_default=True,
    help="only lines at this level or above.",
)
@click.option("--since", help="only lines newer than this (Go duration: 10m, 1h).")
@click.option("--tail", type=click.IntRange(min=0), help="at most this many lines per pod.")
@click.option(
    "--controllers-namespace",
    default="flux-system",
    show_default=True,
    help="where the controllers run.",
)
@cluster_command
async def logs(
    session: Session,
    kind: str | None,
    name: str | None,
    level: str,
    since: str | None,
    tail: int | None,
    controllers_namespace: str,
) -> None:
    """Show the controllers' logs, filtered by object and level.

    \b
    Examples:
      weir logs --kind=Kustomization --name=apps --level=error
      weir logs -A --since=1h
    """
    # At most MAX_LOG_BYTES of a pod's log (from the first line --tail or --since selects).
    query = {"container": "manager", "timestamps": "false", "limitBytes": str(MAX_LOG_BYTES)}
    if since:
        try:
            query["sinceSeconds"] = str(max(1, int(parse_duration(since))))
        except ValueError as err:
            raise CliError(f"--since: {err}", Exit.USAGE) from None
    if tail is not None:
        query["tailLines"] = str(tail)
    client = await session.client()
    selector = f"{PART_OF_LABEL}={PART_OF},{INSTANCE_LABEL}={controllers_namespace}"
    pods = (await client.list(POD, controllers_namespace, label_selector=selector))["items"]
    if not pods:
        raise CliError(
            f"no weir controller pods in the {controllers_namespace} namespace", Exit.NOT_FOUND
        )
    keep = Filter(kind, name, session.scope, level)
    lines: list[tuple[str, str]] = []
    for pod in pods:
        path = resource_path(POD, controllers_namespace, pod["metadata"]["name"]) + "/log"
        for entry in entries(await client.get_text(path, query=query)):
            if keep.keeps(entry):
                lines.append((str(entry.get("timestamp", "")), readable(entry)))
    for _, line in sorted(lines, key=lambda pair: pair[0]):
        console.print(line, markup=False, highlight=False)
