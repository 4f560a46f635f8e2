"""Saving a response body (controllers.download) from a real HTTP server on the loopback."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from controllers.download import BodyTooLarge, save_body

MiB = 1024 * 1024
# Over the download's write batch (1 MiB), and not a multiple of any read size.
BODY = bytes(range(256)) * (3 * MiB // 256) + b"tail"


async def sized(request: web.Request) -> web.Response:
    return web.Response(body=BODY)


async def chunked(request: web.Request) -> web.StreamResponse:
    """BODY without a Content-Length, in pieces."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(BODY), 64 * 1024):
        await response.write(BODY[start : start + 64 * 1024])
    await response.write_eof()
    return response


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/sized", sized)
    app.router.add_get("/chunked", chunked)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def save(url: str, dest: Path, algorithm: str, max_size: int) -> tuple[int, str]:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url) as response,
    ):
        saved = await save_body(response, dest, algorithm=algorithm, max_size=max_size)
    return saved.size, saved.digest


@pytest.mark.parametrize("path", [pytest.param("/sized", id="sized"), "/chunked"])
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_the_body_is_saved_with_its_size_and_digest(
    server: str, tmp_path: Path, path: str, algorithm: str
) -> None:
    dest = tmp_path / "blob"

    size, digest = await save(server + path, dest, algorithm, max_size=len(BODY))

    assert (size, digest) == (len(BODY), hashlib.new(algorithm, BODY).hexdigest())
    assert dest.read_bytes() == BODY


@pytest.mark.parametrize(
    ("path", "message", "created"),
    [
        pytest.param(
            "/sized", rf"^the body is {len(BODY)} bytes, more than {MiB}$", False, id="announced"
        ),
        pytest.param("/chunked", rf"^the body is more than {MiB} bytes$", True, id="received"),
    ],
)
async def test_a_body_over_the_cap_is_refused(
    server: str, tmp_path: Path, path: str, message: str, created: bool
) -> None:
    dest = tmp_path / "blob"

    with pytest.raises(BodyTooLarge, match=message):
        await save(server + path, dest, "sha256", max_size=MiB)

    # Announced: nothing is read or written. Received: never more than the cap is written.
    assert dest.exists() == created
    assert not created or dest.stat().st_size <= MiB


async def test_an_existing_file_is_not_overwritten(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "blob"
    dest.write_bytes(b"mine")

    with pytest.raises(FileExistsError):
        await save(server + "/sized", dest, "sha256", max_size=len(BODY))

    assert dest.read_bytes() == b"mine"
