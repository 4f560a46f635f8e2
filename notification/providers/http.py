"""Sending a provider's requests: one httpx client per delivery, with the Target's TLS, proxy
and timeout, and Flux's retries.

Each provider builds :class:`Outgoing` requests (pure data, so the unit tests read them);
:class:`Session` sends them. What is retried is what go-retryablehttp retries for Flux: network
errors (but a server certificate that does not verify), 429 and 5xx answers other than 501.
A request that still fails is a ``DeliveryError`` whose message names the endpoint by scheme
and host, with the credentials the Target holds taken out of anything the server or the
network stack said.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
import structlog

from controllers.tls import system_context
from notification.providers.target import DeliveryError, Target, endpoint_of

__all__ = ["JSON", "Outgoing", "Session", "basic_auth", "json_body"]

log = structlog.get_logger()

USER_AGENT = "weir-notification-controller"
# What of an error answer's body goes into a message: enough to say why, one line.
SNIPPET_CHARS = 200


def json_body(payload: Any) -> bytes:
    """``payload`` as compact JSON, UTF-8 (Go's ``json.Marshal`` leaves non-ASCII as is)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Outgoing:
    """One request a provider makes."""

    method: str
    url: str = field(repr=False)
    body: bytes = field(default=b"", repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Answers that are no failure besides 2xx (a 404 when looking a status up).
    accept: frozenset[int] = frozenset()
    # Checks a 2xx answer's body; returns why it is a failure, or None (Slack's API answers
    # 200 with {"ok": false}).
    check: Callable[[httpx.Response], str | None] | None = field(default=None, compare=False)

    @property
    def json(self) -> Any:
        """The body, decoded (for tests and for providers that read what they sent)."""
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        """The last value given for header ``name`` (case-insensitive), or None."""
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value
        return found


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code not in (429, 503):
        return None
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _retryable_status(status: int) -> bool:
    return status == 429 or (status >= 500 and status != 501)


def _retryable_error(err: httpx.HTTPError) -> bool:
    if isinstance(err, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.DecodingError):
        return False
    # A server certificate that does not verify fails the same way every time.
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return False
        cause = cause.__cause__ or cause.__context__
    return isinstance(err, httpx.TransportError)


class Session:
    """An httpx client for one delivery to ``target``; ``send`` retries as the Target's
    ``retry`` policy says."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._client = httpx.AsyncClient(
            verify=target.tls if target.tls is not None else system_context(),
            proxy=target.proxy,
            timeout=httpx.Timeout(target.timeout),
            # Flux's client takes HTTPS_PROXY/NO_PROXY from the environment when the Provider
            # names no proxy; httpx 0.28+ reads no ~/.netrc unasked.
            trust_env=True,
            # A redirect of a webhook is a failure to see, not a place to resend a signed body.
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
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

    async def send(self, request: Outgoing) -> httpx.Response:
        """``request``'s answer once it is a success (2xx, or one of ``accept``); a
        ``DeliveryError`` once it failed without retry or after the last one."""
        policy = self.target.retry
        attempts = policy.retries + 1
        where = endpoint_of(request.url)
        for attempt in range(attempts):
            retry_after: float | None = None
            problem: str | None
            try:
                response = await self._client.request(
                    request.method, request.url, content=request.body, headers=request.headers
                )
            except httpx.HTTPError as err:
                problem = self._describe_error(err)
                retry = _retryable_error(err)
            else:
                problem = self._problem(request, response)
                if problem is None:
                    return response
                retry = _retryable_status(response.status_code)
                retry_after = _retry_after(response)
            if not retry or attempt + 1 == attempts:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise DeliveryError(
                    f"{request.method} to {where} failed{tries}: {problem}"
                ) from None
            delay = policy.wait(attempt, retry_after)
            log.info(
                "alert request retried",
                provider=self.target.provider,
                type=self.target.type,
                endpoint=where,
                attempt=attempt + 1,
                delay=delay,
                error=problem,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _problem(self, request: Outgoing, response: httpx.Response) -> str | None:
        """Why ``response`` is a failure, or None."""
        status = response.status_code
        if response.is_success:
            why = request.check(response) if request.check is not None else None
            return None if why is None else self.target.redact(why)
        if status in request.accept:
            return None
        phrase = f"{status} {response.reason_phrase}".strip()
        body = " ".join(response.text.split())[:SNIPPET_CHARS] if response.content else ""
        return self.target.redact(f"HTTP {phrase}" + (f": {body}" if body else ""))

    def _describe_error(self, err: httpx.HTTPError) -> str:
        text = str(err) or type(err).__name__
        if isinstance(err, httpx.TimeoutException):
            text = f"{type(err).__name__} (no answer within {self.target.timeout:g}s)"
        return self.target.redact(text)


def basic_auth(username: str, password: str) -> tuple[str, str]:
    """An ``Authorization: Basic`` header."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


JSON = ("Content-Type", "application/json")
