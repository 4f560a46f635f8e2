"""Downloading and unpacking source artifacts: what every consumer of a source does.

:func:`fetch_artifact` downloads ``status.artifact.url``, checks it against
``status.artifact.digest`` and unpacks it; :func:`extract_tarball` is the unpacking half, for
an archive already on disk; :func:`fetch_file` the download half, for an artifact that is one
file (a HelmRepository's index). Both treat the archive as hostile: it may only hold regular files
and directories with relative paths, within a size and an entry budget, and nothing appears
at the destination unless everything succeeded.

Errors, all :class:`ArtifactError`:

- :class:`ArtifactUnavailable`: the download failed (network, HTTP status, timeout);
- :class:`DigestMismatch`: the file is not the one the digest names;
- :class:`ArtifactTooLarge`: the download or the unpacked content is over ``max_size``;
- :class:`UnsafeArchive`: an entry that could escape or abuse the destination;
- :class:`ArtifactError` itself: anything else (a malformed digest or URL, a corrupt archive,
  a destination in the way, a local I/O error).

Messages name the URL without user info, query or fragment, so never a credential.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import httpx

from controllers.download import BodyTooLarge, save_body
from controllers.tls import system_context

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_SIZE",
    "ArtifactError",
    "ArtifactTooLarge",
    "ArtifactUnavailable",
    "DigestMismatch",
    "UnsafeArchive",
    "extract_tarball",
    "fetch_artifact",
    "fetch_file",
]

DEFAULT_MAX_SIZE = 100 * 1024 * 1024
"""Flux's default limit (fluxcd/pkg tar ``DefaultMaxUntarSize``), for download and content."""
DEFAULT_MAX_ENTRIES = 50_000
"""Far above any repository of manifests, far below what would exhaust inodes or memory."""

_DIGEST_SIZES = {"sha256": 64, "sha384": 96, "sha512": 128}
_CHUNK = 256 * 1024
# Tar headers and padding are read on top of file content; a pax or long-name header can
# hold some kilobytes. This much per entry, plus a base, is allowed; a header that is bigger
# than that is a bomb, not a path.
_HEADER_ALLOWANCE = 8 * 1024
_BASE_ALLOWANCE = 1024 * 1024


class ArtifactError(Exception):
    """An artifact could not be fetched or unpacked."""


class ArtifactUnavailable(ArtifactError):
    """The artifact could not be downloaded: network error, timeout or HTTP error status."""


class DigestMismatch(ArtifactError):
    """The downloaded file does not have the expected digest."""


class ArtifactTooLarge(ArtifactError):
    """The download or its unpacked content exceeds the size limit."""


class UnsafeArchive(ArtifactError):
    """The archive holds an entry that is not a plain file or directory inside the
    destination: an absolute path, a ``..`` component, a link, a device, or too many entries."""


async def fetch_artifact(
    url: str,
    digest: str,
    dest: Path,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    timeout: float = 60,
) -> None:
    """Download the tar.gz artifact at ``url``, verify it has ``digest`` (``<algorithm>:<hex>``,
    sha256, sha384 or sha512) and unpack it to ``dest``.

    ``dest`` must not exist or be an empty directory; its parent must exist. ``max_size`` caps
    the download and, separately, the unpacked content; ``timeout`` (seconds) caps the whole
    download. On any error ``dest`` is left as it was and nothing is left beside it.
    """
    algorithm, expected = _parse_digest(digest)
    shown = _display_url(url)
    _check_destination(dest)
    workdir = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.download-"))
    try:
        archive = workdir / "artifact.tar.gz"
        actual = await _download(url, shown, archive, algorithm, max_size, timeout)
        if actual != expected:
            raise DigestMismatch(
                f"artifact downloaded from {shown} has digest {algorithm}:{actual}, expected "
                f"{algorithm}:{expected}; the source may have published a new artifact since "
                "its status was read, so retry once the source is ready again"
            )
        await asyncio.to_thread(extract_tarball, archive, dest, max_size)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def fetch_file(
    url: str,
    digest: str,
    dest: Path,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    timeout: float = 60,
) -> None:
    """Download the single-file artifact at ``url`` to ``dest`` (a new file) and verify it has
    ``digest``, as :func:`fetch_artifact` does but without unpacking. On any error nothing is
    left at ``dest``."""
    algorithm, expected = _parse_digest(digest)
    shown = _display_url(url)
    if await asyncio.to_thread(dest.exists):
        raise ArtifactError(f"cannot download to {dest}: it exists")
    try:
        actual = await _download(url, shown, dest, algorithm, max_size, timeout)
        if actual != expected:
            raise DigestMismatch(
                f"artifact downloaded from {shown} has digest {algorithm}:{actual}, expected "
                f"{algorithm}:{expected}; the source may have published a new artifact since "
                "its status was read, so retry once the source is ready again"
            )
    except BaseException:
        await asyncio.to_thread(dest.unlink, True)
        raise


def extract_tarball(
    path: Path,
    dest: Path,
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> None:
    """Unpack the tar.gz at ``path`` to ``dest`` (which must not exist or be an empty
    directory), refusing unsafe entries, more than ``max_entries`` entries and more than
    ``max_size`` bytes of file content. Unpacks into a temporary directory beside ``dest``
    and renames it into place, so on failure ``dest`` is untouched.

    Blocking: async callers run it with ``asyncio.to_thread``.
    """
    _check_destination(dest)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-"))
    renamed = False
    try:
        with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            stream = _BoundedReader(unzipped, max_size)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                _unpack(tar, stream, staging, path.name, max_size, max_entries)
        os.rename(staging, dest)
        renamed = True
    except ArtifactError:
        raise
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ArtifactError(f"{path.name} is not a valid tar.gz archive: {err}") from None
    except OSError as err:
        raise ArtifactError(f"cannot unpack {path.name} to {dest}: {err.strerror or err}") from None
    finally:
        if not renamed:
            shutil.rmtree(staging, ignore_errors=True)


# -- download ---------------------------------------------------------------------------------


async def _download(
    url: str, shown: str, archive: Path, algorithm: str, max_size: int, timeout: float
) -> str:
    """Stream ``url`` to ``archive``; the hex digest of what was received."""
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                timeout=timeout, follow_redirects=True, verify=system_context()
            ) as client,
            # The digest is of the file as stored: ask for it without content coding.
            client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
        ):
            if response.status_code != httpx.codes.OK:
                raise ArtifactUnavailable(
                    f"GET {shown} returned HTTP {response.status_code} "
                    f"{response.reason_phrase}{_status_hint(response.status_code)}"
                )
            coding = response.headers.get("Content-Encoding", "identity").lower()
            if coding != "identity":
                raise ArtifactUnavailable(
                    f"GET {shown} returned the artifact with Content-Encoding {coding!r}; "
                    "the artifact server must send the file as stored"
                )
            try:
                saved = await save_body(response, archive, algorithm=algorithm, max_size=max_size)
            except BodyTooLarge:
                raise ArtifactTooLarge(
                    f"artifact at {shown} is larger than the {max_size} byte limit; "
                    "exclude files from the source (.sourceignore or spec.ignore) or raise the "
                    "limit"
                ) from None
    except TimeoutError:
        raise ArtifactUnavailable(
            f"downloading {shown} did not finish within {timeout:g}s"
        ) from None
    except httpx.HTTPError as err:
        raise ArtifactUnavailable(
            f"cannot download {shown}: {_describe(err, url, shown)}"
        ) from None
    return saved.digest


def _status_hint(status: int) -> str:
    if status == httpx.codes.NOT_FOUND:
        return (
            "; the artifact is no longer in the source controller's storage (garbage "
            "collected or not yet written); it is fetched again once the source reports "
            "its current artifact"
        )
    return ""


def _parse_digest(digest: str) -> tuple[str, str]:
    algorithm, _, value = digest.partition(":")
    size = _DIGEST_SIZES.get(algorithm)
    if size is None or not re.fullmatch(f"[0-9a-fA-F]{{{size}}}", value):
        raise ArtifactError(
            f"unsupported artifact digest {digest[:160]!r}: expected '<sha256|sha384|sha512>:<hex>'"
        )
    return algorithm, value.lower()


def _display_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to put in a message."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ArtifactError("invalid artifact URL: it cannot be parsed") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ArtifactError(
            f"invalid artifact URL with scheme {parsed.scheme!r}: expected http(s)://host/path"
        )
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def _describe(err: Exception, url: str, shown: str) -> str:
    """``err`` as text with the URL's secret parts (user info, query) replaced."""
    text = str(err) or type(err).__name__
    parsed = httpx.URL(url)
    text = text.replace(url, shown)
    secrets = (
        parsed.userinfo.decode(errors="replace"),
        parsed.password or "",
        parsed.query.decode(errors="replace"),
    )
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return f"{type(err).__name__}: {text}"


# -- unpacking --------------------------------------------------------------------------------


class _BoundedReader(io.RawIOBase):
    """A read-only stream over the decompressed tar that raises once more than ``limit``
    bytes were read, never asking the decompressor for more than that: a gzip bomb stops at
    the limit instead of being inflated first."""

    def __init__(self, raw: gzip.GzipFile, max_size: int) -> None:
        super().__init__()
        self.raw = raw
        self.max_size = max_size
        self.limit = max_size + _BASE_ALLOWANCE + _HEADER_ALLOWANCE
        self.count = 0

    def allow_entries(self, entries: int) -> None:
        self.limit = self.max_size + _BASE_ALLOWANCE + _HEADER_ALLOWANCE * (entries + 1)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        remaining = self.limit - self.count
        if size < 0 or size > remaining + 1:
            size = remaining + 1
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise ArtifactTooLarge(
                f"archive unpacks to more than {self.max_size} bytes of content plus headers; "
                "it is a compression bomb or larger than the limit"
            )
        return data


def _unpack(
    tar: tarfile.TarFile,
    stream: _BoundedReader,
    staging: Path,
    archive_name: str,
    max_size: int,
    max_entries: int,
) -> None:
    written = 0
    entries = 0
    while (member := tar.next()) is not None:
        entries += 1
        if entries > max_entries:
            raise UnsafeArchive(
                f"{archive_name} has more than {max_entries} entries; refusing to unpack it"
            )
        stream.allow_entries(entries)
        parts = _entry_path(member.name)
        if member.isdir():
            if parts:
                _make_dir(staging.joinpath(*parts), (member.mode & 0o755) | 0o700)
            continue
        # Source artifacts hold only files and directories (the storage never archives a
        # link). A link is refused even when it points inside the tree: a later entry could
        # write through it, and no legitimate artifact needs one.
        if member.issym() or member.islnk():
            kind = "symlink" if member.issym() else "hard link"
            raise UnsafeArchive(
                f"{archive_name} entry {member.name!r} is a {kind} to {member.linkname!r}; "
                "artifacts may only contain regular files and directories"
            )
        if not member.isreg() or member.issparse():
            raise UnsafeArchive(
                f"{archive_name} entry {member.name!r} is a {_type_name(member)}; "
                "artifacts may only contain regular files and directories"
            )
        if not parts:
            raise UnsafeArchive(f"{archive_name} has a file entry with an empty name")
        if written + member.size > max_size:
            raise ArtifactTooLarge(
                f"{archive_name} unpacks to more than {max_size} bytes "
                f"(entry {member.name!r} is {member.size} bytes); exclude files from the "
                "source (.sourceignore or spec.ignore) or raise the limit"
            )
        written = _write_member(tar, member, staging.joinpath(*parts), written, max_size)


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, written: int, max_size: int
) -> int:
    """Write ``member`` to ``target``; the content bytes written so far, counted as read
    rather than taken from the header."""
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - regular members always have content
        raise ArtifactError(f"entry {member.name!r} has no content")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = (member.mode & 0o755) | 0o600  # never setuid/setgid/sticky or group/other write
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    os.fchmod(fd, mode)  # the mode from the archive, whatever the umask
    with source, os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > max_size:
                raise ArtifactTooLarge(f"archive unpacks to more than {max_size} bytes")
            out.write(chunk)
    return written


def _entry_path(name: str) -> tuple[str, ...]:
    """The components of an entry name, with ``.`` and empty ones dropped (Flux archives
    start with a ``.`` entry). Absolute names and ``..`` are refused."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise UnsafeArchive(f"archive entry {name!r} is not a relative path; refusing to unpack it")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"archive entry {name!r} has a '..' component; refusing to unpack it")
    return parts


def _make_dir(path: Path, mode: int) -> None:
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():  # pragma: no cover - links are never created
        raise UnsafeArchive(f"archive directory {path.name!r} is not a directory")
    path.chmod(mode)


def _type_name(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device node"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    return f"entry of type {member.type!r}"


def _check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ArtifactError(f"cannot unpack to {dest}: it exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise ArtifactError(f"cannot unpack to {dest}: the directory is not empty")
    if not dest.parent.is_dir():
        raise ArtifactError(f"cannot unpack to {dest}: {dest.parent} is not a directory")
