"""The artifact server: the storage root over HTTP, read-only.

GET and HEAD only. A request path is taken from the raw request line, each segment
percent-decoded once; a segment that is empty, ``.``, ``..``, hidden (the storage's lock and
temporary files), or that decodes to something containing ``/``, ``\\`` or NUL is answered
400 without touching the disk. The path is then resolved (following symlinks) and served only
if it is a regular file that stays inside the root; anything else is 404. There are no
directory listings.

Responses carry ``Content-Length`` and an ``ETag`` that is the file's sha256 (the hex part of
the artifact digest), cached per file version; ``If-None-Match`` gets 304.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import stat
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

import structlog
from aiohttp import web

__all__ = ["create_artifact_app", "start_artifact_server"]

log = structlog.get_logger()

_CHUNK = 256 * 1024
_ETAG_CACHE_SIZE = 1024


class _EtagCache:
    """sha256 of files, keyed by file version. Storage files are replaced by rename, never
    rewritten in place, so a new inode or mtime means new content: each version is hashed
    once, and the cache keeps the most recently used versions."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._tags: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()

    async def etag(self, file: io.BufferedReader, info: os.stat_result) -> str:
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        tag = self._tags.get(key)
        if tag is None:
            tag = await asyncio.to_thread(_sha256, file)
            self._tags[key] = tag
            while len(self._tags) > self._size:
                self._tags.popitem(last=False)
        else:
            self._tags.move_to_end(key)
        return tag


_ROOT_KEY = web.AppKey("storage_root", Path)
_ETAGS_KEY = web.AppKey("etags", _EtagCache)


def create_artifact_app(storage_root: Path) -> web.Application:
    """An aiohttp application serving the files under ``storage_root`` (created if missing,
    so the server does not depend on the storage being set up first)."""
    storage_root.mkdir(parents=True, exist_ok=True)
    app = web.Application()
    app[_ROOT_KEY] = storage_root.resolve(strict=True)
    app[_ETAGS_KEY] = _EtagCache(_ETAG_CACHE_SIZE)
    app.router.add_get("/{path:.*}", _serve)  # HEAD is added with GET
    return app


async def start_artifact_server(storage_root: Path, host: str, port: int) -> web.AppRunner:
    """Serve ``storage_root`` on ``host:port``; stop it with ``await runner.cleanup()``.
    With ``port=0`` the kernel picks a free port; ``runner.addresses`` tells which."""
    runner = web.AppRunner(create_artifact_app(storage_root), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("artifact server started", addresses=[str(a) for a in runner.addresses])
    return runner


async def _serve(request: web.Request) -> web.StreamResponse:
    segments = _segments(request.raw_path)
    if segments is None:
        return web.Response(status=400, text="bad artifact path\n")
    root = request.app[_ROOT_KEY]
    opened = await asyncio.to_thread(_open_inside, root, segments)
    if opened is None:
        return web.Response(status=404, text="artifact not found\n")
    file, info = opened
    try:
        etag = await request.app[_ETAGS_KEY].etag(file, info)
        headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache"}
        if etag in _if_none_match(request):
            return web.Response(status=304, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = info.st_size
        await response.prepare(request)
        if request.method != "HEAD":
            file.seek(0)
            while chunk := await asyncio.to_thread(file.read, _CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        file.close()


def _segments(raw_path: str) -> list[str] | None:
    """The decoded path segments of a request target, or None when it is not a plain
    relative path inside the root."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/") or path == "/":
        return None
    try:
        segments = [unquote(part, errors="strict") for part in path[1:].split("/")]
    except UnicodeDecodeError:
        return None
    for segment in segments:
        if (
            not segment
            or segment.startswith(".")
            or "/" in segment
            or "\\" in segment
            or "\x00" in segment
        ):
            return None
    return segments


def _open_inside(
    root: Path, segments: list[str]
) -> tuple[io.BufferedReader, os.stat_result] | None:
    """The file at ``segments`` under ``root``, opened, if it is a regular file whose real
    path is inside ``root``; None otherwise."""
    try:
        resolved = root.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError, UnicodeEncodeError):
        return None
    if not resolved.is_relative_to(root):
        return None
    try:
        # O_NOFOLLOW: the resolved path has no symlinks left; refuse one swapped in since.
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.ENXIO):
            log.warning("artifact open failed", path=str(resolved), error=str(err))
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), info


def _sha256(file: io.BufferedReader) -> str:
    file.seek(0)
    return hashlib.file_digest(file, "sha256").hexdigest()


def _if_none_match(request: web.Request) -> set[str]:
    header = request.headers.get("If-None-Match", "")
    return {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",") if tag.strip()}
