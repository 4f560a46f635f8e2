"""``weir suspend`` and ``weir resume``: stop and restart the reconciling of an object."""

from __future__ import annotations

import click

from weir.cli.app import Session, cluster_command, main, note
from weir.cli.create import report_judged
from weir.cli.kinds import Kind, attach, group_of
from weir.cli.reconcile import request_and_wait

__all__ = ["resume", "suspend"]


@group_of(main)
def suspend() -> None:
    """Stop reconciling an object (spec.suspend: true); what it applied stays.

    \b
    Examples:
      weir suspend kustomization apps
      weir suspend alert apps
    """


@group_of(main)
def resume() -> None:
    """Reconcile a suspended object again, and wait until it is done (an Alert or a
    Provider, which no controller reconciles, is judged at once).

    \b
    Examples:
      weir resume kustomization apps
      weir resume alert-provider slack
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
        if not kind.reconciled:
            patch = {"spec": {"suspend": False}}
            obj = await client.patch(kind.info, session.namespace, name, patch)
            note(f"✔ {kind.info.kind} {session.namespace}/{name} resumed")
            await report_judged(client, kind, obj)
            return
        async with session.within_timeout():
            await request_and_wait(client, kind, session.namespace, name, resume=True)

    return command


attach(suspend, _make_suspend)
attach(resume, _make_resume)
