"""The runtime's HTTP server on the loopback, with httpx and raw sockets as clients: what a
handler sees and answers, the limits (413 before the handler, 431, 400, timeouts),
keep-alive, handler failures and ``Expect: 100-continue``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import h11
import httpx
import pytest
from structlog.testing import capture_logs

from controllers.httpserver import (
    Headers,
    HttpServer,
    Request,
    Response,
    serve_http,
    split_address,
)

MAX_BODY = 1024


class Recorder:
    """A handler that records each request and answers with ``response``."""

    def __init__(self, response: Response | None = None) -> None:
        self.requests: list[Request] = []
        self.response = response or Response(200, b"ok")

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return self.response


Serve = Callable[..., AbstractAsyncContextManager[str]]


@asynccontextmanager
async def _serving(handler: Any, **limits: Any) -> AsyncIterator[str]:
    async with serve_http("127.0.0.1:0", handler, name="test", **limits) as server:
        host, port = server.addresses[0]
        yield f"{host}:{port}"


@pytest.fixture
def serve() -> Serve:
    """``serve(handler, **limits)``: the server on a free loopback port while the context is
    open, as ``host:port``; the body cap is ``MAX_BODY`` unless given."""

    def start(handler: Any, **limits: Any) -> AbstractAsyncContextManager[str]:
        return _serving(handler, **{"max_body": MAX_BODY, **limits})

    return start


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def address(serve: Serve, recorder: Recorder) -> AsyncIterator[str]:
    async with serve(recorder, max_header_bytes=4096) as address:
        yield address


async def open_raw(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.split(":")
    return await asyncio.open_connection(host, int(port))


async def raw_exchange(address: str, data: bytes, *, close_write: bool = True) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    reader, writer = await open_raw(address)
    try:
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def read_response(
    reader: asyncio.StreamReader, conn: h11.Connection
) -> tuple[int, dict[str, str], bytes]:
    """The next response on a raw connection, parsed by an h11 client."""
    status, headers, body = 0, {}, b""
    async with asyncio.timeout(5):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            else:
                raise AssertionError(f"unexpected {event!r}")


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_the_handler_sees_the_request_and_its_answer_is_sent(serve: Serve) -> None:
    recorder = Recorder(
        Response(202, b'{"a":1}', "application/json", {"X-Extra": "yes", "Content-Length": "9"})
    )
    async with serve(recorder) as address, httpx.AsyncClient(timeout=5) as http:
        response = await http.post(
            f"http://{address}/hook/a%2Fb?x=1&y=%20",
            content=b"payload",
            headers=[("X-Signature", "sha1=abc"), ("X-Many", "1"), ("x-many", "2")],
        )

    assert (response.status_code, response.content) == (202, b'{"a":1}')
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == "7"  # the server's, not the handler's
    assert response.headers["X-Extra"] == "yes"
    [request] = recorder.requests
    assert (request.method, request.path, request.query) == ("POST", "/hook/a%2Fb", "x=1&y=%20")
    assert request.headers["x-signature"] == request.headers["X-SIGNATURE"] == "sha1=abc"
    assert request.headers["X-Many"] == "1, 2"
    assert (request.body, request.peer) == (b"payload", "127.0.0.1")


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        pytest.param(b"/", "/", "", id="root"),
        pytest.param(b"/a?", "/a", "", id="empty-query"),
        pytest.param(b"/a?b?c", "/a", "b?c", id="question-mark-in-query"),
        pytest.param(b"http://example.com/a/b?c=d", "/a/b", "c=d", id="absolute-form"),
        pytest.param(b"http://example.com", "/", "", id="absolute-form-no-path"),
    ],
)
async def test_request_targets_are_split_into_path_and_query(
    address: str, recorder: Recorder, target: bytes, path: str, query: str
) -> None:
    answer = await raw_exchange(address, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")

    assert status_and_body(answer) == (200, b"ok")
    [request] = recorder.requests
    assert (request.path, request.query) == (path, query)


async def test_head_is_answered_with_the_length_of_get_and_no_body(address: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.head(f"http://{address}/")

    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["Content-Length"] == "2"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_no_content_has_no_body_headers(serve: Serve) -> None:
    async with serve(Recorder(Response(204, b"ignored"))) as address:
        reader, writer = await open_raw(address)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = await read_response(reader, h11.Connection(h11.CLIENT))
        finally:
            writer.close()
            await writer.wait_closed()

    assert (status, body) == (204, b"")
    assert "content-length" not in headers
    assert "content-type" not in headers


HEAD = b"POST /hook HTTP/1.1\r\nHost: x\r\n"
CHUNK = b"200\r\n" + b"x" * 512 + b"\r\n"  # 512 bytes, chunked
# A head over the fixture's 4 KiB, short of its final empty line.
LONG_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 1000


@pytest.mark.parametrize(
    ("data", "eof", "status"),
    [
        pytest.param(
            HEAD + b"Content-Length: 1025\r\n\r\n", False, 413, id="content-length-over-cap"
        ),
        pytest.param(
            HEAD + b"Content-Length: 1000000000000\r\nExpect: 100-continue\r\n\r\n",
            False,
            413,
            id="expect-continue-over-cap",
        ),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNK * 2 + b"1\r\nx\r\n",
            False,
            413,
            id="chunked-over-cap",
        ),
        pytest.param(LONG_HEAD + b"\r\n", False, 431, id="head-too-big"),
        pytest.param(LONG_HEAD, False, 431, id="head-too-big-unfinished"),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", False, 400, id="garbage"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", False, 400, id="bad-header"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", False, 400, id="no-host"),
        pytest.param(
            HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy", False, 400, id="two-lengths"
        ),
        pytest.param(HEAD + b"Transfer-Encoding: gzip\r\n\r\n", False, 501, id="unknown-encoding"),
        pytest.param(HEAD + b"Content-Length: 5\r\n\r\nab", True, 400, id="body-cut-short"),
        pytest.param(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            False,
            405,
            id="connect",
        ),
    ],
)
async def test_requests_the_server_refuses_never_reach_the_handler(
    address: str, recorder: Recorder, data: bytes, eof: bool, status: int
) -> None:
    # Unless ``eof``, the write side stays open: the answer comes before the client is done.
    answer = await raw_exchange(address, data, close_write=eof)

    phrases = {
        400: b"Bad Request",
        405: b"Method Not Allowed",
        413: b"Request Entity Too Large",
        431: b"Request Header Fields Too Large",
        501: b"Not Implemented",
    }
    assert answer.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrases[status]))
    assert status_and_body(answer) == (status, b"%d: %s" % (status, phrases[status]))
    assert b"connection: close" in answer.lower()
    assert recorder.requests == []


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(8):
        yield b"x" * 512


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"x" * (MAX_BODY + 1), id="content-length"),
        pytest.param(b"x" * (8 * 1024 * 1024), id="content-length-larger-than-socket-buffers"),
        pytest.param(_chunks, id="chunked"),
    ],
)
async def test_httpx_gets_413_for_a_body_over_the_cap(
    address: str, recorder: Recorder, content: Any
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(
            f"http://{address}/hook", content=content() if callable(content) else content
        )

    assert (response.status_code, response.content) == (413, b"413: Request Entity Too Large")
    assert recorder.requests == []


async def test_a_body_at_the_cap_is_accepted(address: str, recorder: Recorder) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"http://{address}/hook", content=b"x" * MAX_BODY)

    assert response.status_code == 200
    assert len(recorder.requests[0].body) == MAX_BODY


async def test_a_slow_head_is_closed_unanswered(serve: Serve, recorder: Recorder) -> None:
    async with serve(recorder, header_timeout=0.05) as address:
        answer = await raw_exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n", close_write=False)

    assert answer == b""
    assert recorder.requests == []


async def test_a_slow_body_is_answered_408(serve: Serve, recorder: Recorder) -> None:
    async with serve(recorder, read_timeout=0.05) as address:
        answer = await raw_exchange(
            address, HEAD + b"Content-Length: 10\r\n\r\nab", close_write=False
        )

    assert status_and_body(answer) == (408, b"408: Request Timeout")
    assert recorder.requests == []


async def test_keep_alive_reuses_the_connection(address: str, recorder: Recorder) -> None:
    local = []
    async with httpx.AsyncClient(timeout=5) as http:
        for response in (
            await http.get(f"http://{address}/1"),
            await http.post(f"http://{address}/2", content=b"body"),
        ):
            local.append(response.extensions["network_stream"].get_extra_info("client_addr"))

    assert local[0] == local[1]
    assert [r.path for r in recorder.requests] == ["/1", "/2"]


async def test_pipelined_requests_are_answered_in_order(address: str, recorder: Recorder) -> None:
    reader, writer = await open_raw(address)
    try:
        writer.write(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" + HEAD + b"Content-Length: 2\r\n\r\nhi")
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/1", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        first = await read_response(reader, client)
        client.start_next_cycle()
        client.send(h11.Request(method="POST", target="/hook", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        second = await read_response(reader, client)
    finally:
        writer.close()
        await writer.wait_closed()

    assert [first[0], second[0]] == [200, 200]
    assert [(r.path, r.body) for r in recorder.requests] == [("/1", b""), ("/hook", b"hi")]


async def test_connection_close_is_honoured(address: str) -> None:
    answer = await raw_exchange(
        address, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", close_write=False
    )

    assert status_and_body(answer) == (200, b"ok")
    assert b"connection: close" in answer.lower()


async def test_an_idle_connection_is_closed(serve: Serve) -> None:
    async with serve(Recorder(), idle_timeout=0.05) as address:
        reader, writer = await open_raw(address)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = await read_response(reader, h11.Connection(h11.CLIENT))
            async with asyncio.timeout(5):
                rest = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()

    assert (status, rest) == (200, b"")


async def _raises(request: Request) -> Response:
    raise RuntimeError(f"cannot handle {request.body!r}")


async def _bad_header(request: Request) -> Response:
    return Response(200, b"ok", headers={"X-Injected": "a\r\nSet-Cookie: b"})


@pytest.mark.parametrize(
    "handler",
    [pytest.param(_raises, id="raises"), pytest.param(_bad_header, id="header-with-newline")],
)
async def test_a_failing_handler_is_answered_500_without_detail(serve: Serve, handler: Any) -> None:
    with capture_logs() as logs:
        async with serve(handler) as address, httpx.AsyncClient(timeout=5) as http:
            response = await http.post(
                f"http://{address}/hook/secret-digest",
                content=b"the-body",
                headers={"Authorization": "Bearer the-token"},
            )
            again = await http.get(f"http://{address}/")

    assert (response.status_code, response.content) == (500, b"500: Internal Server Error")
    assert "Set-Cookie" not in response.headers
    assert again.status_code == 500  # the connection still serves
    assert [(e["event"], e["log_level"], e["method"]) for e in logs] == [
        ("http handler failed", "error", "POST"),
        ("http handler failed", "error", "GET"),
    ]
    assert not any(secret in repr(logs) for secret in ("the-body", "the-token", "secret-digest"))


async def test_expect_continue_gets_100_before_the_body(address: str, recorder: Recorder) -> None:
    reader, writer = await open_raw(address)
    try:
        writer.write(HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"hello")
        answer = await reader.readuntil(b"ok")
    finally:
        writer.close()
        await writer.wait_closed()

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert status_and_body(answer) == (200, b"ok")
    assert recorder.requests[0].body == b"hello"


async def test_close_ends_open_connections_and_requests_in_flight() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(request: Request) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not reached")

    server = HttpServer(forever, name="test")
    await server.listen("127.0.0.1", 0)
    host, port = server.addresses[0]
    idle_reader, idle_writer = await asyncio.open_connection(host, port)
    busy_reader, busy_writer = await asyncio.open_connection(host, port)
    try:
        busy_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            await started.wait()
            await server.close()
            assert cancelled.is_set()
            assert await idle_reader.read() == b""
            assert await busy_reader.read() == b""
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)
    finally:
        for writer in (idle_writer, busy_writer):
            writer.close()
            await writer.wait_closed()


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        pytest.param(":9292", ("0.0.0.0", 9292), id="all-interfaces"),  # noqa: S104
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="loopback-any-port"),
        pytest.param("[::1]:8080", ("::1", 8080), id="ipv6"),
        pytest.param("localhost:80", ("localhost", 80), id="name"),
    ],
)
def test_split_address(addr: str, expected: tuple[str, int]) -> None:
    assert split_address(addr) == expected


@pytest.mark.parametrize("addr", ["9292x", "localhost", "host:port", ""])
def test_split_address_refuses_addresses_without_a_port(addr: str) -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        split_address(addr)


def test_headers_are_case_insensitive_and_hide_their_values() -> None:
    headers = Headers([("X-Token", "secret"), ("Accept", "a"), ("accept", "b")])

    assert headers["x-token"] == headers["X-TOKEN"] == "secret"
    assert "X-Token" in headers
    assert "x-other" not in headers
    assert headers.get("ACCEPT") == "a, b"
    assert list(headers) == ["x-token", "accept"]
    assert len(headers) == 2
    assert "secret" not in repr(headers)
    assert "secret" not in repr(Request("GET", "/", "", headers, b"secret body", "127.0.0.1"))
