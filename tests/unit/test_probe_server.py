"""The manager's probes and metrics server, on the loopback: routes, methods, and requests
that are not one short head."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from controllers.envtest import free_port
from controllers.manager import _TEXT, _ProbeServer


@pytest.fixture
async def server() -> AsyncIterator[str]:
    probes = _ProbeServer(
        {
            "/healthz": lambda: (200, _TEXT, b"ok"),
            "/readyz": lambda: (503, _TEXT, b"informers not synced"),
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", b"a 1\n"),
        }
    )
    port = free_port()
    await probes.listen("127.0.0.1", port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await probes.close()


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        pytest.param("GET", "/healthz", 200, b"ok", id="healthz"),
        pytest.param("GET", "/readyz?verbose", 503, b"informers not synced", id="not-ready"),
        pytest.param("GET", "/metrics", 200, b"a 1\n", id="metrics"),
        pytest.param("HEAD", "/healthz", 200, b"", id="head"),
        pytest.param("GET", "/other", 404, b"404: Not Found", id="unknown-path"),
        pytest.param("POST", "/healthz", 405, b"405: Method Not Allowed", id="post"),
    ],
)
async def test_routes_answer_and_close(
    server: str, method: str, path: str, status: int, body: bytes
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.request(method, f"http://{server}{path}")

    assert (response.status_code, response.content) == (status, body)
    assert response.headers["Connection"] == "close"
    if path == "/metrics":
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n", id="too-long"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", id="cut-short"),
    ],
)
async def test_what_is_not_one_short_head_is_closed_unanswered(
    server: str, request_bytes: bytes
) -> None:
    host, port = server.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request_bytes)
    await writer.drain()
    writer.write_eof()
    try:
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()

    assert answer == b""


async def test_a_request_line_that_is_not_http_is_a_bad_request(server: str) -> None:
    host, port = server.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"hello\r\n\r\n")
    try:
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()

    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
