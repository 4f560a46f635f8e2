"""``weir reconcile``: ask for a reconcile now and wait for its outcome.

As ``flux reconcile``: ``reconcile.fluxcd.io/requestedAt`` is set to now, and the command
waits until the controller reports it handled that request (``status.lastHandledReconcileAt``),
then reports Ready; non-zero exit when the run failed or the object is suspended.
``--with-source`` reconciles the object's source first, and that source's own source (a
HelmRelease's HelmChart, then the chart's HelmRepository), as Flux does. A HelmRelease also
takes ``--force`` (a one-off install or upgrade) and ``--reset`` (its failure counts zeroed):
Flux's ``forceAt`` and ``resetAt`` annotations, set to the same time as ``requestedAt``. A
static object (a HelmRepository of type oci) is not reconciled by any controller: it is said
and skipped.
"""

from __future__ import annotations

from typing import Any

import click

from controllers.api import micro_time_now
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from helm.api_v2 import FORCE_REQUEST_ANNOTATION, RESET_REQUEST_ANNOTATION
from weir.cli.app import CliError, Exit, Session, cluster_command, err_console, main, note
from weir.cli.kinds import RECONCILED, Kind, attach, find_kind, group_of
from weir.cli.output import ready_of

__all__ = ["reconcile", "request_and_wait"]


@group_of(main)
def reconcile() -> None:
    """Reconcile an object now and wait until it is done.

    \b
    Examples:
      weir reconcile kustomization flux-system --with-source
      weir reconcile source git podinfo -n apps
      weir reconcile helmrelease podinfo --with-source --force
      weir reconcile receiver github
    """


async def request_and_wait(
    client: KubeClient,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    resume: bool = False,
    also: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Request a reconcile of ``name`` (and, with ``resume``, set ``spec.suspend: false`` in
    the same write; each annotation of ``also`` set to the request's time), wait for its
    outcome and report it; the object as it ended.

    Raises ``CliError`` when the object is suspended or its run ended not Ready."""
    title = f"{kind.info.kind} {namespace}/{name}"
    current = await client.get(kind.info, namespace, name)
    if not resume and (current.get("spec") or {}).get("suspend"):
        raise CliError(f"{title} is suspended: resume it first (weir resume)")
    if kind.is_static(current):
        if resume:
            current = await client.patch(kind.info, namespace, name, {"spec": {"suspend": False}})
        note(f"✔ {title} is static: no controller reconciles it")
        return current
    stamp = micro_time_now()
    annotations = {REQUESTED_AT: stamp, **dict.fromkeys(also, stamp)}
    patch: dict[str, Any] = {"metadata": {"annotations": annotations}}
    if resume:
        patch["spec"] = {"suspend": False}
    note(f"► {'resuming' if resume else 'annotating'} {title}")
    updated = await client.patch(kind.info, namespace, name, patch)
    with err_console.status(f"waiting for {title} to be reconciled"):
        obj = await _until_handled(client, kind, updated, stamp)
    ready, message = ready_of(obj)
    if ready != "True":
        raise CliError(f"{title}: {message or 'not ready'}")
    revision = kind.revision_of(obj)
    note(f"✔ {title} is ready" + (f" at revision {revision}" if revision else ""))
    return obj


async def _until_handled(
    client: KubeClient, kind: Kind, obj: dict[str, Any], stamp: str
) -> dict[str, Any]:
    meta = obj["metadata"]
    version = str(meta["resourceVersion"])
    while True:
        if (obj.get("status") or {}).get("lastHandledReconcileAt") == stamp:
            return obj
        async for event in client.watch(kind.info, version, namespace=meta["namespace"]):
            version = str((event.object.get("metadata") or {}).get("resourceVersion") or version)
            if event.type == "DELETED" and event.object["metadata"]["name"] == meta["name"]:
                raise CliError(f"{kind.info.kind} {meta['namespace']}/{meta['name']} was deleted")
            if event.type != "BOOKMARK" and event.object["metadata"]["name"] == meta["name"]:
                obj = event.object
                break


async def _reconcile_sources(client: KubeClient, kind: Kind, namespace: str, name: str) -> None:
    """Reconcile the source of ``name``, after that source's own source."""
    assert kind.source is not None
    obj = await client.get(kind.info, namespace, name)
    source = kind.source(obj)
    source_kind = find_kind(source[0]) if source else None
    if source is None or source_kind is None:
        raise CliError(f"{kind.info.kind} {namespace}/{name} has no source weir serves")
    if source_kind.source is not None:
        await _reconcile_sources(client, source_kind, source[1], source[2])
    await request_and_wait(client, source_kind, source[1], source[2])


def _make(kind: Kind) -> click.Command:
    words = " ".join(kind.words)

    @click.command(
        help=f"Reconcile the {kind.info.kind} NAME now."
        f"\n\n\b\nExample:\n  weir reconcile {words} NAME"
    )
    @click.argument("name")
    @click.option(
        "--with-source",
        is_flag=True,
        hidden=kind.source is None,
        help="reconcile its source first.",
    )
    @click.option(
        "--force",
        is_flag=True,
        hidden=not kind.release,
        help="a one-off install or upgrade, even when nothing changed.",
    )
    @click.option(
        "--reset",
        is_flag=True,
        hidden=not kind.release,
        help="reset its failure counts (install and upgrade retries start again).",
    )
    @cluster_command
    async def command(
        session: Session, name: str, with_source: bool, force: bool, reset: bool
    ) -> None:
        if with_source and kind.source is None:
            raise CliError(f"{kind.info.kind} has no source", Exit.USAGE)
        if (force or reset) and not kind.release:
            raise CliError("--force and --reset are for HelmReleases", Exit.USAGE)
        client = await session.client()
        if with_source:
            async with session.within_timeout():
                await _reconcile_sources(client, kind, session.namespace, name)
        also = (FORCE_REQUEST_ANNOTATION,) * force + (RESET_REQUEST_ANNOTATION,) * reset
        async with session.within_timeout():
            await request_and_wait(client, kind, session.namespace, name, also=also)

    return command


attach(reconcile, _make, RECONCILED)
