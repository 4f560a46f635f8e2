"""Unpacking artifacts: good archives land whole, hostile ones are refused and leave nothing."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from controllers.artifact import (
    ArtifactError,
    ArtifactTooLarge,
    ArtifactUnavailable,
    DigestMismatch,
    UnsafeArchive,
    extract_tarball,
    fetch_artifact,
)

MiB = 1024 * 1024


class Zeros(io.RawIOBase):
    """``size`` zero bytes, produced as they are read, never held in memory."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


Entry = tuple[tarfile.TarInfo, "bytes | io.RawIOBase | None"]


def regular(name: str, data: bytes = b"", mode: int = 0o600) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def zeros(name: str, size: int) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = size
    return info, Zeros(size)


def special(name: str, kind: bytes, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def directory(name: str, mode: int = 0o750) -> Entry:
    info, _ = special(name, tarfile.DIRTYPE)
    info.mode = mode
    return info, None


def tarball(path: Path, entries: list[Entry], pax: dict[str, str] | None = None) -> Path:
    with (
        gzip.GzipFile(path, "wb", compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for info, content in entries:
            if pax is not None:
                info.pax_headers = pax
            if isinstance(content, bytes):
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info, content)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work" / "out"


def leftovers(dest: Path) -> list[str]:
    return sorted(path.name for path in dest.parent.iterdir())


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


# -- good archives ----------------------------------------------------------------------------


def test_a_flux_style_archive_is_unpacked(tmp_path: Path, dest: Path) -> None:
    archive = tarball(
        tmp_path / "a.tar.gz",
        [
            directory("."),
            directory("deploy"),
            regular("deploy/app.yaml", b"kind: Deployment\n"),
            regular("./run.sh", b"#!/bin/sh\n", mode=0o700),
            regular("nested/without/dir/entries.yaml", b"x"),
        ],
    )

    extract_tarball(archive, dest)

    assert tree(dest) == {
        "deploy": None,
        "deploy/app.yaml": b"kind: Deployment\n",
        "nested": None,
        "nested/without": None,
        "nested/without/dir": None,
        "nested/without/dir/entries.yaml": b"x",
        "run.sh": b"#!/bin/sh\n",
    }
    assert (dest / "run.sh").stat().st_mode & 0o700 == 0o700
    assert leftovers(dest) == ["out"]


def test_an_existing_empty_directory_is_a_valid_destination(tmp_path: Path, dest: Path) -> None:
    dest.mkdir()

    extract_tarball(tarball(tmp_path / "a.tar.gz", [regular("a", b"a")]), dest)

    assert tree(dest) == {"a": b"a"}


def test_special_mode_bits_are_dropped(tmp_path: Path, dest: Path) -> None:
    archive = tarball(
        tmp_path / "a.tar.gz",
        [directory("d", mode=0o7777), regular("d/tool", b"x", mode=0o6777)],
    )

    extract_tarball(archive, dest)

    assert (dest / "d").stat().st_mode & 0o7777 == 0o755
    assert (dest / "d" / "tool").stat().st_mode & 0o7777 == 0o755


# -- hostile archives -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([regular("/etc/cron.d/evil", b"x")], id="absolute-path"),
        pytest.param([regular("../x", b"x")], id="parent"),
        pytest.param([regular("a/../../x", b"x")], id="parent-inside"),
        pytest.param([regular("a\\..\\x", b"x")], id="backslash"),
        pytest.param([special("passwd", tarfile.SYMTYPE, "/etc/passwd")], id="symlink-out"),
        pytest.param([regular("a", b"a"), special("b", tarfile.SYMTYPE, "a")], id="symlink-inside"),
        pytest.param(
            [special("dir", tarfile.SYMTYPE, "/etc"), regular("dir/evil", b"x")],
            id="write-through-symlink",
        ),
        pytest.param([special("passwd", tarfile.LNKTYPE, "/etc/passwd")], id="hardlink-out"),
        pytest.param([special("up", tarfile.LNKTYPE, "../../x")], id="hardlink-parent"),
        pytest.param(
            [regular("a", b"a"), special("b", tarfile.LNKTYPE, "a")], id="hardlink-inside"
        ),
        pytest.param([special("null", tarfile.CHRTYPE)], id="char-device"),
        pytest.param([special("disk", tarfile.BLKTYPE)], id="block-device"),
        pytest.param([special("pipe", tarfile.FIFOTYPE)], id="fifo"),
        pytest.param([regular("ok", b"fine"), regular("/abs", b"x")], id="bad-after-good"),
    ],
)
def test_unsafe_entries_are_refused_and_nothing_is_left(
    tmp_path: Path, dest: Path, entries: list[Entry]
) -> None:
    archive = tarball(tmp_path / "evil.tar.gz", entries)

    with pytest.raises(UnsafeArchive, match=r"evil\.tar\.gz|refusing"):
        extract_tarball(archive, dest)

    assert leftovers(dest) == []
    assert not (tmp_path / "x").exists()


@pytest.fixture
def decompressed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes handed out by every gzip decompressor, to show an extraction stopped early."""
    counts: list[int] = []
    real_read = gzip.GzipFile.read

    def read(self: gzip.GzipFile, size: int = -1) -> bytes:
        data = real_read(self, size)
        counts.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    return counts


@pytest.mark.parametrize(
    ("entries", "pax"),
    [
        pytest.param([zeros("bomb", 200 * MiB)], None, id="one-200MiB-file"),
        pytest.param([zeros(f"part-{n}", 2 * MiB) for n in range(100)], None, id="many-files"),
        pytest.param([regular("a", b"a")], {"comment": "x" * (48 * MiB)}, id="pax-header"),
    ],
)
def test_a_compression_bomb_stops_at_the_limit(
    tmp_path: Path,
    dest: Path,
    decompressed: list[int],
    entries: list[Entry],
    pax: dict[str, str] | None,
) -> None:
    archive = tarball(tmp_path / "bomb.tar.gz", entries, pax)
    assert archive.stat().st_size < 1 * MiB

    with pytest.raises(ArtifactTooLarge, match="bytes"):
        extract_tarball(archive, dest, max_size=10 * MiB)

    assert sum(decompressed) <= 12 * MiB
    assert leftovers(dest) == []


def test_too_many_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = tarball(tmp_path / "many.tar.gz", [regular(f"f{n}", b"") for n in range(11)])

    with pytest.raises(UnsafeArchive, match="more than 10 entries"):
        extract_tarball(archive, dest, max_entries=10)

    assert leftovers(dest) == []


def test_exactly_the_entry_limit_is_fine(tmp_path: Path, dest: Path) -> None:
    archive = tarball(tmp_path / "many.tar.gz", [regular(f"f{n}", b"") for n in range(10)])

    extract_tarball(archive, dest, max_entries=10)

    assert len(tree(dest)) == 10


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not gzip at all", id="not-gzip"),
        pytest.param(gzip.compress(b"not a tar archive" * 100), id="not-tar"),
    ],
)
def test_a_corrupt_archive_is_an_artifact_error(tmp_path: Path, dest: Path, content: bytes) -> None:
    archive = tmp_path / "corrupt.tar.gz"
    archive.write_bytes(content)

    with pytest.raises(ArtifactError, match=r"not a valid tar\.gz archive"):
        extract_tarball(archive, dest)

    assert leftovers(dest) == []


def test_a_truncated_archive_is_an_artifact_error(tmp_path: Path, dest: Path) -> None:
    whole = tarball(tmp_path / "whole.tar.gz", [regular("a", bytes(range(256)) * 4096)])
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with pytest.raises(ArtifactError):
        extract_tarball(archive, dest)

    assert leftovers(dest) == []


def test_a_non_empty_destination_is_left_alone(tmp_path: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "mine").write_text("keep")

    with pytest.raises(ArtifactError, match="not empty"):
        extract_tarball(tarball(tmp_path / "a.tar.gz", [regular("a", b"a")]), dest)

    assert tree(dest) == {"mine": b"keep"}
    assert leftovers(dest) == ["out"]


# -- fetch_artifact arguments -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "digest", "message"),
    [
        pytest.param("http://h/a.tar.gz", "md5:abc", "unsupported artifact digest", id="md5"),
        pytest.param("http://h/a.tar.gz", "sha256:abc", "unsupported artifact digest", id="short"),
        pytest.param("http://h/a.tar.gz", "sha256", "unsupported artifact digest", id="no-hex"),
        pytest.param("ftp://h/a.tar.gz", "sha256:" + "0" * 64, "scheme 'ftp'", id="ftp"),
        pytest.param("/a.tar.gz", "sha256:" + "0" * 64, "scheme ''", id="no-host"),
    ],
)
async def test_fetch_refuses_bad_arguments_before_any_request(
    dest: Path, url: str, digest: str, message: str
) -> None:
    with pytest.raises(ArtifactError, match=message) as caught:
        await fetch_artifact(url, digest, dest)

    assert type(caught.value) is ArtifactError
    assert leftovers(dest) == []


def test_every_error_is_an_artifact_error() -> None:
    for error in (ArtifactUnavailable, DigestMismatch, ArtifactTooLarge, UnsafeArchive):
        assert issubclass(error, ArtifactError)
