"""``weir trigger receiver``: post a webhook to a Receiver, as its sender would.

As ``flux trigger receiver``: the hook path is ``/hook/`` + sha256 of the token, the
Receiver's name and its namespace (``notification.api_v1.webhook_path``), and the request goes
to ``--url`` (the receiver server, reachable from where the command runs) plus that path.

Unlike ``flux``, which takes ``--token`` and signs only generic and generic-hmac requests,
weir reads the Receiver (its type and events) and the token from its Secret with the user's
credentials, and signs the request the way the Receiver's type expects it (``SIGNERS``): a
GitHub or Bitbucket HMAC signature, GitLab's or Harbor's token header, Nexus's SHA-1 HMAC, ...
With ``--token`` it needs no cluster at all, as ``flux``'s does (the type then comes from
``--type``). The token never leaves the request: it is not printed or logged, and an error
names the receiver server by its address without the hook path.

Retries as ``flux``'s: connection errors and 404, 408, 429, 5xx answers (a Receiver created
a moment ago may not be served yet) are retried ``--retries`` times, ``--retry-delay`` apart,
within ``--timeout``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from importlib.metadata import version
from urllib.parse import urlsplit

import click
import httpx

from controllers.api import parse_duration
from notification.api_v1 import Receiver, webhook_path
from notification.receiver import TokenError, receiver_token
from weir.cli.app import CliError, Exit, Session, cluster_command, err_console, main, note
from weir.cli.kinds import group_of

__all__ = ["SIGNERS", "signed_headers", "trigger"]

REQUEST_TIMEOUT_SECONDS = 30.0
# Answers worth another try, as flux's: the path may not be served yet right after the
# Receiver was created or the server started, or the server is busy.
RETRYABLE = frozenset({404, 408, 429, 500, 502, 503, 504})
# What a response body may add to an error: a receiver's answer is short.
MAX_BODY_SHOWN = 200


def _hex_hmac(token: str, body: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(token.encode(), body, algorithm).hexdigest()


def _none(_token: str, _body: bytes, _event: str) -> dict[str, str]:
    return {}


def _generic_hmac(token: str, body: bytes, _event: str) -> dict[str, str]:
    return {"X-Signature": f"sha256={_hex_hmac(token, body)}"}


def _github(token: str, body: bytes, event: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": f"sha256={_hex_hmac(token, body)}", "X-GitHub-Event": event}


def _bitbucket(token: str, body: bytes, event: str) -> dict[str, str]:
    # Bitbucket Server signs as GitHub does, in the header without -256.
    return {"X-Hub-Signature": f"sha256={_hex_hmac(token, body)}", "X-Event-Key": event}


def _gitlab(token: str, _body: bytes, event: str) -> dict[str, str]:
    return {"X-Gitlab-Token": token, "X-Gitlab-Event": event}


def _harbor(token: str, _body: bytes, _event: str) -> dict[str, str]:
    return {"Authorization": token}


def _nexus(token: str, body: bytes, _event: str) -> dict[str, str]:
    return {"X-Nexus-Webhook-Signature": _hex_hmac(token, body, "sha1")}


def _cdevents(_token: str, _body: bytes, event: str) -> dict[str, str]:
    return {"Ce-Type": event}


Signer = Callable[[str, bytes, str], dict[str, str]]

SIGNERS: dict[str, tuple[Signer, str]] = {
    "generic": (_none, ""),
    "generic-hmac": (_generic_hmac, ""),
    "github": (_github, "push"),
    "gitlab": (_gitlab, "Push Hook"),
    "bitbucket": (_bitbucket, "repo:refs_changed"),
    "harbor": (_harbor, ""),
    "nexus": (_nexus, ""),
    "dockerhub": (_none, ""),
    "quay": (_none, ""),
    "acr": (_none, ""),
    "cdevents": (_cdevents, ""),
}
"""Each Receiver type weir's receiver server takes: the headers that sign a request to it,
from the token, the body and the event; and the event sent when none is chosen (GitHub's
``push``, GitLab's ``Push Hook``, Bitbucket Server's ``repo:refs_changed``). The gcr and
generic-oidc types need a token from an identity provider, and weir does not serve them."""


def signed_headers(receiver_type: str, token: str, body: bytes, event: str) -> dict[str, str]:
    """The headers of a request to a Receiver of ``receiver_type``: JSON, and its signature."""
    sign, _ = SIGNERS[receiver_type]
    return {
        "Content-Type": "application/json",
        "User-Agent": f"weir/{version('weir')}",
        **sign(token, body, event),
    }


def _event_for(receiver_type: str, chosen: str | None, events: list[str]) -> str:
    """The event to send: the one chosen, else the Receiver's first (GitHub's ``ping`` is
    never acted on), else the type's usual one."""
    if chosen:
        return chosen
    for event in events:
        if not (receiver_type == "github" and event == "ping"):
            return event
    return SIGNERS[receiver_type][1]


@group_of(main)
def trigger() -> None:
    """Send a Receiver a webhook, as a Git host or a registry would.

    \b
    Example:
      weir trigger receiver github --url=http://127.0.0.1:9292
    """


def _base_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _parse_delay(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@trigger.command("receiver")
@click.argument("name")
@click.option(
    "--url",
    required=True,
    envvar="WEIR_RECEIVER_URL",
    callback=_base_url,
    help="the receiver server's address, as the webhook's sender reaches it; a base path may "
    "follow ($WEIR_RECEIVER_URL).",
)
@click.option(
    "--token",
    envvar="WEIR_RECEIVER_TOKEN",
    help="the Receiver's token ($WEIR_RECEIVER_TOKEN keeps it out of ps and your history): "
    "then the cluster is not read, and --type says how to sign.",
)
@click.option(
    "--type",
    "type_",
    type=click.Choice(list(SIGNERS)),
    metavar="TYPE",
    help=f"with --token, the Receiver's type: {', '.join(SIGNERS)} (default generic).",
)
@click.option(
    "--event",
    help="the event to send (X-GitHub-Event, X-Gitlab-Event, X-Event-Key, Ce-Type); default "
    "the Receiver's first, else push, Push Hook, repo:refs_changed.",
)
@click.option("--payload", default="{}", show_default=True, help="the JSON body.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="tries after a connection error or a 404, 408, 429 or 5xx answer.",
)
@click.option(
    "--retry-delay",
    default="10s",
    show_default=True,
    callback=_parse_delay,
    help="the wait between tries.",
)
@cluster_command
async def receiver(
    session: Session,
    name: str,
    url: str,
    token: str | None,
    type_: str | None,
    event: str | None,
    payload: str,
    retries: int,
    retry_delay: float,
) -> None:
    """Post a webhook to Receiver NAME, signed as its type expects.

    It reads the Receiver and the token of its Secret from the cluster (or takes --token and
    --type), computes the hook path and posts --payload to --url plus that path. --url is the
    receiver server as the webhook's sender reaches it: the address hack/run-local.sh prints,
    the Ingress or LoadBalancer in front of the webhook-receiver Service, or, from your
    machine, http://127.0.0.1:9292 after `kubectl -n flux-system port-forward
    svc/webhook-receiver 9292:80`.

    \b
    Examples:
      weir trigger receiver github --url=http://127.0.0.1:9292
      WEIR_RECEIVER_TOKEN=... weir trigger receiver app --url=https://hooks.example.com \\
        --type=generic-hmac
    """
    try:
        json.loads(payload)
    except ValueError as err:
        raise CliError(f"--payload is not JSON: {err}", Exit.USAGE) from None
    title = f"Receiver {session.namespace}/{name}"
    events: list[str] = []
    if token is None:
        receiver_type, token, events = await _from_cluster(session, name, type_)
    else:
        receiver_type = type_ or "generic"
    if receiver_type not in SIGNERS:
        raise CliError(f"{title} is of type {receiver_type}, which weir does not serve")
    body = payload.encode()
    headers = signed_headers(receiver_type, token, body, _event_for(receiver_type, event, events))
    target = url + webhook_path(token, name, session.namespace)
    note(f"► triggering {title} at {url}")
    with err_console.status(f"posting to {title}"):
        async with session.within_timeout():
            status = await _post(title, target, url, headers, body, retries, retry_delay)
    note(f"✔ {title} triggered ({status})")


async def _from_cluster(
    session: Session, name: str, chosen_type: str | None
) -> tuple[str, str, list[str]]:
    """The Receiver's type, token and events, read from the cluster."""
    client = await session.client()
    obj = Receiver.from_dict(await client.get(Receiver.info, session.namespace, name))
    title = f"Receiver {session.namespace}/{name}"
    if chosen_type is not None and chosen_type != obj.spec.type:
        raise CliError(f"{title} is of type {obj.spec.type}, not {chosen_type}", Exit.USAGE)
    if obj.suspended:
        raise CliError(f"{title} is suspended: resume it first (weir resume)")
    if obj.spec.type not in SIGNERS:
        raise CliError(f"{title} is of type {obj.spec.type}, which weir does not serve")
    try:
        token = await receiver_token(client, obj)
    except TokenError as err:
        raise CliError(f"{title}: {err}") from None
    served = obj.status.webhook_path
    if served and served != webhook_path(token, name, session.namespace):
        note(f"  {title} has not read its Secret's current token yet: waiting for it")
    return obj.spec.type, token, list(obj.spec.events or [])


async def _post(
    title: str,
    target: str,
    shown: str,
    headers: dict[str, str],
    body: bytes,
    retries: int,
    delay: float,
) -> int:
    """POST until an answer that is not retried; its status, or ``CliError``. Errors name the
    server as ``shown``, never the hook path."""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as http:
        for attempt in range(retries + 1):
            try:
                response = await http.post(target, content=body, headers=headers)
            except httpx.HTTPError as err:
                # httpx may name the URL: only the server's address is shown.
                detail = str(err).replace(target, shown) or type(err).__name__
                problem, retryable = f"cannot reach {shown}: {detail}", True
            else:
                if 200 <= response.status_code < 300:
                    return response.status_code
                text = response.text.strip()[:MAX_BODY_SHOWN]
                problem = f"{shown} answered {response.status_code} {response.reason_phrase}"
                problem += f": {text}" if text else ""
                retryable = response.status_code in RETRYABLE
            if not retryable or attempt == retries:
                raise CliError(f"{title}: {problem}")
            note(f"  {problem}; trying again in {delay:g}s ({attempt + 1}/{retries})")
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
