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
import contextlib
import errno
import hashlib
import http
import io
import os
import stat
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

import structlog

__all__ = ["ArtifactServer", "start_artifact_server"]

log = structlog.get_logger()

_CHUNK = 256 * 1024
_ETAG_CACHE_SIZE = 1024
# A GET is one short head: more, or slower, is not one.
_HEAD_LIMIT = 16 * 1024
_HEAD_TIMEOUT_SECONDS = 30.0


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


class ArtifactServer:
    """The artifact server on asyncio's streams: GET and HEAD, one request per connection,
    closed after the answer (the artifact fetchers open one per download). aiohttp.web would
    add about 8 MiB to the source controller for no more."""

    def __init__(self, storage_root: Path) -> None:
        # Created if missing, so the server does not depend on the storage being set up first.
        storage_root.mkdir(parents=True, exist_ok=True)
        self._root = storage_root.resolve(strict=True)
        self._etags = _EtagCache(_ETAG_CACHE_SIZE)
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of every listening socket."""
        return [
            tuple(sock.getsockname()[:2]) for server in self._servers for sock in server.sockets
        ]

    async def listen(self, host: str, port: int) -> None:
        self._servers.append(
            await asyncio.start_server(self._connection, host, port, limit=_HEAD_LIMIT)
        )

    async def cleanup(self) -> None:
        """Stop listening; answers being sent are cut off."""
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for server in self._servers:
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            await self._serve(head, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass  # a client that went away, sent too much or too slowly
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _answer(writer, 400, {}, b"bad request\n")
            return
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            await _answer(writer, 405, {"Allow": "GET, HEAD"}, b"method not allowed\n")
            return
        segments = _segments(target)
        if segments is None:
            await _answer(writer, 400, {}, b"bad artifact path\n")
            return
        opened = await asyncio.to_thread(_open_inside, self._root, segments)
        if opened is None:
            await _answer(writer, 404, {}, b"artifact not found\n")
            return
        file, info = opened
        try:
            etag = await self._etags.etag(file, info)
            headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache"}
            if etag in _if_none_match(lines[1:]):
                await _answer(writer, 304, headers, None)
                return
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(info.st_size)
            writer.write(_head(200, headers))
            if method != "HEAD":
                file.seek(0)
                while chunk := await asyncio.to_thread(file.read, _CHUNK):
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        finally:
            file.close()


async def start_artifact_server(storage_root: Path, host: str, port: int) -> ArtifactServer:
    """Serve ``storage_root`` (created if missing) on ``host:port``; stop it with
    ``await server.cleanup()``. With ``port=0`` the kernel picks a free port;
    ``server.addresses`` tells which."""
    server = ArtifactServer(storage_root)
    try:
        await server.listen(host, port)
    except BaseException:
        await server.cleanup()
        raise
    log.info("artifact server started", addresses=[str(a) for a in server.addresses])
    return server


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in {**headers, "Connection": "close"}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _answer(
    writer: asyncio.StreamWriter, status: int, headers: dict[str, str], text: bytes | None
) -> None:
    """A whole answer: ``text`` (None: no body, as a 304 has none) as plain text."""
    if text is not None:
        headers = {
            **headers,
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Length": str(len(text)),
        }
    writer.write(_head(status, headers) + (text or b""))
    await writer.drain()


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


def _if_none_match(header_lines: list[str]) -> set[str]:
    """The entity tags of every If-None-Match header line."""
    tags: set[str] = set()
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "if-none-match":
            tags |= {t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()}
    return tags
