"""The event server: the other controllers' events in, alerts out (``--events-addr``).

As Flux's notification-controller (``internal/server/event_server.go``): a POST of Flux's
event JSON (to any path) is decoded (400 if it is not an event), its metadata cleaned, and
refused with 429 when an equal event was accepted within ``--rate-limit-interval`` (the
sending controllers do not retry a 429). An accepted event is answered 202 at once; matching
it against the Alerts and sending it through their Providers happen in the background, in a
bounded queue worked by a few tasks (503 when the queue is full: the senders retry that).
Trace events are accepted and go nowhere: Flux's controllers never send them, and they are
not notifications.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import structlog
from pydantic import ValidationError

from controllers.discovery import RestMapper, UnknownKind
from controllers.httpserver import Request, Response, serve_http
from controllers.informer import Informer
from controllers.kube import KubeClient, KubeError
from controllers.manager import Service, ServiceContext
from notification.alerts import (
    DuplicateFilter,
    FluxEvent,
    InvalidAlert,
    Selection,
    clean_metadata,
    duplicate_key,
    message_filter,
    select,
    without_internal_metadata,
)
from notification.api_v1beta3 import Alert, Provider
from notification.dispatch import DISPATCH_FAILED, Dispatcher, Reporter

__all__ = ["AlertRouter", "EventIntake", "event_service"]

log = structlog.get_logger()

# Events accepted and not yet matched; past this the server answers 503.
QUEUE_SIZE = 1024
# Tasks matching events against Alerts (each waits for a send slot before the next event).
WORKERS = 4
# How long sends in flight get to finish when the process stops.
SHUTDOWN_GRACE_SECONDS = 5.0
# Flux's limit on the time to match one event, listing Alerts and reading objects included.
MATCH_TIMEOUT_SECONDS = 15.0
SOURCE_FETCH_FAILED = "SourceFetchFailed"


def event_service(
    addr: str, *, rate_limit_interval: float, no_cross_namespace_refs: bool
) -> Service:
    """The event server on ``addr`` as a manager service."""

    @asynccontextmanager
    async def run(context: ServiceContext) -> AsyncIterator[None]:
        intake = EventIntake(rate_limit_interval)
        router = AlertRouter(
            context.client,
            alerts=context.informer(Alert.info),
            providers=context.informer(Provider.info),
            reporter=Reporter(context.recorder, rate_limit_interval),
            no_cross_namespace_refs=no_cross_namespace_refs,
        )
        router.start(intake.queue)
        try:
            async with serve_http(addr, intake.handle, name="event-server") as http:
                log.info("event server listening", addresses=http.addresses)
                yield
        finally:
            await router.close()

    return run


class EventIntake:
    """The HTTP side: decodes each POSTed event, refuses duplicates, and queues the rest
    (``queue``) for the workers."""

    def __init__(self, rate_limit_interval: float, *, queue_size: int = QUEUE_SIZE) -> None:
        self._duplicates = DuplicateFilter(rate_limit_interval)
        self.queue: asyncio.Queue[FluxEvent] = asyncio.Queue(maxsize=queue_size)

    async def handle(self, request: Request) -> Response:
        """One POSTed event: 202 accepted, 429 duplicate, 400 not an event, 503 too busy."""
        if request.method != "POST":
            return Response(405, headers={"Allow": "POST"})
        try:
            event = FluxEvent.model_validate_json(request.body)
        except ValidationError as err:
            # Where it is wrong, not the values: the body is the sender's.
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
            log.info("event refused", fields=fields[:10])
            return Response(400)
        event = clean_metadata(event)
        involved = str(event.involved_object)
        if self.queue.full():
            log.warning("event refused, queue full", object=involved)
            return Response(503, headers={"Retry-After": "5"})
        key = duplicate_key(event)
        if not self._duplicates.admit(key):
            log.debug("event discarded as a duplicate", object=involved)
            return _too_many_requests(self._duplicates.retry_after(key))
        self.queue.put_nowait(without_internal_metadata(event))
        return Response(202)


class AlertRouter:
    """Takes events from the intake's queue and sends each through the Alerts that select
    it, with ``WORKERS`` tasks."""

    def __init__(
        self,
        client: KubeClient,
        *,
        alerts: Informer,
        providers: Informer,
        reporter: Reporter,
        no_cross_namespace_refs: bool,
    ) -> None:
        self._client = client
        self._alerts = alerts
        self._providers = providers
        self._reporter = reporter
        self._no_cross_namespace_refs = no_cross_namespace_refs
        self._queue: asyncio.Queue[FluxEvent] | None = None
        self._dispatcher = Dispatcher(client, providers, reporter)
        self._mapper = RestMapper(client)
        # Alerts parsed, by key: (resourceVersion, the model or None if it does not validate).
        self._parsed: dict[str, tuple[str, Alert | None]] = {}
        self._workers: list[asyncio.Task[None]] = []

    def start(self, queue: asyncio.Queue[FluxEvent]) -> None:
        """Work ``queue`` until ``close``."""
        self._queue = queue
        self._workers = [asyncio.create_task(self._work(queue)) for _ in range(WORKERS)]

    async def close(self) -> None:
        """Stop matching (events still queued are dropped), then let sends in flight finish
        for a short while."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._queue is not None and not self._queue.empty():
            log.warning("events dropped at shutdown", count=self._queue.qsize())
        await self._dispatcher.close(SHUTDOWN_GRACE_SECONDS)

    async def _work(self, queue: asyncio.Queue[FluxEvent]) -> None:
        while True:
            event = await queue.get()
            try:
                await self._forward(event)
            except Exception:
                log.exception("event not forwarded", object=str(event.involved_object))

    async def _forward(self, event: FluxEvent) -> None:
        involved = str(event.involved_object)
        if event.severity == "trace":
            log.debug("trace event not forwarded", object=involved)
            return
        try:
            async with asyncio.timeout(MATCH_TIMEOUT_SECONDS):
                alerts = await self._matching_alerts(event)
        except TimeoutError:
            log.warning("event not matched in time", object=involved)
            return
        if not alerts:
            log.info("event discarded, no alert matches", object=involved)
            return
        log.info(
            "dispatching event",
            object=involved,
            reason=event.reason,
            alerts=[alert.key for alert in alerts],
        )
        for alert in alerts:
            await self._dispatcher.dispatch(alert, event)

    async def _matching_alerts(self, event: FluxEvent) -> list[Alert]:
        """The Alerts that take ``event``, in the order the informer holds them."""
        await self._alerts.synced.wait()
        await self._providers.synced.wait()
        labels: Mapping[str, str] | None = None
        labels_read = False
        found = []
        for obj in self._alerts.objects():
            alert = self._parse(obj)
            if alert is None or alert.suspended:
                continue
            selection = select(alert, event)
            if selection is Selection.NEEDS_LABELS:
                if not labels_read:
                    labels, labels_read = await self._labels(event), True
                if labels is None:
                    await self._reporter.warn(
                        alert,
                        SOURCE_FETCH_FAILED,
                        f"error getting source object {event.involved_object}",
                    )
                    continue
                selection = select(alert, event, labels)
            if selection is not Selection.YES:
                continue
            try:
                if not message_filter(alert).allows(event.message):
                    continue
            except InvalidAlert as err:
                log.warning("alert not valid", alert=alert.key, error=str(err))
                await self._reporter.warn(alert, err.reason, str(err))
                continue
            if self._no_cross_namespace_refs and (
                event.involved_object.namespace != alert.metadata.namespace
            ):
                message = (
                    f"alert '{alert.key}' can't process event from "
                    f"'{event.involved_object}', cross-namespace references have been blocked"
                )
                log.warning("event discarded, cross-namespace reference", alert=alert.key)
                await self._reporter.warn(alert, DISPATCH_FAILED, message)
                continue
            found.append(alert)
        return found

    def _parse(self, obj: dict[str, object]) -> Alert | None:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        version = str(meta.get("resourceVersion", ""))
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            alert: Alert | None = Alert.model_validate(obj)
        except ValidationError as err:
            log.warning("alert not valid", alert=key, errors=err.error_count())
            alert = None
        if len(self._parsed) > 4 * max(len(self._alerts.keys()), 256):
            self._parsed.clear()  # forget Alerts deleted since
        self._parsed[key] = (version, alert)
        return alert

    async def _labels(self, event: FluxEvent) -> Mapping[str, str] | None:
        """The labels of the event's object, read from the API; None if it cannot be read."""
        involved = event.involved_object
        try:
            info = await self._mapper.resource_for(involved.api_version or "", involved.kind)
            obj = await self._client.get(info, involved.namespace, involved.name)
        except (UnknownKind, KubeError) as err:
            log.warning("source object not read", object=str(involved), error=str(err))
            return None
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


def _too_many_requests(retry_after: float) -> Response:
    """429 as Flux's rate limiter (sethvargo/go-limiter's httplimit) answers it."""
    reset = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=retry_after)
    when = reset.strftime("%a, %d %b %Y %H:%M:%S UTC")
    headers = {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": when,
        "Retry-After": when,
    }
    return Response(429, b"Too Many Requests\n", headers=headers)
