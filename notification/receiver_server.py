"""The receiver server: ``POST /hook/<digest>`` from Git hosts and registries, turned into
``reconcile.fluxcd.io/requestedAt`` on the objects a Receiver names.

As Flux's receiver server (``internal/server/receiver_handlers.go``), hardened as the issue
asks: the body is capped (3 MiB, 413) by ``controllers.httpserver`` before anything here runs;
the path is looked up in an index of the Receivers' ``status.webhookPath`` (404 when unknown);
each path has a token bucket (429 when spent) before the Secret is read or a signature checked;
a suspended or not Ready Receiver answers 503; the path must still be the one the current
token gives (a rotated token retires the old path at once); the request is validated for the
Receiver's type (``notification.webhooks``: 401 not authentic, 400 not the sender's payload,
200 and nothing done for an event the Receiver does not handle; ``notification.oidc`` for a
generic-oidc Receiver's bearer token). Then every resource is selected (by name, or ``*`` and
``matchLabels``), filtered with the CEL ``resourceFilter`` and ``resources[].filter``, and
annotated with a merge patch; a resource that fails makes the answer 500, as in Flux.

Answers carry no body: nothing about the Receiver or why a request was refused. This server's
log lines name at most the path's digest prefix, never a token or a signature.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from controllers import conditions as cond
from controllers.api import ResourceInfo, object_key
from controllers.cel import CelError, compile_expression
from controllers.httpserver import HttpServer, Request, Response, serve_http
from controllers.informer import Informer
from controllers.kube import KubeClient, KubeError
from controllers.manager import Service, ServiceContext
from controllers.reconcile import REQUESTED_AT
from notification.api_v1 import WEBHOOK_PREFIX, Receiver, ReceiverResource, webhook_path
from notification.oidc import OIDCRefused, OIDCVerifier
from notification.receiver import TokenError, receiver_token
from notification.targets import target_info
from notification.webhooks import ACCEPTED, Verdict, content_type, validate

__all__ = ["ReceiverHandler", "TokenBucket", "receiver_service", "requested_at"]

log = structlog.get_logger()

FIELD_MANAGER = "notification-controller"
# Per webhook path: a burst of this many requests, refilled at this rate per second.
RATE_BURST = 10
RATE_PER_SECOND = 2.0
# A request that comes before the Receivers are listed waits at most this long (then 503).
SYNC_WAIT_SECONDS = 10.0
DIGEST_LENGTH = 64
DIGEST_SHOWN = 8
_HEX = frozenset("0123456789abcdef")


def requested_at(now_ns: int | None = None) -> str:
    """The ``requestedAt`` value Flux's receiver writes: Go's ``time.Time.String()`` in UTC
    (``2026-01-02 15:04:05.123456789 +0000 UTC``), without the monotonic clock reading."""
    seconds, nanos = divmod(time.time_ns() if now_ns is None else now_ns, 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{when}{'.' + fraction if fraction else ''} +0000 UTC"


class TokenBucket:
    """``burst`` requests at once, then ``rate`` per second."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.oidc = OIDCVerifier()
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Failed(Exception):
    """A resource could not be reconciled; the message names it, never the request."""


@dataclass
class _Filters:
    """The CEL filters of one request: the Receiver's ``resourceFilter`` and a resource's
    own ``filter``, over ``res`` (the object's apiVersion, kind and metadata), ``req`` (the
    JSON body) and, for a generic-oidc Receiver, ``claims`` (the verified token's)."""

    request: dict[str, Any]
    resource_filter: str | None
    claims: dict[str, Any] | None = None

    def accepts(self, resource: ReceiverResource, obj: dict[str, Any]) -> bool:
        variables = {
            "res": {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj},
            "req": self.request,
        }
        if self.claims is not None:
            variables["claims"] = self.claims
        for source in (self.resource_filter, resource.filter):
            if not source:
                continue
            try:
                if not compile_expression(source).evaluate_bool(variables):
                    return False
            except CelError as err:
                raise _Failed(str(err)) from err
        return True


def _digest_prefix(path: str) -> str:
    """What the log shows of a webhook path: the first characters of its digest."""
    return path.removeprefix(WEBHOOK_PREFIX)[:DIGEST_SHOWN]


def _is_hook_path(path: str) -> bool:
    digest = path.removeprefix(WEBHOOK_PREFIX)
    return path.startswith(WEBHOOK_PREFIX) and len(digest) == DIGEST_LENGTH and set(digest) <= _HEX


def _status_path(obj: Mapping[str, Any]) -> str | None:
    path = (obj.get("status") or {}).get("webhookPath")
    return path if isinstance(path, str) and path else None


class ReceiverHandler:
    """Answers webhook requests for the Receivers ``informer`` holds."""

    def __init__(
        self,
        client: KubeClient,
        informer: Informer,
        *,
        no_cross_namespace_refs: bool,
        rate: float = RATE_PER_SECOND,
        burst: int = RATE_BURST,
    ) -> None:
        self.client = client
        self.informer = informer
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.rate = rate
        self.burst = burst
        self.oidc = OIDCVerifier()
        # webhookPath -> Receiver key; checked against the informer's copy on every hit and
        # rebuilt from the informer on a miss.
        self._index: dict[str, str] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def handle(self, request: Request) -> Response:
        """The answer to one request; its body is always empty."""
        path = request.path
        if not _is_hook_path(path):
            return self._refuse("", 404, "not a webhook path")
        if request.method != "POST":
            return Response(405, headers={"Allow": "POST"})
        try:
            async with asyncio.timeout(SYNC_WAIT_SECONDS):
                await self.informer.synced.wait()
        except TimeoutError:
            return self._refuse(path, 503, "receivers not listed yet")
        raw = self._lookup(path)
        if raw is None:
            return self._refuse(path, 404, "no receiver has this path")
        key = object_key(raw)
        if not self._bucket(path).take(time.monotonic()):
            return self._refuse(path, 429, "rate limited", receiver=key)
        try:
            receiver = Receiver.from_dict(raw)
        except ValidationError:
            return self._refuse(path, 503, "receiver spec invalid", receiver=key)
        if receiver.suspended:
            return self._refuse(path, 503, "receiver suspended", receiver=key)
        if not cond.is_true(receiver.status.conditions, cond.READY):
            return self._refuse(path, 503, "receiver not ready", receiver=key)
        try:
            token = await receiver_token(self.client, receiver)
        except (TokenError, KubeError) as err:
            return self._refuse(path, 503, "token unreadable", receiver=key, error=str(err))
        if webhook_path(token, receiver.metadata.name, receiver.metadata.namespace or "") != path:
            return self._refuse(path, 404, "path of a previous token", receiver=key)
        claims = None
        if receiver.spec.type == "generic-oidc":
            try:
                claims = await self.oidc.claims(
                    receiver.spec.oidc_providers or [], request.headers.get("authorization")
                )
            except OIDCRefused as err:
                return self._refuse(path, err.status, str(err), receiver=key)
            verdict = ACCEPTED
        else:
            verdict = validate(
                receiver.spec.type,
                token=token,
                events=receiver.spec.events or [],
                headers=request.headers,
                body=request.body,
            )
        if not verdict.accepted:
            return self._answer_unaccepted(path, key, verdict)
        return await self._reconcile_resources(path, receiver, request, verdict, claims)

    async def close(self) -> None:
        """Release the OIDC issuers' HTTP client."""
        await self.oidc.close()

    def _lookup(self, path: str) -> dict[str, Any] | None:
        key = self._index.get(path)
        raw = self.informer.get(key) if key is not None else None
        if raw is not None and _status_path(raw) == path:
            return raw
        self._index = {
            found: object_key(obj)
            for obj in self.informer.objects()
            if (found := _status_path(obj)) is not None
        }
        # Buckets go with the paths they limit.
        self._buckets = {p: b for p, b in self._buckets.items() if p in self._index}
        key = self._index.get(path)
        return self.informer.get(key) if key is not None else None

    def _bucket(self, path: str) -> TokenBucket:
        bucket = self._buckets.get(path)
        if bucket is None:
            bucket = self._buckets[path] = TokenBucket(self.rate, self.burst, time.monotonic())
        return bucket

    @staticmethod
    def _refuse(path: str, status: int, why: str, **context: str) -> Response:
        log.info("webhook refused", status=status, why=why, digest=_digest_prefix(path), **context)
        return Response(status)

    @staticmethod
    def _answer_unaccepted(path: str, key: str, verdict: Verdict) -> Response:
        if verdict.status == 200:
            log.info(
                "webhook ignored",
                why=verdict.why,
                webhook_event=verdict.event,
                receiver=key,
                digest=_digest_prefix(path),
            )
            return Response(200)
        return ReceiverHandler._refuse(path, verdict.status, verdict.why, receiver=key)

    async def _reconcile_resources(
        self,
        path: str,
        receiver: Receiver,
        request: Request,
        verdict: Verdict,
        claims: dict[str, Any] | None,
    ) -> Response:
        key = object_key(receiver.to_dict())
        filters = None
        if receiver.spec.resource_filter or any(r.filter for r in receiver.spec.resources):
            body = _request_variable(request)
            if body is None:
                return self._refuse(path, 400, "body is not a JSON object", receiver=key)
            filters = _Filters(body, receiver.spec.resource_filter, claims)
        annotated = 0
        failed = 0
        for resource in receiver.spec.resources:
            try:
                annotated += await self._request_reconciles(receiver, resource, filters)
            except _Failed as err:
                failed += 1
                log.error(
                    "reconcile request failed",
                    receiver=key,
                    kind=resource.kind,
                    name=resource.name,
                    error=str(err),
                )
        log.info(
            "webhook handled",
            receiver=key,
            type=receiver.spec.type,
            webhook_event=verdict.event,
            annotated=annotated,
            failed=failed,
            digest=_digest_prefix(path),
        )
        return Response(500 if failed else 200)

    async def _request_reconciles(
        self, receiver: Receiver, resource: ReceiverResource, filters: _Filters | None
    ) -> int:
        """Annotate the objects ``resource`` selects; how many were."""
        own = receiver.metadata.namespace or ""
        namespace = resource.namespace or own
        if self.no_cross_namespace_refs and namespace != own:
            raise _Failed("cross-namespace references are not allowed")
        try:
            info = target_info(resource.kind, resource.api_version)
        except LookupError as err:
            raise _Failed(str(err)) from err
        try:
            if resource.name == "*":
                if resource.match_labels is None:
                    raise _Failed("matchLabels field not set when using wildcard '*' as name")
                objects = await self._list(info, namespace, resource.match_labels)
            else:
                obj = await self.client.get_or_none(info, namespace, resource.name)
                if obj is None:
                    raise _Failed(f"{resource.kind} '{namespace}/{resource.name}' not found")
                objects = [obj]
            annotated = 0
            for obj in objects:
                if filters is not None and not filters.accepts(resource, obj):
                    log.debug("filter rejected", kind=info.kind, object=object_key(obj))
                    continue
                await self._annotate(info, obj)
                annotated += 1
            return annotated
        except KubeError as err:
            raise _Failed(str(err)) from err

    async def _list(
        self, info: ResourceInfo, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        selector = ",".join(f"{name}={value}" for name, value in sorted(labels.items()))
        page = await self.client.list(info, namespace, label_selector=selector or None)
        # Listed items carry no apiVersion and kind; the filters' 'res' has them.
        return [
            {"apiVersion": info.api_version, "kind": info.kind, **item} for item in page["items"]
        ]

    async def _annotate(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        patch = {"metadata": {"annotations": {REQUESTED_AT: requested_at()}}}
        await self.client.patch(
            info, meta.get("namespace"), meta["name"], patch, field_manager=FIELD_MANAGER
        )
        log.info("reconcile requested", kind=info.kind, object=object_key(obj))


def _request_variable(request: Request) -> dict[str, Any] | None:
    """``req`` for the CEL filters: the JSON body when the request says it is JSON, else
    empty (as Flux); None when a JSON request's body is not a JSON object."""
    if content_type(request.headers) != "application/json":
        return {}
    try:
        body = json.loads(request.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def receiver_service(addr: str, *, no_cross_namespace_refs: bool) -> Service:
    """The receiver server on ``addr`` (``--receiver-addr``), run by the manager."""

    @asynccontextmanager
    async def run(context: ServiceContext) -> AsyncIterator[HttpServer]:
        handler = ReceiverHandler(
            context.client,
            context.informer(Receiver.info),
            no_cross_namespace_refs=no_cross_namespace_refs,
        )
        try:
            async with serve_http(addr, handler.handle, name="receiver") as server:
                log.info("receiver server started", addresses=[list(a) for a in server.addresses])
                yield server
        finally:
            await handler.close()

    return run
