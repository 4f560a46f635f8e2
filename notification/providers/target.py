"""What a send needs, resolved once from a Provider and its Secrets, and the two errors.

A :class:`Target` holds credentials: the fields that may carry one (the address, which for
Slack, Discord or Teams is itself the secret, the token, the password, the headers and the
proxy) are left out of its repr, and :meth:`Target.redact` takes their values out of any text
before it becomes an error message or a log field.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from controllers.cel import Expression

__all__ = ["FLUX_RETRY", "DeliveryError", "ProviderError", "RetryPolicy", "Target", "endpoint_of"]


class ProviderError(Exception):
    """The Provider cannot be used as it is: a type weir does not implement, an address that
    is not one, a Secret key that is missing or malformed, an invalid ``commitStatusExpr``.
    Terminal until the Provider or its Secrets change; the message names what is wrong and
    never holds a secret."""


class DeliveryError(Exception):
    """An alert was not delivered: the endpoint failed after the retries, refused it, or did
    not answer within the Provider's timeout. The message names the endpoint by scheme and
    host only, never a path, a query, a token or a signature."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed request is tried again: Flux's notifiers use go-retryablehttp with these
    numbers. A network error, a 429 or a 5xx (but 501) is retried after ``min_wait`` doubled
    per attempt, at most ``max_wait`` (a ``Retry-After`` of a 429 or 503 is honoured up to
    ``max_wait``). The Provider's timeout bounds the whole, retries included, as in Flux."""

    retries: int = 4
    min_wait: float = 2.0
    max_wait: float = 30.0

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        return float(min(self.min_wait * 2**attempt, self.max_wait))


FLUX_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Target:
    """A Provider resolved with its Secrets: everything a send needs. Made by
    ``resolve_target``; ``dataclasses.replace`` gives a variant (another ``retry`` policy)."""

    type: str
    # "namespace/name" of the Provider, for messages and logs.
    provider: str
    # Where alerts go (a URL, or for commit statuses the repository's URL): from the Secret's
    # 'address' when it has one, else spec.address.
    address: str = field(default="", repr=False)
    channel: str = ""
    username: str = ""
    token: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    # The Secret's 'headers', in the order given.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # An http(s) proxy URL, credentials included.
    proxy: str | None = field(default=None, repr=False)
    # None: the system's trust.
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    timeout: float = 15.0
    retry: RetryPolicy = FLUX_RETRY
    # The Provider object (as the API serves it) and its UID, for commit status keys.
    provider_object: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    provider_uid: str = ""
    commit_status_expr: Expression | None = field(default=None, repr=False, compare=False)

    @property
    def endpoint(self) -> str:
        """The address as messages may show it: scheme, host and port only."""
        return endpoint_of(self.address)

    def redact(self, text: str) -> str:
        """``text`` with every credential this target holds replaced by ``***``."""
        secrets = [self.token, self.password, self.address, *(value for _, value in self.headers)]
        if self.proxy:
            parts = urlsplit(self.proxy)
            secrets += [self.proxy, parts.password or "", parts.username or ""]
        address = urlsplit(self.address)
        # A webhook URL's path and query are often the secret (Slack, Discord, Teams).
        secrets += [address.path if len(address.path) > 1 else "", address.query]
        # Longest first, so that a value containing another is replaced whole.
        for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def endpoint_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without credentials, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(invalid address)"
    if not parts.scheme or not host:
        return "(invalid address)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
