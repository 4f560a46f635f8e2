"""``weir tree kustomization``: what a Kustomization applied, as ``flux tree`` draws it.

The tree is read from ``status.inventory``: each entry is a node, and a Kustomization in it is
expanded with its own inventory (not one that applies to another cluster, as in Flux).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click
import yaml

from controllers.inventory import ObjectRef
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from weir.cli.app import CliError, Session, cluster_command, main
from weir.cli.kinds import group_of
from weir.cli.output import OUTPUT_OPTION

__all__ = ["Node", "draw", "tree"]

KS = Kustomization.info
# --compact keeps the kinds of this group suffix (Flux's).
_FLUX_GROUPS = "toolkit.fluxcd.io"


@dataclass
class Node:
    """One object and, for a Kustomization, what it applied."""

    ref: ObjectRef
    children: list[Node] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Flux's JSON shape (cli-utils' ``ObjMetadata`` field names), for ``-o json|yaml``."""
        resource = {
            "Namespace": self.ref.namespace,
            "Name": self.ref.name,
            "GroupKind": {"Group": self.ref.group, "Kind": self.ref.kind},
        }
        shown: dict[str, Any] = {"resource": resource}
        if self.children:
            shown["resources"] = [child.as_dict() for child in self.children]
        return shown


def draw(root: Node) -> str:
    """The tree in Flux's layout: ``├──``, ``│``, ``└──`` and four columns per level."""
    lines = [root.ref.subject]

    def walk(node: Node, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + child.ref.subject)
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines) + "\n"


def _is_kustomization(ref: ObjectRef) -> bool:
    return ref.group == KS.group and ref.kind == KS.kind


async def _expand(
    client: KubeClient, node: Node, obj: dict[str, Any], compact: bool, seen: set[ObjectRef]
) -> None:
    """Add the inventory of Kustomization ``obj`` under ``node``, recursively."""
    inventory = (obj.get("status") or {}).get("inventory") or {}
    remote = bool((obj.get("spec") or {}).get("kubeConfig"))
    for entry in inventory.get("entries") or []:
        try:
            ref = ObjectRef.parse(str(entry.get("id") or ""), str(entry.get("v") or ""))
        except ValueError as err:
            raise CliError(f"{node.ref.subject}: {err}") from None
        if ref == node.ref or (compact and not ref.group.endswith(_FLUX_GROUPS)):
            continue
        child = Node(ref)
        node.children.append(child)
        # A Kustomization listed twice (or in a cycle) is expanded once.
        if _is_kustomization(ref) and not remote and ref not in seen:
            seen.add(ref)
            nested = await client.get_or_none(KS, ref.namespace, ref.name)
            if nested is not None:
                await _expand(client, child, nested, compact, seen)


@group_of(main)
def tree() -> None:
    """Print what an object applied, as a tree.

    \b
    Example:
      weir tree kustomization flux-system
    """


@tree.command("kustomization")
@click.argument("name")
@OUTPUT_OPTION
@click.option("--compact", is_flag=True, help="only Flux's kinds (*.toolkit.fluxcd.io).")
@cluster_command
async def tree_kustomization(session: Session, name: str, output: str, compact: bool) -> None:
    """Print the objects a Kustomization applied, and what the Kustomizations among them
    applied, from their inventories.

    \b
    Examples:
      weir tree kustomization flux-system
      weir tree ks apps --compact -o yaml
    """
    client = await session.client()
    obj = await client.get(KS, session.namespace, name)
    root = Node(ObjectRef(session.namespace, name, KS.group, KS.kind, KS.version))
    await _expand(client, root, obj, compact, {root.ref})
    if output == "json":
        click.echo(json.dumps(root.as_dict(), indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(root.as_dict(), sort_keys=False), nl=False)
    else:
        click.echo(draw(root), nl=False)


tree.add_aliases("kustomization", ("kustomizations", "ks"))
