"""Runs a process's controllers: probes and metrics, leader election, informers, workers.

Shutdown (SIGTERM/SIGINT, or lost leadership) stops handing out keys, lets reconciles in
flight finish within ``graceful_shutdown_timeout``, cancels what is left and releases the
Lease so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import structlog

from controllers.api import ResourceInfo
from controllers.events import EventForwarder, EventRecorder
from controllers.httpserver import split_address
from controllers.informer import Informer
from controllers.kube import KubeClient, KubeError
from controllers.leader import LeaderElector, LostLeadership
from controllers.metrics import Metrics
from controllers.queue import ExponentialBackoff, QueueShutDown, WorkQueue
from controllers.reconcile import Controller, Outcome, Reconciler, Watch

__all__ = ["Manager", "Options", "Service", "ServiceContext"]

log = structlog.get_logger()


@dataclass(frozen=True)
class ServiceContext:
    """What a service gets from the manager: the API client, the event recorder, and
    ``informer(info)``, a cache of a kind the manager lists, watches and stops with the
    process (the caller awaits ``synced`` when it needs a full cache)."""

    client: KubeClient
    recorder: EventRecorder
    informer: Callable[[ResourceInfo], Informer]


Service = Callable[[ServiceContext], AbstractAsyncContextManager[Any]]
"""A server or task that runs while the process leads (e.g. the artifact server)."""


@dataclass
class Options:
    """Process settings; every field is a command-line flag (see controllers.cmd)."""

    name: str
    identity: str
    kubeconfig: str | None = None
    concurrent: int = 4
    requeue_dependency: float = 30.0
    metrics_addr: str = ":8080"
    health_addr: str = ":9440"
    events_addr: str = ""
    enable_leader_election: bool = False
    leader_election_namespace: str = "flux-system"
    lease_duration: float = 35.0
    renew_deadline: float = 30.0
    retry_period: float = 5.0
    min_retry_delay: float = 0.75
    max_retry_delay: float = 900.0
    kube_api_qps: float = 50.0
    kube_api_burst: int = 300
    interval_jitter_percentage: float = 5.0
    watch_all_namespaces: bool = True
    watch_namespace: str | None = None
    watch_label_selector: str | None = None
    # Flux's default: only ConfigMaps and Secrets labelled to be watched; empty watches all.
    watch_configs_label_selector: str = "reconcile.fluxcd.io/watch=Enabled"
    graceful_shutdown_timeout: float = 30.0
    # A weir extension: how often a suspended object gets a reminder event.
    suspended_reminder_interval: float = 3600.0


async def _use_flow_control(client: KubeClient) -> None:
    """As Flux does: towards an API server with API Priority and Fairness, no client-side
    rate limit (--kube-api-qps and --kube-api-burst apply only without it); the server's
    flow control, and its 429s with Retry-After, pace the client. Events keep their own."""
    try:
        enabled = await client.has_flow_control()
    except (KubeError, OSError, TimeoutError) as err:
        log.warning("cannot tell whether the API server has flow control", error=str(err))
        return
    if enabled:
        client.drop_rate_limit()
        log.info("the API server has flow control: no client-side rate limit")


# A route's answer: status, content type and body.
_Answer = tuple[int, str, bytes]
_TEXT = "text/plain; charset=utf-8"
# A probe or scrape request is one short head: more, or slower, is not one.
_HEAD_LIMIT = 8 * 1024
_HEAD_TIMEOUT_SECONDS = 10.0


class _ProbeServer:
    """The probes and metrics server: a few fixed GET (and HEAD) routes, each request answered
    on its own connection, which is then closed (kubelet's probes and Prometheus's scrapes
    expect no more). On asyncio's streams: aiohttp.web would add about 8 MiB to a controller
    that serves nothing else."""

    def __init__(self, routes: Mapping[str, Callable[[], _Answer]]) -> None:
        self._routes = routes
        self._servers: list[asyncio.Server] = []

    async def listen(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._serve, host, port, limit=_HEAD_LIMIT)
        self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, _Answer]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "GET", (400, _TEXT, b"400: Bad Request")
        method, target, _ = parts
        route = self._routes.get(target.split("?", 1)[0])
        if route is None:
            return method, (404, _TEXT, b"404: Not Found")
        if method not in ("GET", "HEAD"):
            return method, (405, _TEXT, b"405: Method Not Allowed")
        return method, route()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
                method, (status, content_type, body) = self._answer(head)
                writer.write(
                    f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
                    f"Content-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                if method != "HEAD":
                    writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass  # a client that went away, sent too much or too slowly: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Manager:
    """Owns the shared client, the servers and the lifecycle of every controller."""

    def __init__(
        self,
        options: Options,
        reconcilers: Sequence[Reconciler[Any]],
        services: Sequence[Service] = (),
    ) -> None:
        """``services`` run only while this process leads (e.g. the artifact server)."""
        self.options = options
        self.reconcilers = reconcilers
        self.services = services
        self.metrics = Metrics()
        self.informers: list[Informer] = []
        self.stop = asyncio.Event()
        self.started = asyncio.Event()
        self._server: _ProbeServer | None = None

    async def run(self) -> None:
        """Run until ``stop`` is set or leadership is lost; then shut down gracefully."""
        opts = self.options
        client = await KubeClient.connect(
            opts.kubeconfig, qps=opts.kube_api_qps, burst=opts.kube_api_burst
        )
        await _use_flow_control(client)
        forwarder = EventForwarder(opts.events_addr) if opts.events_addr else None
        recorder = EventRecorder(
            client.with_rate_limit(opts.kube_api_qps, opts.kube_api_burst),
            controller=opts.name,
            instance=opts.identity,
            forwarder=forwarder,
        )
        elector = None
        watching: list[asyncio.Task[None]] = []
        try:
            await self._start_servers()
            if opts.enable_leader_election:
                elector = LeaderElector(
                    client,
                    opts.leader_election_namespace,
                    f"{opts.name}-leader-election",
                    opts.identity,
                    opts.lease_duration,
                    opts.renew_deadline,
                    opts.retry_period,
                )
                if not await self._until_stopped(elector.acquire()):
                    return
            async with contextlib.AsyncExitStack() as stack:
                context = ServiceContext(
                    client, recorder, lambda info: self._watch(client, info, watching)
                )
                for service in self.services:
                    await stack.enter_async_context(service(context))
                await self._run_controllers(client, recorder, elector)
        finally:
            for task in watching:
                task.cancel()
            await asyncio.gather(*watching, return_exceptions=True)
            for reconciler in self.reconcilers:
                await reconciler.close()
            if elector is not None:
                await elector.release()
            if forwarder is not None:
                await forwarder.close()
            if self._server is not None:
                await self._server.close()
            await client.close()
            log.info("stopped", controller=opts.name)

    def _watch(
        self, client: KubeClient, info: ResourceInfo, tasks: list[asyncio.Task[None]]
    ) -> Informer:
        """A service's informer on ``info``, in the namespaces the controllers watch."""
        opts = self.options
        namespace = None if opts.watch_all_namespaces else opts.watch_namespace
        informer = Informer(client, info, lambda key, old, new: None, namespace=namespace)
        self.informers.append(informer)
        tasks.append(asyncio.create_task(informer.run()))
        return informer

    async def _until_stopped(self, work: Any) -> bool:
        """Await ``work`` unless the stop signal comes first; True if ``work`` finished."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    async def _run_controllers(
        self, client: KubeClient, recorder: EventRecorder, elector: LeaderElector | None
    ) -> None:
        opts = self.options
        namespace = None if opts.watch_all_namespaces else opts.watch_namespace
        background: list[asyncio.Task[None]] = []
        workers: list[asyncio.Task[None]] = []
        queues: list[WorkQueue] = []
        for reconciler in self.reconcilers:
            controller = Controller(
                reconciler,
                client,
                name=opts.name,
                recorder=recorder,
                metrics=self.metrics,
                jitter_fraction=opts.interval_jitter_percentage / 100,
                suspended_reminder_interval=opts.suspended_reminder_interval,
            )
            queue = WorkQueue(ExponentialBackoff(opts.min_retry_delay, opts.max_retry_delay))
            queues.append(queue)

            watches = list(reconciler.watches)
            # A watch on the controller's own kind (dependsOn) rides on the primary informer.
            own = [w for w in watches if w.info == controller.info]
            informer = Informer(
                client,
                controller.info,
                _enqueue(controller, queue, own),
                namespace=namespace,
                label_selector=opts.watch_label_selector,
            )
            self.informers.append(informer)
            background.append(asyncio.create_task(informer.run()))
            by_kind = {controller.info: informer}
            for watch in watches:
                if watch in own:
                    continue
                selector = opts.watch_configs_label_selector if watch.configs else None
                related = _related_informer(client, watch, informer, queue, namespace, selector)
                if not watch.configs:
                    by_kind.setdefault(watch.info, related)
                self.informers.append(related)
                background.append(asyncio.create_task(related.run()))
            # The steps read the objects of these kinds from the informers' caches.
            controller.informers = by_kind
            for _ in range(opts.concurrent):
                workers.append(asyncio.create_task(_work(queue, controller)))
        if elector is not None:
            background.append(asyncio.create_task(elector.hold()))
        log.info("controllers started", controller=opts.name, workers=len(workers))
        self.started.set()
        stopper = asyncio.create_task(self.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {stopper, *background}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done - {stopper}:
                if isinstance(task.exception(), LostLeadership):
                    log.error("leadership lost, stopping", error=str(task.exception()))
                else:
                    task.result()
        finally:
            stopper.cancel()
            for queue in queues:
                queue.shut_down()
            _, unfinished = (
                await asyncio.wait(workers, timeout=opts.graceful_shutdown_timeout)
                if workers
                else (set(), set())
            )
            if unfinished:
                log.warning("reconciles cut off at shutdown", count=len(unfinished))
            for task in [*unfinished, *background]:
                task.cancel()
            await asyncio.gather(*unfinished, *background, return_exceptions=True)

    async def _start_servers(self) -> None:
        # One server on both addresses: probes and metrics share a single cleanup path.
        self._server = _ProbeServer(
            {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}
        )
        for addr in {self.options.health_addr, self.options.metrics_addr}:
            if addr and addr != "0":
                host, port = split_address(addr)
                await self._server.listen(host, port)

    def _healthz(self) -> _Answer:
        return 200, _TEXT, b"ok"

    def _readyz(self) -> _Answer:
        # A standby without leadership has no informers yet and is still ready to take over.
        # Otherwise ready once the services listen and the controllers run (a Service must not
        # send webhooks or events to a receiver that is not listening yet), with synced caches.
        standby = self.options.enable_leader_election and not self.started.is_set()
        if not standby and not self.started.is_set():
            return 503, _TEXT, b"not started"
        if all(informer.synced.is_set() for informer in self.informers):
            return 200, _TEXT, b"ok"
        return 503, _TEXT, b"informers not synced"

    def _metrics(self) -> _Answer:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.exposition()


def _enqueue(
    controller: Controller[Any], queue: WorkQueue, own: Sequence[Watch]
) -> Callable[[str, Any, Any], None]:
    """The primary informer's handler: Flux's predicates, then watches on the same kind."""
    known: dict[str, Any] = {}

    def enqueue(key: str, old: Any, new: Any) -> None:
        controller.observe(key, new)
        if controller.wants(old, new):
            queue.add(key)
        if new is None:
            known.pop(key, None)
        else:
            known[key] = new
        for watch in own:
            for primary_key in watch.requeue(old, new, known.values()):
                queue.add(primary_key)

    return enqueue


def _related_informer(
    client: KubeClient,
    watch: Watch,
    primary: Informer,
    queue: WorkQueue,
    namespace: str | None,
    label_selector: str | None,
) -> Informer:
    """An informer on ``watch.info`` whose changes requeue the primary objects it names."""

    def requeue(key: str, old: Any, new: Any) -> None:
        for primary_key in watch.requeue(old, new, primary.objects()):
            queue.add(primary_key)

    return Informer(
        client, watch.info, requeue, namespace=namespace, label_selector=label_selector or None
    )


async def _work(queue: WorkQueue, controller: Controller[Any]) -> None:
    """One worker: take a key, reconcile it, requeue it as the outcome says."""
    while True:
        try:
            key = await queue.get()
        except QueueShutDown:
            return
        try:
            run = await controller.reconcile(key)
        except Exception as err:
            delay = queue.add_rate_limited(key)
            log.warning("reconcile failed", key=key, error=str(err), retry_in=round(delay, 2))
        else:
            if run.requeue_after is None and run.outcome in (Outcome.FAILED, Outcome.WAITING):
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
                if run.requeue_after is not None:
                    queue.add_after(key, run.requeue_after)
        finally:
            queue.done(key)
