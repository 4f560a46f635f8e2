"""Saving an HTTP response body to a file: streamed, size-capped and hashed on the way.

:func:`save_body` is what every download of a blob does once the request is answered (the
source artifacts a consumer fetches, the layers of an OCI artifact): the body is read as it
was sent, without content decoding, so that its digest is that of the stored file; written in
batches on a worker thread, so that the event loop never waits for the disk; and refused with
:class:`BodyTooLarge` as soon as it is announced (``Content-Length``) or received larger than
the cap, so that a server cannot fill the disk.

Network errors are httpx's own (or ``ssl.SSLError``), for the caller to word; so is what the
caller makes of the digest and size it gets back.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

__all__ = ["BodyTooLarge", "SavedBody", "save_body"]

_READ_SIZE = 256 * 1024
_WRITE_BATCH = 1024 * 1024


class BodyTooLarge(Exception):
    """The body is larger than the cap: announced so, or received so (and not saved whole)."""


@dataclass(frozen=True)
class SavedBody:
    """What was saved: its size in bytes and its hex digest."""

    size: int
    digest: str


async def save_body(
    response: httpx.Response, dest: Path, *, algorithm: str, max_size: int
) -> SavedBody:
    """Stream the body of ``response`` (opened with ``stream=True``) into ``dest``, a new file,
    hashing it with ``algorithm`` (a :mod:`hashlib` name).

    Raises :class:`BodyTooLarge` when the body is over ``max_size`` bytes, ``FileExistsError``
    when ``dest`` exists. On any error, what was written of ``dest`` stays for the caller to
    remove with its working directory.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_size:
        raise BodyTooLarge(f"the body is {declared} bytes, more than {max_size}")
    hasher = hashlib.new(algorithm)
    size = 0
    batch: list[bytes] = []
    batched = 0
    with await asyncio.to_thread(dest.open, "xb") as out:
        async for chunk in response.aiter_raw(_READ_SIZE):
            size += len(chunk)
            if size > max_size:
                raise BodyTooLarge(f"the body is more than {max_size} bytes")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _WRITE_BATCH:
                await asyncio.to_thread(_write_batch, out, hasher, batch)
                batch, batched = [], 0
        await asyncio.to_thread(_write_batch, out, hasher, batch)
    return SavedBody(size, hasher.hexdigest())


def _write_batch(out: BinaryIO, hasher: hashlib._Hash, batch: list[bytes]) -> None:
    for chunk in batch:
        hasher.update(chunk)
        out.write(chunk)
