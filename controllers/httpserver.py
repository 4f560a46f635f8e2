"""A small HTTP/1.1 server on asyncio's streams and h11, for controllers that take requests
(the notification controller's receiver and events servers).

Its limits are those of Flux's notification-controller: the head (request line and headers)
within ``header_timeout`` and ``max_header_bytes``, the whole request within
``read_timeout``, the body at most ``max_body`` bytes. A body announced or received over the
cap is answered 413 before the handler sees the request. A handler gets the whole request at
once (a ``Request``) and returns a ``Response``; what it raises is logged and answered 500.
Connections are kept alive between requests, for ``idle_timeout``.

aiohttp.web would add about 8 MiB to a controller; h11 is already the API client's parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack
from urllib.parse import urlsplit

import h11
import structlog

__all__ = [
    "Handler",
    "Headers",
    "HttpServer",
    "Request",
    "Response",
    "serve_http",
    "split_address",
]

log = structlog.get_logger()

READ_BYTES = 64 * 1024
# An answer the client does not read within this long is given up.
WRITE_TIMEOUT_SECONDS = 30.0
# After an error answer the server stops sending and reads what the client still sends, for at
# most this long, before it closes: closing with unread data would reset the connection and
# could destroy the answer before the client reads it (a client that writes its whole body
# before reading, as httpx does, would see a reset instead of the 413).
LINGER_SECONDS = 2.0
# Framing is the server's: a handler's own values for these are ignored.
_FRAMING_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})
# Responses that never have a body (RFC 9110 6.4.1).
_NO_BODY = frozenset({204, 304})
# Go's words where Python 3.13 renamed the status (Flux's error bodies are Go's).
_GO_PHRASES = {413: "Request Entity Too Large", 422: "Unprocessable Entity"}


def split_address(addr: str) -> tuple[str, int]:
    """``(host, port)`` of a Flux-style listen address: ``":9292"`` is every interface,
    ``"127.0.0.1:0"`` a free port on loopback, ``"[::1]:8080"`` an IPv6 address. A port that
    is not a number is a ``ValueError``."""
    host, _, port = addr.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port)  # noqa: S104 - Flux's ":8080" means all interfaces


class Headers(Mapping[str, str]):
    """A request's headers: names are case-insensitive (iterated lower-case), a repeated
    header is one value joined with ``", "``. Its repr shows names only, never values."""

    __slots__ = ("_values",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        values: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            values[key] = f"{values[key]}, {value}" if key in values else value
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._values)!r})"


@dataclass(frozen=True)
class Request:
    """A whole request, as a handler gets it."""

    method: str
    # The request target without the query string, not percent-decoded.
    path: str
    # The raw query string, '' if none.
    query: str
    headers: Headers = field(repr=False)
    body: bytes = field(repr=False)
    # The client's IP address.
    peer: str


@dataclass(frozen=True)
class Response:
    """A handler's answer; the server adds ``Content-Length`` and ``Content-Type``."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class _Limits(TypedDict, total=False):
    max_body: int
    header_timeout: float
    read_timeout: float
    max_header_bytes: int
    idle_timeout: float


class _Refused(Exception):
    """A request the server answers itself, with ``status``, and then closes."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Closed(Exception):
    """The client went away, or was too slow to be worth an answer: close without one."""


class _Connection:
    """One client's connection: h11's state and the stream it reads and writes."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_head: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)

    async def next_event(self, deadline: float) -> Any:
        """h11's next event, reading until ``deadline`` (loop time) if it needs more; a
        client waiting for ``100 Continue`` gets it when its body is wanted."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.h11.they_are_waiting_for_100_continue:
                await self.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason="Continue")
                )
            async with asyncio.timeout_at(deadline):
                data = await self.reader.read(READ_BYTES)
            self.h11.receive_data(data)

    async def wait_for_data(self, timeout: float) -> None:
        """Wait until the next request starts to arrive, or ``_Closed`` after ``timeout``."""
        if self.h11.trailing_data[0] or self.h11.trailing_data[1]:
            return
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_BYTES)
        except TimeoutError as err:
            raise _Closed from err
        self.h11.receive_data(data)

    async def send(self, *events: Any) -> None:
        for event in events:
            self.writer.write(self.h11.send(event) or b"")
        async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
            await self.writer.drain()

    async def refuse(self, status: int) -> None:
        """Answer ``status`` with its phrase and close, if an answer can still be sent."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = _phrase(status)
        head = h11.Response(
            status_code=status,
            reason=_reason(status),
            headers=[
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ],
        )
        with contextlib.suppress(h11.LocalProtocolError, OSError, TimeoutError):
            await self.send(head, h11.Data(data=body), h11.EndOfMessage())
            await self.linger()

    async def linger(self) -> None:
        """Stop writing, then read and drop what the client still sends until it closes,
        for at most ``LINGER_SECONDS``."""
        if not self.writer.can_write_eof():
            return
        self.writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_SECONDS):
                while await self.reader.read(READ_BYTES):
                    pass


class HttpServer:
    """Serves ``handler`` on every address given to ``listen``, until ``close``."""

    def __init__(
        self,
        handler: Handler,
        *,
        name: str,
        max_body: int = 3 * 1024 * 1024,
        header_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_header_bytes: int = 64 * 1024,
        idle_timeout: float = 60.0,
    ) -> None:
        self._handler = handler
        self._name = name
        self._max_body = max_body
        self._header_timeout = header_timeout
        self._read_timeout = read_timeout
        self._max_header_bytes = max_header_bytes
        self._idle_timeout = idle_timeout
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def listen(self, host: str, port: int) -> None:
        """Listen on ``host:port`` too (port 0: a free one, see ``addresses``)."""
        server = await asyncio.start_server(self._connection, host, port, limit=READ_BYTES)
        self._servers.append(server)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of every listening socket."""
        return [
            tuple(sock.getsockname()[:2]) for server in self._servers for sock in server.sockets
        ]

    async def close(self) -> None:
        """Stop listening and close every connection; requests being handled are cancelled."""
        self._closing = True
        for server in self._servers:
            server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closing or task is None:
            writer.transport.abort()
            return
        self._connections.add(task)
        conn = _Connection(reader, writer, self._max_header_bytes)
        try:
            await self._serve(conn)
        except (_Closed, OSError, TimeoutError):
            pass  # a client that went away, or was too slow to answer
        except h11.LocalProtocolError as err:
            log.warning("http answer not sent", server=self._name, error=str(err))
        except asyncio.CancelledError:
            # close() cancelled it. Ending normally: on Python 3.11 asyncio's streams log a
            # cancelled connection task as an error in a callback.
            if not self._closing:
                raise
        finally:
            self._connections.discard(task)
            await _close(writer, abort=self._closing)

    async def _serve(self, conn: _Connection) -> None:
        peername = conn.writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        first = True
        while True:
            if not first:
                await conn.wait_for_data(self._idle_timeout)
            first = False
            try:
                request = await self._read_request(conn, peer)
            except _Refused as refused:
                await conn.refuse(refused.status)
                return
            if request is None:
                return
            await self._answer(conn, request)
            if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                return  # Connection: close, from either side
            conn.h11.start_next_cycle()

    async def _read_request(self, conn: _Connection, peer: str) -> Request | None:
        """The next request, whole; None when the client closed the connection between
        requests. ``_Refused`` for a request the server answers itself, ``_Closed`` for a
        head that did not arrive in time."""
        now = asyncio.get_running_loop().time()
        try:
            try:
                event = await conn.next_event(now + self._header_timeout)
            except TimeoutError as err:
                raise _Closed from err  # as Go's server: no answer to a head that never ends
            if isinstance(event, h11.ConnectionClosed):
                return None
            if not isinstance(event, h11.Request):
                raise _Refused(400)
            # h11 holds an unfinished head to the limit; a head that arrived whole is checked here.
            if _head_size(event) > self._max_header_bytes:
                raise _Refused(431)
            if event.method == b"CONNECT":
                raise _Refused(405)  # no proxy: a 2xx would switch h11 to a tunnel
            length = _content_length(event.headers)
            if length is not None and length > self._max_body:
                raise _Refused(413)
            body = await self._read_body(conn, now + self._read_timeout)
        except h11.RemoteProtocolError as err:
            raise _Refused(err.error_status_hint) from err
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
        )
        path, query = _split_target(event.target.decode("latin-1"))
        return Request(event.method.decode("latin-1"), path, query, headers, body, peer)

    async def _read_body(self, conn: _Connection, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = await conn.next_event(deadline)
            except TimeoutError as err:
                raise _Refused(408) from err
            if isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            if not isinstance(event, h11.Data):
                raise _Refused(400)
            size += len(event.data)
            if size > self._max_body:
                raise _Refused(413)
            chunks.append(bytes(event.data))

    async def _answer(self, conn: _Connection, request: Request) -> None:
        try:
            response = await self._handler(request)
            head = _response_head(response)
        except Exception:
            # Neither the path (a receiver's holds its secret), the headers nor the body.
            log.exception("http handler failed", server=self._name, method=request.method)
            response = Response(500, _phrase(500))
            head = _response_head(response)
        if request.method == "HEAD" or response.status in _NO_BODY:
            await conn.send(head, h11.EndOfMessage())
        else:
            await conn.send(head, h11.Data(data=response.body), h11.EndOfMessage())


def _reason(status: int) -> str:
    """The reason phrase of ``status``, as Go words it; '' for a status without one."""
    try:
        return _GO_PHRASES.get(status) or http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _phrase(status: int) -> bytes:
    """An error body: the status and its phrase, nothing of the request."""
    return f"{status}: {_reason(status)}".encode()


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close after what was written has been sent (``abort``: at once, dropping it)."""
    if not abort:
        writer.close()
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                await writer.wait_closed()
            return
        except (OSError, TimeoutError):
            pass
        except BaseException:
            writer.transport.abort()
            raise
    writer.transport.abort()


def _head_size(request: h11.Request) -> int:
    """The size of ``request``'s head as sent, give or take optional whitespace."""
    line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    # h11 has checked it: digits, and one value however often it is repeated.
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


def _split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of a request target in origin form (``/hook/x?a=b``) or absolute
    form (``http://host/hook/x?a=b``, which servers must accept too); ``*`` is itself."""
    if not target.startswith("/") and "://" in target:
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query


def _response_head(response: Response) -> h11.Response:
    """The head of ``response``; h11 refuses a status it cannot send and header names or
    values that would break the head (a newline in a value)."""
    headers = [
        (name, value)
        for name, value in response.headers.items()
        if name.lower() not in _FRAMING_HEADERS
    ]
    if response.status not in _NO_BODY:
        headers.append(("Content-Type", response.content_type))
        headers.append(("Content-Length", str(len(response.body))))
    return h11.Response(
        status_code=response.status, headers=headers, reason=_reason(response.status)
    )


@asynccontextmanager
async def serve_http(
    addr: str, handler: Handler, *, name: str, **limits: Unpack[_Limits]
) -> AsyncIterator[HttpServer]:
    """``handler`` served on ``addr`` (``":9292"``, ``"127.0.0.1:0"``) while the context is
    open, with ``HttpServer``'s limits."""
    server = HttpServer(handler, name=name, **limits)
    try:
        await server.listen(*split_address(addr))
        yield server
    finally:
        await server.close()
