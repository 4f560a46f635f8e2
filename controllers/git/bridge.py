"""A loopback HTTP bridge to an HTTP(S) Git server, for what libgit2 cannot do itself.

libgit2 cannot present a TLS client certificate, ignores an HTTP proxy for http:// remotes
and fails to parse some proxies' CONNECT answers. For such repositories the git worker talks
plain HTTP to this bridge on 127.0.0.1, under a random path prefix only it knows, and the
bridge makes the real requests with httpx: client certificate, CA, credentials and proxy.
The worker process never sees the key or the passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from controllers.tls import context_from_secret

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["Bridge", "https_bridge", "needs_bridge"]

# Hop-by-hop headers, and those the bridge sets itself.
_DROPPED = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "authorization",
    "content-length",
}


@dataclass
class Bridge:
    """The URL to give libgit2, and what went wrong upstream (libgit2 only sees a 502)."""

    url: str
    errors: list[str] = field(default_factory=list)


def needs_bridge(url: str, auth: Mapping[str, str], proxy: str | None) -> bool:
    """Whether libgit2 needs the bridge: a client certificate, or any proxy."""
    http = url.startswith(("http://", "https://"))
    return http and (proxy is not None or (url.startswith("https://") and "tls.crt" in auth))


@contextlib.asynccontextmanager
async def https_bridge(
    url: str, auth: Mapping[str, str], *, proxy: str | None, timeout: float
) -> AsyncIterator[Bridge]:
    """Yield a Bridge whose ``http://127.0.0.1`` URL reaches ``url``. Unusable TLS settings
    in ``auth`` raise :class:`controllers.tls.TLSConfigError`, a ``ValueError``."""
    # aiohttp (about 8 MiB) is imported by the first repository that needs the bridge, not by
    # every source controller.
    from aiohttp import web

    parts = urlsplit(url)
    upstream = f"{parts.scheme}://{parts.netloc}"
    prefix = "/" + secrets.token_hex(16)
    headers: dict[str, str] = {}
    if auth.get("bearerToken"):
        headers["Authorization"] = f"Bearer {auth['bearerToken']}"
    basic = (auth["username"], auth.get("password", "")) if auth.get("username") else None
    bridge = Bridge("")
    context = await asyncio.to_thread(context_from_secret, auth)
    # No keep-alive: a proxy may drop an idle connection the pool would then reuse.
    async with httpx.AsyncClient(
        verify=context,
        proxy=proxy,
        timeout=timeout,
        auth=basic,
        headers=headers,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:

        async def forward(request: web.Request) -> web.StreamResponse:
            if not request.path.startswith(prefix + "/"):
                return web.Response(status=404)
            target = upstream + request.path.removeprefix(prefix)
            if request.query_string:
                target += "?" + request.query_string
            sent = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
            outgoing = client.build_request(
                request.method, target, headers=sent, content=request.content.iter_any()
            )
            try:
                answer = await client.send(outgoing, stream=True)
            except httpx.HTTPError as err:
                bridge.errors.append(f"{upstream}: {type(err).__name__}: {err}")
                return web.Response(status=502)
            try:
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED}
                kept.pop("content-encoding", None)  # httpx hands over decoded bytes
                response = web.StreamResponse(status=answer.status_code, headers=kept)
                await response.prepare(request)
                try:
                    async for chunk in answer.aiter_bytes():
                        await response.write(chunk)
                except httpx.HTTPError as err:
                    # Cut short: libgit2 sees a broken response, the reason is kept here.
                    bridge.errors.append(f"{upstream}: {type(err).__name__}: {err}")
                    response.force_close()
                    return response
                await response.write_eof()
                return response
            finally:
                await answer.aclose()

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        bridge.url = f"http://127.0.0.1:{port}{prefix}{parts.path}"
        try:
            yield bridge
        finally:
            await runner.cleanup()
