"""Pull requests on a Git host (Gitea or GitHub): weir's pull-request mode of an
ImageUpdateAutomation, which Flux does not have (image-automation-controller#524).

The reconciler pushes the automation's commit to a branch of the repository (the head branch),
then :meth:`PullRequestClient.ensure` keeps exactly one open pull request from that branch to
the base branch: it opens one when there is none, and otherwise refreshes the title and body of
the one there is, so that a newer tag, force-pushed to the same branch, updates the same pull
request. Both hosts take the same calls (``/repos/{owner}/{repo}/pulls``); they differ in
authentication, in how the open pull request of a branch is found (GitHub filters by
``head=owner:branch``; Gitea by ``base_branch`` only, so its pages are read, following their
``Link`` headers, and matched on ``head.ref``), and in how they refuse a second pull request
for the same branches (Gitea 409, GitHub 422).

A pull request that was merged is history: the next change opens a new one. One that a human
closed without merging, at the very commit the branch still points at, is a "no" to that
change: :meth:`~PullRequestClient.ensure` given that commit opens nothing
(``declined``) until the branch moves, as Renovate and Dependabot leave a closed update alone.

The API root comes from the GitRepository's URL as the notification controller finds a Git
host's API (:mod:`controllers.githost`), or from ``spec.git.push.pullRequest.address``. Errors
are :class:`PullRequestError`, worded for the user to act on and never holding the token.
Nothing is retried here: a failed run is retried by the reconciler's backoff.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit

import httpx
import structlog

from controllers.githost import GITHUB_API_VERSION, api_root, parse_git_address
from controllers.secrets import SecretData, SecretError
from controllers.tls import TLSConfigError, context_from_secret, system_context
from image_automation.api_v1 import PullRequestProvider as Provider

__all__ = [
    "PROVIDERS",
    "Action",
    "Host",
    "Provider",
    "PullRequest",
    "PullRequestClient",
    "PullRequestError",
    "PullRequestOutcome",
    "as_posted",
    "host_for",
    "same_text",
]

log = structlog.get_logger()

PROVIDERS: tuple[Provider, ...] = ("gitea", "github")
Action = Literal["created", "updated", "unchanged", "declined"]

DEFAULT_TIMEOUT_SECONDS = 30.0
USER_AGENT = "weir-image-automation-controller"
GITHUB_ACCEPT = "application/vnd.github+json"
# Gitea serves at most 50 items a page by default (MaxResponseItems), GitHub 100.
PAGE_SIZE = {"gitea": 50, "github": 100}
# Pages of open pull requests read before giving up: 1,000 on Gitea.
MAX_PAGES = 20
# An answer bigger than this is no pull request list (a page of 50 is about 0.5 MiB).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# The hosts' limits: Gitea's title is 255 characters, GitHub's body 65,536.
MAX_TITLE_CHARS = 255
MAX_BODY_CHARS = 65_536
# What of a host's error message goes into ours.
MESSAGE_CHARS = 300


class PullRequestError(Exception):
    """The host refused or did not answer: the message says what to check, never the token.
    ``status`` is the host's HTTP status, None for a network error or a setting that
    cannot be used."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Host:
    """One repository on a Git host's API, and how to reach it. Made by :func:`host_for`."""

    provider: Provider
    # The API's root: http(s)://host/api/v1 (Gitea), https://api.github.com, ...
    api_url: str
    owner: str
    repository: str
    token: str = field(repr=False)
    # Where the token comes from, for messages: "the token in secret 'ns/name'".
    token_source: str = "the token"  # noqa: S105 - a description, not a token
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    proxy: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def full_name(self) -> str:
        """``owner/repository``."""
        return f"{self.owner}/{self.repository}"

    @property
    def repository_url(self) -> str:
        """The repository's API URL."""
        return (
            f"{self.api_url}/repos/{quote(self.owner, safe='')}/{quote(self.repository, safe='')}"
        )

    @property
    def endpoint(self) -> str:
        """The API's scheme, host and port, as messages name it."""
        parts = urlsplit(self.api_url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def redact(self, text: str) -> str:
        """``text`` without the token or the proxy's credentials."""
        secrets = [self.token]
        if self.proxy:
            parts = urlsplit(self.proxy)
            secrets += [self.proxy, parts.password or "", parts.username or ""]
        for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def host_for(
    provider: Provider,
    repository_url: str,
    secret: SecretData,
    *,
    address: str | None = None,
    proxy: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Host:
    """The :class:`Host` of the repository at ``repository_url`` (the GitRepository's
    ``spec.url``: https, http, ssh or scp-like), with the token and TLS settings of
    ``secret`` and the API at ``address`` when given. Raises :class:`PullRequestError`."""
    try:
        root, path = parse_git_address(repository_url)
    except ValueError as err:
        raise PullRequestError(
            f"the GitRepository's URL is not a repository on a Git host: {err}"
        ) from None
    segments = path.split("/")
    if address is not None:
        # The API may live under a path; the repository is then the URL's last two segments.
        api_url = address.strip().rstrip("/")
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PullRequestError("spec.git.push.pullRequest.address is not an http(s) URL")
        segments = segments[-2:]
    else:
        api_url = api_root(provider, root)
    if len(segments) != 2 or not all(segments):
        raise PullRequestError(
            f"the GitRepository's URL names '{path}', not <owner>/<repository>: for a host "
            "served under a path, set spec.git.push.pullRequest.address to its API URL"
        )
    token, tls = _credentials(secret)
    return Host(
        provider=provider,
        api_url=api_url,
        owner=segments[0],
        repository=segments[1],
        token=token,
        token_source=f"the token in secret '{secret.ref}'",
        tls=tls,
        proxy=proxy,
        timeout=timeout,
    )


def _credentials(secret: SecretData) -> tuple[str, ssl.SSLContext]:
    """The token (``token``, else ``password``, as the notification controller's Gitea and
    GitHub providers take it) and the TLS context of ``secret``."""
    try:
        token = secret.get("token", "").strip() or secret.get("password", "").strip()
        tls = context_from_secret(secret, secret.ref)
    except (SecretError, TLSConfigError) as err:
        raise PullRequestError(str(err)) from None
    if not token:
        raise PullRequestError(f"secret '{secret.ref}' has no 'token' for the Git host's API")
    if not all(" " <= c <= "~" for c in token):
        # It goes into a header.
        raise PullRequestError(
            f"secret '{secret.ref}' key 'token' has a line break or a character that is not "
            "printable ASCII"
        )
    return token, tls


@dataclass(frozen=True)
class PullRequest:
    """A pull request as the host shows it."""

    number: int
    # The page people open (html_url).
    url: str
    title: str
    body: str
    # "open" or "closed" (merged or not).
    state: str
    merged: bool
    head_ref: str
    base_ref: str
    # The commit the pull request's head is at, as the host recorded it.
    head_sha: str


@dataclass(frozen=True)
class PullRequestOutcome:
    """What :meth:`PullRequestClient.ensure` did: ``created`` a pull request, ``updated``
    its title or body, left it ``unchanged``, or found it ``declined`` (closed unmerged at
    this very commit) and opened none."""

    action: Action
    pull_request: PullRequest


class _TooLarge(Exception):
    """An answer over ``MAX_ANSWER_BYTES``."""


class _AlreadyExists(Exception):
    """The host refused a new pull request: one is open for these branches."""


class PullRequestClient:
    """The pull requests of one repository: ``async with PullRequestClient(host) as client``."""

    def __init__(self, host: Host, *, page_size: int | None = None) -> None:
        self.host = host
        self.page_size = page_size or PAGE_SIZE[host.provider]
        if host.provider == "github":
            headers = {
                "Accept": GITHUB_ACCEPT,
                "X-GitHub-Api-Version": GITHUB_API_VERSION,
                "Authorization": f"Bearer {host.token}",
            }
        else:
            headers = {"Accept": "application/json", "Authorization": f"token {host.token}"}
        self._client = httpx.AsyncClient(
            verify=host.tls if host.tls is not None else system_context(),
            proxy=host.proxy,
            timeout=httpx.Timeout(host.timeout),
            # HTTPS_PROXY and NO_PROXY when no proxy is given, as Go's clients do.
            trust_env=True,
            # GitHub redirects a renamed repository; httpx drops the token on another origin.
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": USER_AGENT, **headers},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def ensure(
        self, head: str, base: str, title: str, body: str, *, head_sha: str | None = None
    ) -> PullRequestOutcome:
        """Keep one open pull request from ``head`` to ``base`` with ``title`` and ``body``.
        With ``head_sha`` (the commit ``head`` points at), a pull request closed unmerged at
        that commit is respected: nothing is opened (``declined``)."""
        title, body = as_posted(title, body)
        if not title:
            raise PullRequestError("the pull request's title is empty")
        existing = await self.find_open(head, base)
        if existing is None and head_sha is not None:
            closed = await self.newest_closed(head, base)
            if closed is not None and not closed.merged and closed.head_sha == head_sha:
                return PullRequestOutcome("declined", closed)
        if existing is None:
            try:
                created = await self._create(head, base, title, body)
            except _AlreadyExists as err:
                # Opened since we looked (by another replica, or a human): take it over.
                existing = await self.find_open(head, base)
                if existing is None:
                    raise PullRequestError(str(err), status=409) from None
            else:
                log.info("pull request opened", number=created.number, head=head, base=base)
                return PullRequestOutcome("created", created)
        if existing.title == title and same_text(existing.body, body):
            return PullRequestOutcome("unchanged", existing)
        updated = await self._edit(existing.number, {"title": title, "body": body})
        log.info("pull request updated", number=updated.number, head=head, base=base)
        return PullRequestOutcome("updated", updated)

    async def find_open(self, head: str, base: str) -> PullRequest | None:
        """The open pull request from ``head`` (a branch of this repository, not a fork's) to
        ``base``, or None. The hosts allow one at a time."""
        async for item in self._pages("open", head, base, max_pages=MAX_PAGES):
            if _is_from(item, self.host.full_name, head, base):
                return _pull_request(item)
        return None

    async def close(self, number: int, comment: str | None = None) -> PullRequest:
        """Close pull request ``number``, saying ``comment`` first when given (for a pull
        request whose change the base branch already has)."""
        if comment:
            await self._request(
                "POST",
                f"{self.host.repository_url}/issues/{number}/comments",
                f"comment on pull request #{number}",
                payload={"body": comment},
            )
        return await self._edit(number, {"state": "closed"})

    async def newest_closed(self, head: str, base: str) -> PullRequest | None:
        """The most recently closed pull request from ``head`` to ``base`` on the first page,
        or None: an older one says nothing about the commit the branch is at now."""
        async for item in self._pages("closed", head, base, max_pages=1):
            if _is_from(item, self.host.full_name, head, base):
                return _pull_request(item)
        return None

    async def _pages(
        self, state: str, head: str, base: str, *, max_pages: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The pull requests of ``state`` against ``base`` (GitHub: from ``head`` only), page
        after page as the ``Link`` headers lead."""
        size = self.page_size
        params: dict[str, str | int]
        if self.host.provider == "github":
            params = {"state": state, "head": f"{self.host.owner}:{head}", "base": base}
            params |= {"per_page": size, "sort": "updated", "direction": "desc"}
        else:
            # Gitea 1.24+ filters by base_branch (older ones ignore it); head is matched here.
            params = {"state": state, "base_branch": base, "limit": size}
            params["sort"] = "recentclose" if state == "closed" else "oldest"
        url: str | None = f"{self.host.repository_url}/pulls"
        what = f"list the pull requests of {self.host.full_name}"
        for _ in range(max_pages):
            if url is None:
                return
            answer, response = await self._request("GET", url, what, params=params)
            if not isinstance(answer, list):
                raise PullRequestError(
                    f"{self.host.endpoint} answered no list when asked to {what}"
                )
            for item in answer:
                if isinstance(item, dict):
                    yield item
            url, params = self._next_page(response), {}
        if url is not None and max_pages == MAX_PAGES:
            raise PullRequestError(
                f"{self.host.full_name} has more than {MAX_PAGES * size} open pull requests "
                f"against '{base}': the automation's was not among them"
            )

    def _next_page(self, response: httpx.Response) -> str | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        current, following = response.url, response.url.join(link)
        if (following.scheme, following.host, following.port) != (
            current.scheme,
            current.host,
            current.port,
        ):
            # The token must not follow a link to another host.
            raise PullRequestError(f"{self.host.endpoint} linked its next page to another host")
        return str(following)

    async def _create(self, head: str, base: str, title: str, body: str) -> PullRequest:
        what = f"open a pull request from '{head}' to '{base}' in {self.host.full_name}"
        payload = {"title": title, "body": body, "head": head, "base": base}
        try:
            # The repository answered the lookup before: a 404 here is a missing branch.
            missing = f"the branch '{head}' or '{base}' does not exist (was the change pushed?)"
            answer, _ = await self._request(
                "POST", f"{self.host.repository_url}/pulls", what, payload=payload, missing=missing
            )
        except PullRequestError as err:
            # Gitea says 409; GitHub 422 "A pull request already exists for owner:branch."
            if err.status == 409 or (err.status == 422 and "already exists" in str(err)):
                raise _AlreadyExists(str(err)) from None
            raise
        return _pull_request(answer)

    async def _edit(self, number: int, payload: dict[str, str]) -> PullRequest:
        what = f"update pull request #{number} of {self.host.full_name}"
        url = f"{self.host.repository_url}/pulls/{number}"
        answer, _ = await self._request("PATCH", url, what, payload=payload)
        return _pull_request(answer)

    async def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        params: Mapping[str, str | int] | None = None,
        payload: Any = None,
        missing: str | None = None,
    ) -> tuple[Any, httpx.Response]:
        """The decoded answer to one request, and the response (headers, URL); a
        :class:`PullRequestError` for anything but a 2xx JSON answer (``missing`` says what a
        404 may mean besides a wrong repository)."""
        content = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            async with self._client.stream(
                method, url, params=params, content=content, headers=headers
            ) as response:
                raw = await _read_bounded(response)
        except _TooLarge:
            raise PullRequestError(
                f"{self.host.endpoint} answered more than {MAX_ANSWER_BYTES} bytes when asked "
                f"to {what}"
            ) from None
        except httpx.TimeoutException:
            raise PullRequestError(
                f"{self.host.endpoint} did not answer within {self.host.timeout:g}s when "
                f"asked to {what}"
            ) from None
        except httpx.HTTPError as err:
            problem = self.host.redact(str(err) or type(err).__name__)
            raise PullRequestError(
                f"cannot reach {self.host.endpoint} to {what}: {problem}"
            ) from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if not response.is_success:
            raise self._refusal(response, answer, what, missing)
        if answer is None:
            raise PullRequestError(
                f"{self.host.endpoint} answered {response.status_code} without JSON when asked "
                f"to {what}: is {self.host.api_url} the {self.host.provider} API?"
            )
        return answer, response

    def _refusal(
        self, response: httpx.Response, answer: Any, what: str, missing: str | None
    ) -> PullRequestError:
        """The error for a refused request, with what the user can do about it."""
        status = response.status_code
        said = self.host.redact(_host_message(answer))
        quoted = f": {said}" if said else ""
        host, source = self.host.endpoint, self.host.token_source
        if status == 401:
            message = (
                f"{host} refused {source} (401 Unauthorized) when asked to {what}: the "
                "token is wrong, expired or revoked"
            )
        elif status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
            message = f"{host} rate-limits {source} (403) when asked to {what}{quoted}"
        elif status == 403:
            message = (
                f"{source} may not {what} (403 Forbidden){quoted}: it needs write access to "
                "the repository's pull requests (Gitea: scope write:repository; GitHub: "
                "'Pull requests: read and write')"
            )
        elif status == 404 and missing:
            message = f"{host} answered 404 Not Found when asked to {what}: {missing}"
        elif status == 404:
            message = (
                f"{host} answered 404 Not Found when asked to {what}: check the "
                f"GitRepository's URL and the provider ({self.host.provider}, API at "
                f"{self.host.api_url}), and that {source} can see {self.host.full_name}"
            )
        elif status == 422:
            message = (
                f"{host} refused to {what} (422){quoted}: do both branches exist, and does "
                "the head branch differ from the base?"
            )
        else:
            phrase = f"{status} {response.reason_phrase}".strip()
            message = f"{host} answered {phrase} when asked to {what}{quoted}"
        return PullRequestError(message, status=status)


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _host_message(answer: Any) -> str:
    """The host's own words in an error answer: ``message``, and GitHub's ``errors``."""
    if not isinstance(answer, dict):
        return ""
    parts = [str(answer.get("message") or "")]
    for error in answer.get("errors") or ():
        if isinstance(error, dict):
            parts.append(str(error.get("message") or error.get("code") or ""))
        elif isinstance(error, str):
            parts.append(error)
    text = " ".join(" ".join(p for p in parts if p).split())
    return text[:MESSAGE_CHARS]


def _is_from(item: Mapping[str, Any], full_name: str, head: str, base: str) -> bool:
    """Whether ``item`` goes from ``head`` of this very repository (no fork) to ``base``."""
    head_part, base_part = item.get("head") or {}, item.get("base") or {}
    repository = head_part.get("repo") or {}
    return (
        head_part.get("ref") == head
        and base_part.get("ref") == base
        and str(repository.get("full_name", "")).lower() == full_name.lower()
    )


def _pull_request(item: Any) -> PullRequest:
    if not isinstance(item, dict) or not isinstance(item.get("number"), int):
        raise PullRequestError("the Git host answered something that is not a pull request")
    head, base = item.get("head") or {}, item.get("base") or {}
    return PullRequest(
        number=item["number"],
        url=str(item.get("html_url") or ""),
        title=str(item.get("title") or ""),
        body=str(item.get("body") or ""),
        state=str(item.get("state") or ""),
        # Gitea says "merged"; GitHub's lists only "merged_at".
        merged=bool(item.get("merged")) or item.get("merged_at") is not None,
        head_ref=str(head.get("ref") or ""),
        base_ref=str(base.get("ref") or ""),
        head_sha=str(head.get("sha") or ""),
    )


def as_posted(title: str, body: str) -> tuple[str, str]:
    """``title`` and ``body`` as a host keeps them: the title's first line, each cut to the
    hosts' limits."""
    return _first_line(title)[:MAX_TITLE_CHARS], body[:MAX_BODY_CHARS]


def same_text(a: str, b: str) -> bool:
    """Equal but for line endings and surrounding blank space, which hosts may change."""
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def _first_line(title: str) -> str:
    lines = title.strip().splitlines()
    return lines[0].strip() if lines else ""
