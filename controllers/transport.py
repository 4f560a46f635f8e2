"""HTTP/1.1 for httpx on asyncio streams, keeping idle connections per origin.

httpx's own transport (httpcore's pool) asks every pooled connection whether it has expired,
a readiness check on its socket each time, whenever it queues or releases a request: with 20
requests in flight the API client spent three times the CPU per request that it spends with
this one. Here a request takes the newest idle connection of its origin, looks only at that
one, and parses the exchange with h11 (as httpcore does). Proxies are left to httpx's
transport: the API client uses this one only for direct connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx

__all__ = ["AsyncioTransport"]

READ_BYTES = 64 * 1024
CLOSE_WAIT_SECONDS = 1.0
# Methods sent again on a new connection when a reused one turns out closed before any answer.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

Origin = tuple[str, str, int]


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0
    reused: bool = False

    def reusable(self, now: float, expiry: float) -> bool:
        """Whether an idle connection may carry another request: not past ``expiry``, not
        closed by the server, and nothing unasked-for waiting on it."""
        return (
            now - self.idle_since < expiry
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and not self.reader._buffer  # type: ignore[attr-defined]
        )

    def close(self) -> None:
        self.writer.close()

    async def next_event(self, timeout: float | None) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_BYTES)
            self.h11.receive_data(data)


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection; the connection goes back to the pool once
    the body has been read to its end, and is closed if the body is left unread."""

    def __init__(
        self, transport: AsyncioTransport, origin: Origin, conn: _Connection, read: float | None
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Connection | None = conn
        self._read_timeout = read

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        with _errors(httpx.ReadError, httpx.ReadTimeout):
            while True:
                event = await conn.next_event(self._read_timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")
        self._conn = None
        self._transport._release(self._origin, conn)

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._transport._slots.release()
            self._conn = None


@contextlib.contextmanager
def _errors(
    error: type[httpx.TransportError], timeout: type[httpx.TimeoutException]
) -> Iterator[None]:
    try:
        yield
    except TimeoutError as err:
        raise timeout(str(err) or "timed out") from err
    except h11.RemoteProtocolError as err:
        raise httpx.RemoteProtocolError(str(err)) from err
    except (OSError, EOFError) as err:
        raise error(f"{type(err).__name__}: {err}") from err


class AsyncioTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` in use at once (a watch holds one for its whole stream),
    idle ones kept for ``keepalive_expiry`` seconds."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        *,
        max_connections: int,
        keepalive_expiry: float,
    ) -> None:
        self._context = context
        self._slots = asyncio.Semaphore(max_connections)
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        await self._slots.acquire()
        try:
            conn = self._take(origin) or await self._connect(request, origin, timeouts)
            try:
                head = await self._exchange(request, conn, timeouts)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                if not (conn.reused and request.method in IDEMPOTENT):
                    raise
                # The server closed an idle connection as we sent on it: once more on a new one.
                conn = await self._connect(request, origin, timeouts)
                head = await self._exchange(request, conn, timeouts)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            head.status_code,
            headers=head.headers,
            stream=_Body(self, origin, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def _exchange(
        self, request: httpx.Request, conn: _Connection, timeouts: dict[str, float | None]
    ) -> h11.Response:
        try:
            with _errors(httpx.WriteError, httpx.WriteTimeout):
                head = h11.Request(
                    method=request.method, target=request.url.raw_path, headers=request.headers.raw
                )
                conn.writer.write(conn.h11.send(head) or b"")
                async for chunk in request.stream:  # type: ignore[union-attr]
                    conn.writer.write(conn.h11.send(h11.Data(data=chunk)) or b"")
                conn.writer.write(conn.h11.send(h11.EndOfMessage()) or b"")
                async with asyncio.timeout(timeouts.get("write")):
                    await conn.writer.drain()
            with _errors(httpx.ReadError, httpx.ReadTimeout):
                while True:
                    event = await conn.next_event(timeouts.get("read"))
                    if isinstance(event, h11.Response):
                        return event
                    if not isinstance(event, h11.InformationalResponse):
                        raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")
        except BaseException:
            conn.close()
            raise

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self._expiry):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(
        self, request: httpx.Request, origin: Origin, timeouts: dict[str, float | None]
    ) -> _Connection:
        scheme, host, port = origin
        context = self._context if scheme == "https" else None
        server_hostname = request.extensions.get("sni_hostname") or host if context else None
        with _errors(httpx.ConnectError, httpx.ConnectTimeout):
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=server_hostname, limit=READ_BYTES
                )
        return _Connection(reader, writer)

    def _release(self, origin: Origin, conn: _Connection) -> None:
        self._slots.release()
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        closing = [conn for idle in self._idle.values() for conn in idle]
        self._idle.clear()
        for conn in closing:
            conn.close()
        # Wait (briefly) for the sockets to be closed: a TLS connection closes only after its
        # shutdown exchange, and one left to the garbage collector warns.
        for conn in closing:
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await conn.writer.wait_closed()
