"""``weir suspend`` and ``weir resume``: stop and restart the reconciling of an object, with
an audit trail (a break-glass).

``weir suspend --reason`` sets ``spec.suspend`` (as ``flux suspend``) and records who did it,
when and why in annotations on the object (``controllers.suspension``); the user is the API
server's view of the caller (a ``SelfSubjectReview``), so a kubeconfig cannot claim another
name. Both commands leave a Kubernetes Event on the object (``Suspended``, ``Resumed``); while
the object stays suspended, its controller reminds (``StillSuspended``).

``weir resume`` of a suspended Kustomization first lists what its reconcile will revert (the
changes made by hand while it was suspended, as ``weir drift export`` finds them) and asks
before going on, unless ``--yes``; without a terminal to ask on, it refuses.
"""

from __future__ import annotations

import datetime
import json
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import click

from controllers.api import ResourceInfo, micro_time_now
from controllers.inventory import ObjectRef
from controllers.kinds import EVENT
from controllers.kube import ApiError, KubeClient
from controllers.suspension import ANNOTATIONS, Suspension, describe_age
from weir.cli.app import CliError, Exit, Session, cluster_command, main, note
from weir.cli.create import report_judged
from weir.cli.drift import ObjectDrift, kustomization_drift
from weir.cli.kinds import Kind, attach, find_kind, group_of
from weir.cli.reconcile import request_and_wait

__all__ = ["current_user", "drift_lines", "resume", "suspend"]

SELF_SUBJECT_REVIEW = ResourceInfo(
    group="authentication.k8s.io",
    version="v1",
    kind="SelfSubjectReview",
    plural="selfsubjectreviews",
    namespaced=False,
)
EVENT_COMPONENT = "weir"
# Enough for an incident id and a sentence; an annotation is no place for a postmortem.
MAX_REASON = 1024
# A value longer than this is cut in the drift listing (weir drift export writes it whole).
MAX_SHOWN_VALUE = 120


@group_of(main)
def suspend() -> None:
    """Stop reconciling an object (spec.suspend: true); what it applied stays. Who, when and
    why are recorded on the object (--reason), and its controller reminds while it stays
    suspended.

    \b
    Examples:
      weir suspend kustomization apps --reason "INC-1234: hotfix image"
      weir suspend alert apps
    """


@group_of(main)
def resume() -> None:
    """Reconcile a suspended object again, and wait until it is done (an Alert or a
    Provider, which no controller reconciles, is judged at once). For a Kustomization, the
    changes its reconcile will revert are listed first, and you are asked (--yes: not).

    \b
    Examples:
      weir resume kustomization apps
      weir resume kustomization apps --with-source
      weir resume kustomization apps --yes
      weir resume alert-provider slack
    """


async def current_user(client: KubeClient) -> str | None:
    """The user the API server authenticates the caller as (impersonation included), or
    None when it will not say."""
    review = {"apiVersion": SELF_SUBJECT_REVIEW.api_version, "kind": "SelfSubjectReview"}
    try:
        answer = await client.create(SELF_SUBJECT_REVIEW, review)
    except ApiError as err:
        note(f"! cannot tell who you are (SelfSubjectReview: {err.message}): recorded as unknown")
        return None
    username = ((answer.get("status") or {}).get("userInfo") or {}).get("username")
    return str(username) if username else None


async def _record_event(
    client: KubeClient, obj: dict[str, Any], type_: str, reason: str, message: str
) -> None:
    """A Kubernetes Event on ``obj``; not being allowed to is said, never fatal (the
    annotations hold the record)."""
    meta = obj["metadata"]
    now = micro_time_now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{secrets.token_hex(8)}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": EVENT_COMPONENT,
        "firstTimestamp": now[:19] + "Z",
        "lastTimestamp": now[:19] + "Z",
        "count": 1,
    }
    try:
        await client.create(EVENT, event)
    except ApiError as err:
        note(f"! no {reason} event recorded: {err.message}")


def _make_suspend(kind: Kind) -> click.Command:
    words = " ".join(kind.words)

    @click.command(
        help=f"Suspend the {kind.info.kind} NAME, recording who, when and why.\n\n\b\n"
        f'Example:\n  weir suspend {words} NAME --reason "INC-1234: hotfix image"'
    )
    @click.argument("name")
    @click.option(
        "--reason",
        default=None,
        help="why (an incident id, what is being fixed); recorded on the object and in the events.",
    )
    @cluster_command
    async def command(session: Session, name: str, reason: str | None) -> None:
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > MAX_REASON:
            raise CliError(f"--reason is longer than {MAX_REASON} characters", Exit.USAGE)
        client = await session.client()
        title = f"{kind.info.kind} {session.namespace}/{name}"
        current = await client.get(kind.info, session.namespace, name)
        now = datetime.datetime.now(datetime.UTC)
        earlier = Suspension.from_annotations(current["metadata"].get("annotations"))
        # Suspended again: the record names the latest user and reason, and keeps since when.
        already = bool((current.get("spec") or {}).get("suspend"))
        at = earlier.at if already and earlier.at is not None else now
        record = Suspension(by=await current_user(client), reason=reason, at=at)
        patch = {"metadata": {"annotations": record.to_annotations()}, "spec": {"suspend": True}}
        obj = await client.patch(kind.info, session.namespace, name, patch)
        message = f"reconciliation suspended {record.who_and_why()}"
        await _record_event(client, obj, "Warning", "Suspended", message)
        since = f" (suspended since {at:%Y-%m-%dT%H:%M:%SZ})" if already else ""
        note(f"✔ {title} suspended {record.who_and_why()}{since}")

    return command


def drift_lines(drifted: Sequence[ObjectDrift], secrets_drifted: Sequence[ObjectRef]) -> list[str]:
    """What a reconcile would revert, one line per object and one per field with its live
    value (cut when long); Secrets by name only."""
    lines = []
    for drift in drifted:
        lines.append(f"► {drift.ref.subject} drifted")
        for change in drift.changes:
            if change.removed:
                lines.append(f"  {change.pointer}: removed")
                continue
            shown = json.dumps(_value_at(drift.live, change.tokens), sort_keys=True)
            if len(shown) > MAX_SHOWN_VALUE:
                shown = shown[:MAX_SHOWN_VALUE] + "..."
            lines.append(f"  {change.pointer}: {shown}")
    lines.extend(
        f"► {ref.subject} drifted (Secret values are not shown)" for ref in secrets_drifted
    )
    return lines


def _value_at(obj: Any, tokens: Sequence[str]) -> Any:
    for token in tokens:
        obj = obj[int(token)] if isinstance(obj, list) else obj[token]
    return obj


async def _confirm_drift(
    session: Session, client: KubeClient, kind: Kind, name: str, yes: bool, source_addr: str | None
) -> None:
    """List what resuming a suspended Kustomization reverts; go on only when there is
    nothing, with ``--yes``, or when the user says so."""
    title = f"{kind.info.kind} {session.namespace}/{name}"
    if kind.info.kind != "Kustomization":
        note(f"► drift is listed for Kustomizations only: {title} is resumed without a listing")
        return
    drift_command = f"weir drift export ks {name} -n {session.namespace}"
    try:
        async with session.within_timeout():
            drifted, secrets_drifted = await kustomization_drift(
                session, client, session.namespace, name, source_addr
            )
    except (CliError, TimeoutError) as err:
        cause = (
            err.message if isinstance(err, CliError) else f"timed out after {session.timeout:g}s"
        )
        note(f"! cannot list the drift: {cause}")
        found = "its drift cannot be listed"
    else:
        if not drifted and not secrets_drifted:
            note(f"► {title}: no drift while suspended")
            return
        for line in drift_lines(drifted, secrets_drifted):
            click.echo(line)
        count = len(drifted) + len(secrets_drifted)
        note(
            f"! resuming reverts these changes to what the source has ({drift_command} "
            "writes them as a patch to commit)"
        )
        found = f"{count} object{'s' * (count != 1)} drifted while it was suspended"
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            f"{title}: {found}, and resuming reverts the drift: capture it ({drift_command}) "
            "or resume with --yes"
        )
    if not click.confirm(f"Resume {title} and revert these changes?", default=False, err=True):
        raise CliError(f"{title} not resumed")


def _make_resume(kind: Kind) -> click.Command:
    words = " ".join(kind.words)

    @click.command(
        help=f"Resume the {kind.info.kind} NAME.\n\n\b\nExample:\n  weir resume {words} NAME"
    )
    @click.argument("name")
    @click.option(
        "-y", "--yes", is_flag=True, help="do not ask before reverting drift (a Kustomization)."
    )
    @click.option(
        "--with-source",
        is_flag=True,
        hidden=kind.source is None,
        help="reconcile its source first (the hotfix just committed is then what the drift is "
        "listed against).",
    )
    @click.option(
        "--source-addr",
        metavar="URL",
        default=None,
        hidden=kind.info.kind != "Kustomization",
        help="the source controller's artifact server as this machine reaches it, to list "
        "the drift (default: the artifact URL the source's status gives).",
    )
    @cluster_command
    async def command(
        session: Session, name: str, yes: bool, with_source: bool, source_addr: str | None
    ) -> None:
        client = await session.client()
        title = f"{kind.info.kind} {session.namespace}/{name}"
        current = await client.get(kind.info, session.namespace, name)
        if with_source:
            await _reconcile_source(session, client, kind, current)
        suspended = bool((current.get("spec") or {}).get("suspend"))
        if suspended and kind.reconciled:
            await _confirm_drift(session, client, kind, name, yes, source_addr)
        record = Suspension.from_annotations(current["metadata"].get("annotations"))
        # Resumed and the record gone in one write: a resumed object never shows a record.
        patch = {
            "metadata": {"annotations": dict.fromkeys(ANNOTATIONS)},
            "spec": {"suspend": False},
        }
        obj = await client.patch(kind.info, session.namespace, name, patch)
        if suspended:
            message = _resumed_message(record, await current_user(client))
            await _record_event(client, obj, "Normal", "Resumed", message)
            note(f"✔ {title} {message}")
        if not kind.reconciled:
            await report_judged(client, kind, obj)
            return
        async with session.within_timeout():
            await request_and_wait(client, kind, session.namespace, name)

    return command


async def _reconcile_source(
    session: Session, client: KubeClient, kind: Kind, obj: dict[str, Any]
) -> None:
    """Reconcile the source ``obj`` reads, and wait for it."""
    source = kind.source(obj) if kind.source is not None else None
    source_kind = find_kind(source[0]) if source is not None else None
    if source is None or source_kind is None:
        raise CliError(f"{kind.info.kind} has no source weir serves", Exit.USAGE)
    async with session.within_timeout():
        await request_and_wait(client, source_kind, source[1], source[2])


def _resumed_message(record: Suspension, user: str | None) -> str:
    age = record.age(datetime.datetime.now(datetime.UTC))
    after = f" after {describe_age(age)}" if age is not None else ""
    who = user or "an unknown user"
    return f"reconciliation resumed by {who}{after} (suspended {record.who_and_why()})"


attach(suspend, _make_suspend)
attach(resume, _make_resume)
