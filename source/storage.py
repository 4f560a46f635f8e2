"""Artifact storage: where the source controller keeps the files it serves.

Files live at ``<kind lowercase>/<namespace>/<name>/<file>`` under the storage root and are
served at ``http://<advertised address>/<path>``. Every write goes to a temporary file in the
same directory, is flushed to disk and renamed over the artifact, under a per-artifact lock
file, so a reader never sees a partial file and two writers never interleave.

Archives are gzip-compressed tarballs built like Flux's ``Storage.Archive``: regular files and
directories only (symlinks, devices, FIFOs and sockets are skipped, never followed), uid/gid 0,
no user or group names, zero timestamps, and modes normalised to 0o750 for directories, 0o700
for files with any execute bit and 0o600 for other files. Entries are written depth first,
names sorted within each directory (Go's ``filepath.Walk`` order), and the gzip header carries
no name or time, so the same tree always gives the same digest.

Names that start with a dot are the storage's own: ``.<file>.lock`` lock files and
``.<file>.tmp-*`` files being written. Artifact file names may not start with a dot, and the
artifact server does not serve such names.

Everything here is blocking file work; async callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from controllers.api import Artifact, time_now
from source.ignore import IgnoreRules, InvalidIgnoreFile, load_ignore_rules

__all__ = ["ArtifactStorage", "StorageError"]

# Flux's defaults (source-controller internal/storage/storage.go).
DIR_MODE = 0o750
# Consumers refuse more than 100 MiB unpacked by default; a source ten times that is a mistake.
DEFAULT_MAX_CONTENT_SIZE = 2**30
EXECUTABLE_FILE_MODE = 0o700
FILE_MODE = 0o600

_DIGEST_ALGORITHMS = ("sha256", "sha384", "sha512")
_CHUNK = 1024 * 1024
_LOCK_SUFFIX = ".lock"
_TEMP_MARKER = ".tmp-"


class StorageError(Exception):
    """A storage operation failed. The message names the artifact path (relative to the storage
    root) and the cause; it never contains file contents."""


class ArtifactStorage:
    """The artifact files of one source controller, under ``root``.

    ``advertised_address`` is ``host[:port]`` (or a full ``http(s)://`` base URL) that other
    controllers use to download artifacts. Garbage collection removes an object's files other
    than its current artifact once they are older than ``retention_ttl`` seconds, and keeps at
    most ``retention_records`` files per object, the current one included.
    """

    def __init__(
        self,
        root: Path,
        advertised_address: str,
        retention_ttl: float = 60.0,
        retention_records: int = 2,
        max_content_size: int = DEFAULT_MAX_CONTENT_SIZE,
    ) -> None:
        """``max_content_size`` caps what one archive may hold, before compression."""
        if not advertised_address:
            raise ValueError("the advertised storage address must not be empty")
        if retention_ttl < 0:
            raise ValueError(f"artifact retention TTL must be >= 0, not {retention_ttl}")
        if retention_records < 1:
            raise ValueError(f"artifact retention records must be >= 1, not {retention_records}")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        self.advertised_address = advertised_address
        self.retention_ttl = retention_ttl
        self.retention_records = retention_records
        self.max_content_size = max_content_size

    # -- naming -------------------------------------------------------------------------------

    def new_artifact(
        self, kind: str, namespace: str, name: str, revision: str, filename: str
    ) -> Artifact:
        """The artifact ``filename`` of an object, not yet written: ``path``, ``url`` and
        ``revision`` are set, ``digest`` and ``lastUpdateTime`` are empty until
        :meth:`archive` or :meth:`copy_file` returns the stored artifact."""
        _check_component(filename, "file name")
        if filename.startswith("."):
            raise StorageError(f"artifact file name {filename!r} must not start with '.'")
        path = f"{self._object_path(kind, namespace, name)}/{filename}"
        # Not validated: an empty digest is what "not written yet" looks like.
        return Artifact.model_construct(
            path=path,
            url=self.url_for(path),
            revision=revision,
            digest="",
            last_update_time="",
            size=None,
            metadata=None,
        )

    def local_path(self, artifact: Artifact) -> Path:
        """Where ``artifact`` lives on disk. Raises :class:`StorageError` for a path that is
        absolute, has ``.``/``..``/empty components or resolves outside the root."""
        return self._safe_join(artifact.path)

    # -- writing ------------------------------------------------------------------------------

    def archive(
        self,
        artifact: Artifact,
        source_dir: Path,
        ignore: str | None = None,
        exclude_defaults: bool = True,
        filter_files: bool = True,
    ) -> Artifact:
        """Write ``source_dir`` as a tarball to ``artifact``'s path and return the stored
        artifact (digest, size and lastUpdateTime set).

        ``ignore`` is ``spec.ignore`` (gitignore syntax, relative to ``source_dir``);
        ``.sourceignore`` files in the tree apply too, and ``exclude_defaults`` turns the
        built-in excludes on (see :mod:`source.ignore` for how they combine). With
        ``filter_files=False`` none of that applies and every regular file goes in, as for
        Flux's Bucket artifacts, whose object keys were filtered before download.
        """
        if not source_dir.is_dir():
            raise StorageError(f"cannot archive {source_dir}: not a directory")
        target = self.local_path(artifact)
        try:
            rules = (
                load_ignore_rules(source_dir, ignore, exclude_defaults)
                if filter_files
                else IgnoreRules()
            )
        except InvalidIgnoreFile as err:
            raise StorageError(f"cannot archive {artifact.path}: {err}") from None
        except OSError as err:
            raise StorageError(f"cannot read ignore files in {source_dir}: {err}") from err
        digest, size = self._write(
            artifact,
            target,
            lambda out: _write_tarball(out, source_dir, rules, self.max_content_size),
        )
        return _stored(artifact, digest, size)

    def copy_file(self, artifact: Artifact, src_path: Path) -> Artifact:
        """Copy the regular file ``src_path`` (not a symlink) to ``artifact``'s path and
        return the stored artifact, e.g. a Helm index or a chart."""
        target = self.local_path(artifact)
        try:
            source = _open_regular(src_path)
        except OSError as err:
            raise StorageError(f"cannot copy {src_path} to {artifact.path}: {err}") from err
        if source is None:
            raise StorageError(f"cannot copy {src_path} to {artifact.path}: not a regular file")
        with source:
            digest, size = self._write(
                artifact, target, lambda out: shutil.copyfileobj(source, out, _CHUNK)
            )
        return _stored(artifact, digest, size)

    # -- reading ------------------------------------------------------------------------------

    def has(self, artifact: Artifact) -> bool:
        """Whether ``artifact``'s file is in storage, is a regular file and has its digest."""
        algorithm, _, expected = (artifact.digest or "").partition(":")
        if algorithm not in _DIGEST_ALGORITHMS or not expected:
            return False
        try:
            file = _open_regular(self.local_path(artifact))
        except (StorageError, OSError):
            return False
        if file is None:
            return False
        with file:
            digest = hashlib.file_digest(file, algorithm).hexdigest()
        return digest == expected

    # -- cleaning up --------------------------------------------------------------------------

    def garbage_collect(
        self, kind: str, namespace: str, name: str, keep: Artifact | None
    ) -> list[str]:
        """Remove an object's old artifact files and return their storage paths.

        ``keep`` (the current artifact) always stays. Other files are removed once older than
        the retention TTL, and the oldest are removed beyond ``retention_records`` files in
        all. Lock files go with their artifact; leftover temporary files and locks without an
        artifact go once older than the TTL.
        """
        relative_dir = self._object_path(kind, namespace, name)
        directory = self._safe_join(relative_dir)
        keep_name = None
        if keep is not None:
            keep_path = self.local_path(keep)
            if keep_path.parent != directory:
                raise StorageError(f"artifact {keep.path} does not belong to {relative_dir}")
            keep_name = keep_path.name

        try:
            with os.scandir(directory) as entries:
                files = {
                    entry.name: entry.stat(follow_symlinks=False).st_mtime
                    for entry in entries
                    if entry.is_file(follow_symlinks=False)
                }
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StorageError(f"cannot list {relative_dir}: {err}") from err

        now = time.time()
        expired = {file for file, mtime in files.items() if now - mtime > self.retention_ttl}
        # Newest first; names starting with a dot are locks and files being written.
        others = sorted(
            (file for file in files if not file.startswith(".") and file != keep_name),
            key=lambda file: (files[file], file),
            reverse=True,
        )
        slots = self.retention_records - (1 if keep_name in files else 0)
        fresh = [file for file in others if file not in expired]
        garbage = [file for file in others if file in expired] + fresh[max(slots, 0) :]

        doomed = set(garbage)
        for filename in files:
            owner = _lock_target(filename)
            if owner is not None:
                # A lock goes with its artifact, or once stale when its artifact never appeared.
                if owner in garbage or (owner not in files and filename in expired):
                    doomed.add(filename)
            elif filename.startswith(".") and _TEMP_MARKER in filename and filename in expired:
                doomed.add(filename)  # left behind by a writer that died

        removed: list[str] = []
        errors: list[str] = []
        for filename in sorted(doomed):
            try:
                (directory / filename).unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                errors.append(f"{filename}: {err.strerror}")
                continue
            if filename in garbage:
                removed.append(f"{relative_dir}/{filename}")
        if errors:
            raise StorageError(f"cannot remove old files in {relative_dir}: {'; '.join(errors)}")
        return removed

    def remove_all(self, kind: str, namespace: str, name: str) -> None:
        """Remove every file of an object (its whole directory); nothing to remove is fine."""
        relative_dir = self._object_path(kind, namespace, name)
        directory = self._safe_join(relative_dir)
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            return
        except OSError as err:
            raise StorageError(f"cannot remove {relative_dir}: {err}") from err

    # -- internals ----------------------------------------------------------------------------

    def _object_path(self, kind: str, namespace: str, name: str) -> str:
        for value, what in ((kind, "kind"), (namespace, "namespace"), (name, "name")):
            _check_component(value, what)
        return f"{kind.lower()}/{namespace}/{name}"

    def url_for(self, path: str) -> str:
        """The address the artifact server serves ``path`` at."""
        base = self.advertised_address.rstrip("/")
        if not base.startswith(("http://", "https://")):
            base = f"http://{base}"
        return f"{base}/{quote(path, safe='/+@:')}"

    def _safe_join(self, relative: str) -> Path:
        parts = relative.split("/")
        if (
            not relative
            or relative.startswith("/")
            or "\x00" in relative
            or "\\" in relative
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise StorageError(
                f"refusing storage path {relative!r}: it must be relative to the storage root, "
                "with no empty, '.' or '..' components"
            )
        joined = self.root.joinpath(*parts)
        if not joined.resolve().is_relative_to(self.root):
            raise StorageError(f"refusing storage path {relative!r}: it leaves the storage root")
        # Unresolved, so that opening it with O_NOFOLLOW refuses a symlinked artifact file.
        return joined

    def _write(
        self, artifact: Artifact, target: Path, produce: Callable[[_DigestWriter], object]
    ) -> tuple[str, int]:
        """Run ``produce`` into a temporary file beside ``target`` under the artifact's lock,
        then rename it over ``target``; the sha256 digest and size of what was written."""
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _locked(target):
                fd, temp = tempfile.mkstemp(
                    dir=target.parent, prefix=f".{target.name}{_TEMP_MARKER}"
                )
                try:
                    with os.fdopen(fd, "wb") as raw:
                        out = _DigestWriter(raw)
                        produce(out)
                        raw.flush()
                        os.fsync(raw.fileno())
                    os.replace(temp, target)
                except BaseException:
                    with suppress(FileNotFoundError):
                        os.unlink(temp)
                    raise
                return f"sha256:{out.hash.hexdigest()}", out.size
        except (OSError, tarfile.TarError) as err:
            raise StorageError(f"cannot write artifact {artifact.path}: {err}") from err


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the artifact's lock file. The lock belongs to the open
    file, so nested use on one artifact would deadlock; only :meth:`_write` takes it."""
    fd = os.open(
        target.with_name(f".{target.name}{_LOCK_SUFFIX}"),
        os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_target(filename: str) -> str | None:
    """The artifact file name a lock file belongs to, or None for other names."""
    if filename.startswith(".") and filename.endswith(_LOCK_SUFFIX):
        return filename[1 : -len(_LOCK_SUFFIX)]
    return None


class _DigestWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _write_tarball(out: _DigestWriter, source: Path, rules: IgnoreRules, max_content: int) -> None:
    # filename="" and mtime=0 keep the gzip header free of anything but the content.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar,
    ):
        content = 0
        for relative, entry in _walk(source):
            if entry.is_dir(follow_symlinks=False):
                if not rules.excludes(relative, is_dir=True):
                    tar.addfile(_header(relative, tarfile.DIRTYPE, DIR_MODE))
            elif entry.is_file(follow_symlinks=False) and not rules.excludes(relative, False):
                content += entry.stat(follow_symlinks=False).st_size
                if content > max_content:
                    raise StorageError(
                        f"content exceeds the artifact size limit of {_size(max_content)} at "
                        f"'{relative}': exclude large files with .sourceignore or spec.ignore"
                    )
                _add_file(tar, Path(entry.path), relative)
            elif entry.is_symlink() and not rules.excludes(relative, False):
                _refuse_escaping_link(source, Path(entry.path), relative)
            # Anything else (symlinks, devices, FIFOs, sockets) never goes in, as in Flux.


def _size(count: int) -> str:
    return f"{count / 2**30:g} GiB" if count >= 2**30 else f"{count / 2**20:g} MiB"


def _refuse_escaping_link(source: Path, link: Path, relative: str) -> None:
    """Links are left out as in Flux, but one pointing out of the tree is refused outright:
    it is never what a source meant to ship, and silently dropping it hides the attempt."""
    target = os.readlink(link)
    resolved = (link.parent / target).resolve()
    if not resolved.is_relative_to(source.resolve()):
        raise StorageError(
            f"symlink '{relative}' points outside the source ('{target}'): "
            "remove it or list it in .sourceignore"
        )


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``root`` as (``/``-separated relative path, entry), depth first with
    names sorted in each directory; symlinked directories are not entered."""
    stack: list[tuple[str, os.DirEntry[str]]] = []

    def push(directory: str, prefix: str) -> None:
        with os.scandir(directory) as entries:
            children = sorted(entries, key=lambda entry: entry.name)
        stack.extend((f"{prefix}{child.name}", child) for child in reversed(children))

    push(str(root), "")
    while stack:
        relative, entry = stack.pop()
        yield relative, entry
        if entry.is_dir(follow_symlinks=False):
            push(entry.path, f"{relative}/")


def _add_file(tar: tarfile.TarFile, path: Path, relative: str) -> None:
    file = _open_regular(path)
    if file is None:  # replaced by a link or special file since the walk saw it
        return
    with file:
        info = os.fstat(file.fileno())
        mode = EXECUTABLE_FILE_MODE if info.st_mode & 0o111 else FILE_MODE
        header = _header(relative, tarfile.REGTYPE, mode)
        header.size = info.st_size
        tar.addfile(header, file)


def _header(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    header = tarfile.TarInfo(name)
    header.type = kind
    header.mode = mode
    header.mtime = 0
    header.uid = header.gid = 0
    header.uname = header.gname = ""
    return header


def _open_regular(path: Path) -> io.BufferedReader | None:
    """``path`` opened for reading if it is a regular file; None for a symlink or anything
    else. Opening with O_NOFOLLOW means a symlink swapped in is never followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        if path.is_symlink():
            return None
        raise
    file = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        file.close()
        return None
    return file


def _check_component(value: str, what: str) -> None:
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise StorageError(f"invalid artifact {what} {value!r}: it must be a single path component")


def _stored(artifact: Artifact, digest: str, size: int) -> Artifact:
    return Artifact(
        path=artifact.path,
        url=artifact.url,
        revision=artifact.revision,
        digest=digest,
        last_update_time=time_now(),
        size=size,
        metadata=artifact.metadata,
    )
