"""``weir suspend`` and ``weir resume``: stop and restart the reconciling of an object."""

from __future__ import annotations

import click

from weir.cli.app import Session, cluster_command, main, note
from weir.cli.kinds import Kind, attach, group_of
from weir.cli.reconcile import request_and_wait

__all__ = ["resume", "suspend"]


@group_of(main)
def suspend() -> None:
    """Stop reconciling an object (spec.suspend: true); what it applied stays.

    \b
    Example:
      weir suspend kustomization apps
    """


@group_of(main)
def resume() -> None:
    """Reconcile a suspended object again, and wait until it is done.

    \b
    Example:
      weir resume kustomization apps
    """


def _make_suspend(kind: Kind) -> click.Command:
    words = " ".join(kind.words)

    @click.command(
        help=f"Suspend the {kind.info.kind} NAME.\n\n\b\nExample:\n  weir suspend {words} NAME"
    )
    @click.argument("name")
    @cluster_command
    async def command(session: Session, name: str) -> None:
        client = await session.client()
        await client.patch(kind.info, session.namespace, name, {"spec": {"suspend": True}})
        note(f"✔ {kind.info.kind} {session.namespace}/{name} suspended")

    return command


def _make_resume(kind: Kind) -> click.Command:
    words = " ".join(kind.words)

    @click.command(
        help=f"Resume the {kind.info.kind} NAME.\n\n\b\nExample:\n  weir resume {words} NAME"
    )
    @click.argument("name")
    @cluster_command
    async def command(session: Session, name: str) -> None:
        client = await session.client()
        async with session.within_timeout():
            await request_and_wait(client, kind, session.namespace, name, resume=True)

    return command


attach(suspend, _make_suspend)
attach(resume, _make_resume)
