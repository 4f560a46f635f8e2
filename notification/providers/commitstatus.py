"""Commit statuses: ``github``, ``gitlab``, ``gitea`` and ``bitbucket``.

As Flux's notifiers do, for an event with a revision in its metadata: the commit is the SHA in
the revision (``main@sha1:<sha>``, ``sha1:<sha>``, ``main/<sha>`` or the bare SHA), the state is
success for an info event and failure for an error one (Gitea: pending for a ``Progressing``
event, which the others skip), the description is the reason in words (``reconciliation
succeeded``), and the status key (GitHub's and Gitea's context, GitLab's name, Bitbucket's key
hashed) is the Provider's ``commitStatusExpr`` evaluated over ``event``, ``provider`` and
``alert``, or ``<kind>/<name>/<first part of the Provider's UID>`` lower-cased.

Before setting a status each looks up the commit's statuses and sets nothing when the newest
one with the same key already has the same state and description.

The repository comes from the address: ``https://host/owner/repo``, ``http://...``,
``ssh://git@host/owner/repo`` or ``git@host:owner/repo`` (ssh forms give ``https://host``),
``.git`` dropped. API roots: ``https://api.github.com`` for github.com, else GitHub Enterprise's
``<host>/api/v3``; GitLab's ``<host>/api/v4`` (the project by path or numeric ID); Gitea's
``<host>/api/v1``; Bitbucket Cloud's ``https://api.bitbucket.org/2.0`` whatever the host.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from controllers.cel import CelError
from controllers.githost import (
    BITBUCKET_API,
    GITHUB_ACCEPT,
    GITHUB_API_VERSION,
    api_root,
    parse_git_address,
)
from notification.api_v1beta3 import Alert
from notification.providers.event import (
    PROGRESSING,
    event_revision,
    involved,
    name_and_description,
)
from notification.providers.http import JSON, Outgoing, Session, basic_auth, json_body
from notification.providers.target import DeliveryError, Target

__all__ = [
    "BITBUCKET_API",
    "COMMIT_STATUS_TYPES",
    "StatusUpdate",
    "api_root",
    "commit_sha",
    "default_status_key",
    "is_duplicate",
    "parse_git_address",
    "plan_status",
    "post_status",
    "status_requests",
]

COMMIT_STATUS_TYPES = frozenset({"github", "gitlab", "gitea", "bitbucket"})
# What Flux's Bitbucket notifier sets as each status's link.
BITBUCKET_LINK = "https://bitbucket.org"
# How many of a commit's statuses are looked at for a duplicate (Flux's page size).
STATUS_PAGE = 50

_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")


def commit_sha(revision: str) -> str | None:
    """The commit SHA in a Flux revision, or None when it holds no SHA-1 (Flux's
    ``ExtractHashFromRevision``: after the last ``:``, else the last ``/`` segment)."""
    candidate = revision.rsplit(":", 1)[1] if ":" in revision else revision.rsplit("/", 1)[-1]
    return candidate.lower() if _SHA1.match(candidate) else None


def default_status_key(provider_uid: str, event: dict[str, Any]) -> str:
    """``<kind>/<name>/<UID's first part>``, lower-cased: unique per cluster (Provider)."""
    obj = involved(event)
    return f"{obj.get('kind', '')}/{obj.get('name', '')}/{provider_uid.split('-')[0]}".lower()


@dataclass(frozen=True)
class StatusUpdate:
    """The status to set on one commit."""

    sha: str
    state: str
    key: str
    description: str
    # Bitbucket's status name: kind/name.
    name: str


def _state(type_: str, event: dict[str, Any]) -> str | None:
    severity = event.get("severity")
    if event.get("reason") == PROGRESSING:
        return "pending" if type_ == "gitea" else None
    states = {
        "github": ("success", "failure"),
        "gitea": ("success", "failure"),
        "gitlab": ("success", "failed"),
        "bitbucket": ("SUCCESSFUL", "FAILED"),
    }[type_]
    if severity == "info":
        return states[0]
    if severity == "error":
        return states[1]
    return None


def _status_key(target: Target, event: dict[str, Any], alert: Alert) -> str:
    if target.commit_status_expr is None:
        return default_status_key(target.provider_uid, event)
    variables = {
        "event": event,
        "provider": dict(target.provider_object),
        "alert": alert.to_dict(),
    }
    try:
        return target.commit_status_expr.evaluate_string(variables)
    except CelError as err:
        raise DeliveryError(
            f"spec.commitStatusExpr of Provider '{target.provider}': {err}"
        ) from None


def plan_status(target: Target, event: dict[str, Any], alert: Alert) -> StatusUpdate | None:
    """The status ``event`` sets, or None for an event that sets none (no revision, a
    progressing event where the host has no pending state, a trace event). A revision without
    a commit SHA (an OCI digest) or a failing ``commitStatusExpr`` is a ``DeliveryError``."""
    revision = event_revision(event)
    state = _state(target.type, event)
    if revision is None or state is None:
        return None
    sha = commit_sha(revision)
    if sha is None:
        raise DeliveryError(f"no commit SHA in revision '{revision}'")
    name, description = name_and_description(event)
    key = _status_key(target, event, alert)
    if target.type == "bitbucket":
        # Bitbucket keys are at most 40 characters.
        key = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
    return StatusUpdate(sha=sha, state=state, key=key, description=description, name=name)


def _segment(text: str) -> str:
    return quote(text, safe="")


def status_requests(target: Target, update: StatusUpdate) -> tuple[Outgoing, Outgoing]:
    """The lookup of the commit's statuses and the request setting ``update``, as the host's
    API documents them (the repository is the address's; ``resolve_target`` checked it)."""
    host, repository = parse_git_address(target.address)
    api = api_root(target.type, host)
    sha = update.sha
    if target.type == "gitlab":
        project = f"{api}/projects/{_segment(repository)}"
        auth = (("PRIVATE-TOKEN", target.token),)
        query = urlencode({"name": update.key})
        lookup = Outgoing("GET", f"{project}/repository/commits/{sha}/statuses?{query}", b"", auth)
        body = {"state": update.state, "name": update.key, "description": update.description}
        return lookup, Outgoing("POST", f"{project}/statuses/{sha}", json_body(body), (JSON, *auth))
    owner, repo = (_segment(part) for part in repository.split("/"))
    if target.type == "github":
        repo_url = f"{api}/repos/{owner}/{repo}"
        headers = (
            ("Accept", GITHUB_ACCEPT),
            ("X-GitHub-Api-Version", GITHUB_API_VERSION),
            ("Authorization", f"Bearer {target.token}"),
        )
        lookup_url = f"{repo_url}/commits/{sha}/statuses?per_page={STATUS_PAGE}"
        body = {"state": update.state, "description": update.description, "context": update.key}
        return (
            Outgoing("GET", lookup_url, b"", headers),
            Outgoing("POST", f"{repo_url}/statuses/{sha}", json_body(body), (JSON, *headers)),
        )
    if target.type == "gitea":
        repo_url = f"{api}/repos/{owner}/{repo}"
        auth = (("Authorization", f"token {target.token}"),)
        lookup_url = f"{repo_url}/commits/{sha}/statuses?page=0&limit={STATUS_PAGE}"
        body = {
            "state": update.state,
            "target_url": "",
            "description": update.description,
            "context": update.key,
        }
        return (
            Outgoing("GET", lookup_url, b"", auth),
            Outgoing("POST", f"{repo_url}/statuses/{sha}", json_body(body), (JSON, *auth)),
        )
    # bitbucket: the token is "<user>:<app password>".
    user, _, password = target.token.partition(":")
    auth = (basic_auth(user, password),)
    statuses = f"{api}/repositories/{owner}/{repo}/commit/{sha}/statuses/build"
    body = {
        "key": update.key,
        "url": BITBUCKET_LINK,
        "state": update.state,
        "name": update.name,
        "description": update.description,
    }
    return (
        Outgoing("GET", f"{statuses}/{_segment(update.key)}", b"", auth, accept=frozenset({404})),
        Outgoing("POST", statuses, json_body(body), (JSON, *auth)),
    )


def _newest_with_key(statuses: list[Any], key_field: str, key: str) -> dict[str, Any] | None:
    """The newest status (highest ``id``, else the first listed) with ``key``."""
    matching = [s for s in statuses if isinstance(s, dict) and s.get(key_field) == key]
    if not matching:
        return None
    if all(isinstance(s.get("id"), int) for s in matching):
        return max(matching, key=lambda s: int(s["id"]))
    return matching[0]


def is_duplicate(type_: str, answer: Any, update: StatusUpdate) -> bool:
    """Whether the looked-up statuses (the lookup's decoded answer) already end in
    ``update``: same key, state and description."""
    if type_ == "bitbucket":
        return (
            isinstance(answer, dict)
            and answer.get("state") == update.state
            and answer.get("description") == update.description
        )
    if not isinstance(answer, list):
        return False
    if type_ == "gitlab":
        newest = _newest_with_key(answer, "name", update.key)
        state_field = "status"
    elif type_ == "gitea":
        newest = _newest_with_key(answer, "context", update.key)
        state_field = "status"  # Gitea's statuses say "status" where GitHub says "state"
    else:
        newest = _newest_with_key(answer, "context", update.key)
        state_field = "state"
    return (
        newest is not None
        and newest.get(state_field) == update.state
        and newest.get("description") == update.description
    )


def _decoded(response: httpx.Response) -> Any:
    if response.status_code == 404 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


async def post_status(session: Session, target: Target, update: StatusUpdate) -> None:
    """Set ``update`` on its commit unless the newest status with its key is the same."""
    lookup, create = status_requests(target, update)
    answer = _decoded(await session.send(lookup))
    if is_duplicate(target.type, answer, update):
        return
    await session.send(create)
