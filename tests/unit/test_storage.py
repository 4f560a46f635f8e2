"""Artifact storage: layout, deterministic Flux-style archives, ignore rules, atomic writes,
garbage collection and safe paths."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controllers.api import Artifact
from source.storage import ArtifactStorage, StorageError

TTL = 60.0


@pytest.fixture
def storage(tmp_path: Path) -> ArtifactStorage:
    return ArtifactStorage(tmp_path / "storage", "source-controller.flux-system.svc", TTL, 2)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """Files (and, for names ending in ``/``, empty directories) under ``root``."""
    for name, content in files.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def members(storage: ArtifactStorage, artifact: Artifact) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(storage.local_path(artifact)) as tar:
        return {member.name: member for member in tar.getmembers()}


def archive(
    storage: ArtifactStorage,
    source: Path,
    name: str = "app",
    ignore: str | None = None,
    exclude_defaults: bool = True,
) -> Artifact:
    artifact = storage.new_artifact(
        "GitRepository", "default", name, "main@sha1:1234", "1234.tar.gz"
    )
    return storage.archive(artifact, source, ignore=ignore, exclude_defaults=exclude_defaults)


# -- layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind", "filename", "path", "url"),
    [
        pytest.param(
            "source-controller.flux-system.svc",
            "GitRepository",
            "abc.tar.gz",
            "gitrepository/flux-system/podinfo/abc.tar.gz",
            "http://source-controller.flux-system.svc/gitrepository/flux-system/podinfo/abc.tar.gz",
            id="git-host-only",
        ),
        pytest.param(
            "localhost:9090",
            "HelmChart",
            "podinfo-6.0.3+1.tgz",
            "helmchart/flux-system/podinfo/podinfo-6.0.3+1.tgz",
            "http://localhost:9090/helmchart/flux-system/podinfo/podinfo-6.0.3+1.tgz",
            id="chart-with-port",
        ),
        pytest.param(
            "https://artifacts.example.com/",
            "HelmRepository",
            "index-0f1e.yaml",
            "helmrepository/flux-system/podinfo/index-0f1e.yaml",
            "https://artifacts.example.com/helmrepository/flux-system/podinfo/index-0f1e.yaml",
            id="full-base-url",
        ),
    ],
)
def test_new_artifact_follows_the_flux_layout(
    tmp_path: Path, address: str, kind: str, filename: str, path: str, url: str
) -> None:
    storage = ArtifactStorage(tmp_path, address)

    artifact = storage.new_artifact(kind, "flux-system", "podinfo", "6.0.3", filename)

    assert (artifact.path, artifact.url, artifact.revision) == (path, url, "6.0.3")
    assert artifact.digest == ""
    assert storage.local_path(artifact) == tmp_path.resolve() / path


@pytest.mark.parametrize(
    ("namespace", "name", "filename"),
    [
        pytest.param("..", "app", "a.tar.gz", id="dotdot-namespace"),
        pytest.param("default", "a/b", "a.tar.gz", id="slash-in-name"),
        pytest.param("", "app", "a.tar.gz", id="empty-namespace"),
        pytest.param("default", "app", "../a.tar.gz", id="traversing-file"),
        pytest.param("default", "app", ".a.tar.gz.lock", id="hidden-file"),
        pytest.param("default", "app", ".", id="dot-file"),
    ],
)
def test_new_artifact_refuses_names_that_are_not_one_component(
    storage: ArtifactStorage, namespace: str, name: str, filename: str
) -> None:
    with pytest.raises(StorageError):
        storage.new_artifact("GitRepository", namespace, name, "r", filename)


@pytest.mark.parametrize(
    ("address", "ttl", "records"),
    [
        pytest.param("", 60.0, 2, id="no-address"),
        pytest.param("host", -1.0, 2, id="negative-ttl"),
        pytest.param("host", 60.0, 0, id="no-records"),
    ],
)
def test_invalid_settings_are_refused(
    tmp_path: Path, address: str, ttl: float, records: int
) -> None:
    with pytest.raises(ValueError, match="must"):
        ArtifactStorage(tmp_path, address, ttl, records)


# -- archives ---------------------------------------------------------------------------------


def test_archive_returns_the_stored_artifact(storage: ArtifactStorage, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", {"deploy/app.yaml": "kind: Deployment\n"})

    artifact = archive(storage, source)

    data = storage.local_path(artifact).read_bytes()
    assert artifact.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert artifact.size == len(data)
    assert artifact.revision == "main@sha1:1234"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", artifact.last_update_time)
    assert Artifact.model_validate(artifact.to_dict()) == artifact
    assert storage.has(artifact)


def test_the_same_tree_gives_the_same_digest(storage: ArtifactStorage, tmp_path: Path) -> None:
    files = {"a.yaml": "a", "sub/b.yaml": "b", "sub/deeper/c.yaml": "c", "z/": "", "run.sh": "x"}
    first = make_tree(tmp_path / "first", files)
    second = make_tree(tmp_path / "elsewhere" / "second", files)
    (first / "run.sh").chmod(0o755)
    (second / "run.sh").chmod(0o711)  # other execute bits, same "executable" mode
    (second / "a.yaml").chmod(0o664)
    (second / "sub").chmod(0o777)
    for path in second.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))

    digests = {
        archive(storage, first, name="one").digest,
        archive(storage, first, name="one").digest,
        archive(storage, second, name="two").digest,
    }

    assert len(digests) == 1


def test_a_content_change_changes_the_digest(storage: ArtifactStorage, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", {"a.yaml": "one"})
    before = archive(storage, source).digest

    (source / "a.yaml").write_text("two")

    assert archive(storage, source).digest != before


def test_entries_are_normalised_like_flux(storage: ArtifactStorage, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", {"run.sh": "#!/bin/sh\n", "conf/app.yaml": "a: 1\n"})
    (source / "run.sh").chmod(0o755)
    (source / "conf" / "app.yaml").chmod(0o444)

    entries = members(storage, archive(storage, source))

    assert list(entries) == ["conf", "conf/app.yaml", "run.sh"]
    assert {name: entry.mode for name, entry in entries.items()} == {
        "conf": 0o750,
        "conf/app.yaml": 0o600,
        "run.sh": 0o700,
    }
    for entry in entries.values():
        assert entry.type in (tarfile.REGTYPE, tarfile.DIRTYPE)
        assert (entry.uid, entry.gid, entry.uname, entry.gname, entry.mtime) == (0, 0, "", "", 0)


def test_entries_are_in_walk_order(storage: ArtifactStorage, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", {"b.txt": "", "b/x.txt": "", "a/z.txt": "", "c.txt": ""})

    # Depth first, names sorted per directory: Go's filepath.Walk, as in Flux.
    assert list(members(storage, archive(storage, source, ignore=""))) == [
        "a",
        "a/z.txt",
        "b",
        "b/x.txt",
        "b.txt",
        "c.txt",
    ]


def test_links_inside_the_tree_and_special_files_are_skipped(
    storage: ArtifactStorage, tmp_path: Path
) -> None:
    source = make_tree(tmp_path / "src", {"app.yaml": "a", "sub/b.yaml": "b"})
    (source / "sub" / "inside").symlink_to(source / "app.yaml")
    (source / "sub" / "relative").symlink_to("../app.yaml")
    os.mkfifo(source / "pipe")

    entries = members(storage, archive(storage, source))

    assert list(entries) == ["app.yaml", "sub", "sub/b.yaml"]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("../outside/secret.txt", id="relative"),
        pytest.param("sub/../../outside", id="through-a-subdirectory"),
    ],
)
def test_a_link_leaving_the_tree_is_refused_unless_ignored(
    storage: ArtifactStorage, tmp_path: Path, target: str
) -> None:
    make_tree(tmp_path / "outside", {"secret.txt": "secret"})
    source = make_tree(tmp_path / "src", {"app.yaml": "a", "sub/b.yaml": "b"})
    (source / "escape").symlink_to(target)

    with pytest.raises(StorageError, match="symlink 'escape' points outside the source"):
        archive(storage, source)

    (source / ".sourceignore").write_text("escape\n")
    assert "escape" not in members(storage, archive(storage, source))


IGNORE_TREE = {
    "deploy/app.yaml": "",
    "deploy/notes.md": "",
    "README.md": "",
    "logo.png": "",
    "charts/podinfo.tar.gz": "",
    ".git/HEAD": "",
    ".git/objects/ab/cdef": "",
    ".gitignore": "",
    ".github/workflows/ci.yml": "",
    ".gitlab-ci.yml": "",
    "secrets/.sops.yaml": "",
    ".goreleaser.yml": "",
}


@pytest.mark.parametrize(
    ("extra", "ignore", "exclude_defaults", "expected"),
    [
        pytest.param(
            {},
            None,
            True,
            {"deploy", "deploy/app.yaml", "deploy/notes.md", "README.md", "charts", "secrets"},
            id="built-in-excludes",
        ),
        pytest.param(
            {".sourceignore": "*.md\n"},
            None,
            True,
            # A .sourceignore replaces the built-in list, except the VCS patterns (Flux).
            {
                ".sourceignore",
                ".github",
                ".github/workflows",
                ".github/workflows/ci.yml",
                ".gitlab-ci.yml",
                ".goreleaser.yml",
                "charts",
                "charts/podinfo.tar.gz",
                "deploy",
                "deploy/app.yaml",
                "logo.png",
                "secrets",
                "secrets/.sops.yaml",
            },
            id="sourceignore-replaces-defaults",
        ),
        pytest.param(
            {},
            "/*\n!/deploy\n",
            True,
            {"deploy", "deploy/app.yaml", "deploy/notes.md"},
            id="spec-ignore-only-deploy",
        ),
        pytest.param(
            {".sourceignore": "deploy/\n"},
            "!deploy/app.yaml\n",
            True,
            {
                ".sourceignore",
                ".github",
                ".github/workflows",
                ".github/workflows/ci.yml",
                ".gitlab-ci.yml",
                ".goreleaser.yml",
                "README.md",
                "charts",
                "charts/podinfo.tar.gz",
                "deploy/app.yaml",
                "logo.png",
                "secrets",
                "secrets/.sops.yaml",
            },
            id="spec-ignore-overrides-sourceignore",
        ),
        pytest.param(
            {},
            None,
            False,
            {name.removesuffix("/") for name in IGNORE_TREE}
            | {".git", ".git/objects", ".git/objects/ab", ".github", ".github/workflows"}
            | {"deploy", "charts", "secrets"},
            id="no-defaults",
        ),
    ],
)
def test_ignore_rules(
    storage: ArtifactStorage,
    tmp_path: Path,
    extra: dict[str, str],
    ignore: str | None,
    exclude_defaults: bool,
    expected: set[str],
) -> None:
    source = make_tree(tmp_path / "src", IGNORE_TREE | extra)

    artifact = archive(storage, source, ignore=ignore, exclude_defaults=exclude_defaults)

    assert set(members(storage, artifact)) == expected


@pytest.mark.parametrize(
    ("sourceignore", "expected"),
    [
        pytest.param(
            "/local.yaml\n",
            {"local.yaml", "sub", "sub/.sourceignore", "sub/deeper", "sub/deeper/local.yaml"},
            id="anchored-to-its-directory",
        ),
        pytest.param(
            "local.yaml\n",
            {"local.yaml", "sub", "sub/.sourceignore", "sub/deeper"},
            id="unanchored-below-its-directory",
        ),
        pytest.param(
            "# only a comment\n\n",
            {"local.yaml", "sub", "sub/.sourceignore", "sub/local.yaml", "sub/deeper"}
            | {"sub/deeper/local.yaml"},
            id="comments-and-blank-lines",
        ),
    ],
)
def test_a_nested_sourceignore_applies_relative_to_its_directory(
    storage: ArtifactStorage, tmp_path: Path, sourceignore: str, expected: set[str]
) -> None:
    source = make_tree(
        tmp_path / "src",
        {
            "local.yaml": "",
            "sub/local.yaml": "",
            "sub/deeper/local.yaml": "",
            "sub/.sourceignore": sourceignore,
        },
    )

    assert set(members(storage, archive(storage, source))) == expected


def test_a_symlinked_sourceignore_is_not_read(storage: ArtifactStorage, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", {"app.yaml": "", "rules": "*.yaml\n"})
    (source / ".sourceignore").symlink_to(source / "rules")

    assert set(members(storage, archive(storage, source))) == {"app.yaml", "rules"}


def test_archiving_a_missing_directory_fails(storage: ArtifactStorage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a directory"):
        archive(storage, tmp_path / "missing")


# -- atomic writes ----------------------------------------------------------------------------


def test_the_artifact_appears_whole_by_rename_under_its_lock(
    storage: ArtifactStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_tree(tmp_path / "src", {"a.yaml": "a" * 100_000})
    pending = storage.new_artifact("GitRepository", "default", "app", "r", "1.tar.gz")
    target = storage.local_path(pending)
    seen: list[tuple[str, bool, bool]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        with open(target.with_name(f".{target.name}.lock"), "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = False
            except BlockingIOError:
                locked = True
        seen.append((Path(src).name, Path(dst).exists(), locked))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)

    artifact = storage.archive(pending, source)

    [(temp_name, target_existed, locked)] = seen
    assert temp_name.startswith(".1.tar.gz.tmp-")
    assert not target_existed
    assert locked
    assert storage.has(artifact)
    assert sorted(p.name for p in target.parent.iterdir()) == [".1.tar.gz.lock", "1.tar.gz"]


def test_a_failed_write_leaves_the_previous_artifact_and_no_temporary_file(
    storage: ArtifactStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_tree(tmp_path / "src", {"a.yaml": "first"})
    previous = archive(storage, source)
    (source / "a.yaml").write_text("second")

    def replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)

    with pytest.raises(StorageError, match="No space left on device"):
        archive(storage, source)

    directory = storage.local_path(previous).parent
    assert sorted(p.name for p in directory.iterdir()) == [".1234.tar.gz.lock", "1234.tar.gz"]
    assert storage.has(previous)


def test_copy_file_stores_a_single_file(storage: ArtifactStorage, tmp_path: Path) -> None:
    index = tmp_path / "index.yaml"
    index.write_text("apiVersion: v1\nentries: {}\n")
    pending = storage.new_artifact("HelmRepository", "default", "repo", "sha256:0", "index.yaml")

    artifact = storage.copy_file(pending, index)

    assert storage.local_path(artifact).read_bytes() == index.read_bytes()
    assert artifact.digest == f"sha256:{hashlib.sha256(index.read_bytes()).hexdigest()}"
    assert artifact.size == index.stat().st_size


def test_copy_file_refuses_a_symlink(storage: ArtifactStorage, tmp_path: Path) -> None:
    link = tmp_path / "index.yaml"
    link.symlink_to("/etc/passwd")
    pending = storage.new_artifact("HelmRepository", "default", "repo", "sha256:0", "index.yaml")

    with pytest.raises(StorageError, match="not a regular file"):
        storage.copy_file(pending, link)
    assert not storage.local_path(pending).exists()


# -- has --------------------------------------------------------------------------------------


def tamper(storage: ArtifactStorage, artifact: Artifact) -> Artifact:
    storage.local_path(artifact).write_bytes(b"tampered")
    return artifact


def remove(storage: ArtifactStorage, artifact: Artifact) -> Artifact:
    storage.local_path(artifact).unlink()
    return artifact


def no_digest(storage: ArtifactStorage, artifact: Artifact) -> Artifact:
    return artifact.model_copy(update={"digest": ""})


def replace_with_symlink(storage: ArtifactStorage, artifact: Artifact) -> Artifact:
    path = storage.local_path(artifact)
    moved = path.with_name("elsewhere.tar.gz")
    path.rename(moved)
    path.symlink_to(moved)
    return artifact


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(tamper, id="content-changed"),
        pytest.param(remove, id="file-gone"),
        pytest.param(no_digest, id="no-digest"),
        pytest.param(replace_with_symlink, id="symlink"),
    ],
)
def test_has_is_false_unless_the_file_matches_its_digest(
    storage: ArtifactStorage,
    tmp_path: Path,
    change: Callable[[ArtifactStorage, Artifact], Artifact],
) -> None:
    artifact = archive(storage, make_tree(tmp_path / "src", {"a.yaml": "a"}))

    assert not storage.has(change(storage, artifact))


# -- garbage collection -----------------------------------------------------------------------

OLD = 10 * TTL


@pytest.mark.parametrize(
    ("files", "keep", "records", "remaining", "removed"),
    [
        pytest.param(
            {"current.tar.gz": 5, "fresh.tar.gz": 10, "expired.tar.gz": OLD},
            "current.tar.gz",
            2,
            {"current.tar.gz", "fresh.tar.gz"},
            ["expired.tar.gz"],
            id="expired-files-go",
        ),
        pytest.param(
            {"current.tar.gz": 1, "a.tar.gz": 2, "b.tar.gz": 3, "c.tar.gz": 4},
            "current.tar.gz",
            2,
            {"current.tar.gz", "a.tar.gz"},
            ["b.tar.gz", "c.tar.gz"],
            id="at-most-n-including-current",
        ),
        pytest.param(
            {"current.tar.gz": 1, "a.tar.gz": 2, "b.tar.gz": 3, "c.tar.gz": 4},
            "current.tar.gz",
            3,
            {"current.tar.gz", "a.tar.gz", "b.tar.gz"},
            ["c.tar.gz"],
            id="n-newest-kept",
        ),
        pytest.param(
            {"current.tar.gz": OLD, "a.tar.gz": OLD + 1},
            "current.tar.gz",
            2,
            {"current.tar.gz"},
            ["a.tar.gz"],
            id="current-kept-however-old",
        ),
        pytest.param(
            {"a.tar.gz": 1, "b.tar.gz": 2, "c.tar.gz": 3},
            None,
            2,
            {"a.tar.gz", "b.tar.gz"},
            ["c.tar.gz"],
            id="no-current-artifact",
        ),
        pytest.param(
            {
                "current.tar.gz": 1,
                ".current.tar.gz.lock": OLD,
                "old.tar.gz": OLD,
                ".old.tar.gz.lock": OLD,
                ".orphan.tar.gz.lock": OLD,
                ".fresh.tar.gz.lock": 1,
                ".current.tar.gz.tmp-abc": 1,
                ".dead.tar.gz.tmp-def": OLD,
            },
            "current.tar.gz",
            2,
            {"current.tar.gz", ".current.tar.gz.lock", ".fresh.tar.gz.lock"}
            | {".current.tar.gz.tmp-abc"},
            ["old.tar.gz"],
            id="locks-and-temporary-files",
        ),
    ],
)
def test_garbage_collection(
    tmp_path: Path,
    files: dict[str, float],
    keep: str | None,
    records: int,
    remaining: set[str],
    removed: list[str],
) -> None:
    storage = ArtifactStorage(tmp_path / "storage", "host", TTL, records)
    directory = tmp_path / "storage" / "gitrepository" / "default" / "app"
    directory.mkdir(parents=True)
    now = time.time()
    for name, age in files.items():
        (directory / name).write_text(name)
        os.utime(directory / name, (now - age, now - age))
    current = None
    if keep is not None:
        current = storage.new_artifact("GitRepository", "default", "app", "r", keep)

    result = storage.garbage_collect("GitRepository", "default", "app", current)

    assert sorted(result) == [f"gitrepository/default/app/{name}" for name in removed]
    assert {p.name for p in directory.iterdir()} == remaining


def test_garbage_collection_of_an_object_without_files(storage: ArtifactStorage) -> None:
    assert storage.garbage_collect("GitRepository", "default", "never", None) == []


def test_garbage_collection_refuses_another_objects_artifact(
    storage: ArtifactStorage, tmp_path: Path
) -> None:
    other = archive(storage, make_tree(tmp_path / "src", {"a": "a"}), name="other")

    with pytest.raises(StorageError, match="does not belong"):
        storage.garbage_collect("GitRepository", "default", "app", other)


def test_remove_all_removes_the_objects_directory_only(
    storage: ArtifactStorage, tmp_path: Path
) -> None:
    source = make_tree(tmp_path / "src", {"a": "a"})
    gone = archive(storage, source, name="gone")
    kept = archive(storage, source, name="kept")

    storage.remove_all("GitRepository", "default", "gone")
    storage.remove_all("GitRepository", "default", "gone")

    assert not storage.local_path(gone).parent.exists()
    assert storage.has(kept)


# -- safe paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../outside/secret.txt", id="parent"),
        pytest.param("gitrepository/../../outside/secret.txt", id="parent-inside"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("gitrepository//x", id="empty-component"),
        pytest.param("gitrepository/./x", id="dot-component"),
        pytest.param("", id="empty"),
        pytest.param("a\\..\\..\\x", id="backslash"),
        pytest.param("gitrepository/default/escape/secret.txt", id="symlink-out-of-root"),
    ],
)
def test_local_path_refuses_paths_leaving_the_root(
    storage: ArtifactStorage, tmp_path: Path, path: str
) -> None:
    outside = make_tree(tmp_path / "outside", {"secret.txt": "secret"})
    (storage.root / "gitrepository" / "default").mkdir(parents=True)
    (storage.root / "gitrepository" / "default" / "escape").symlink_to(outside)
    artifact = Artifact.model_construct(
        path=path, url="", revision="", digest="", last_update_time=""
    )

    with pytest.raises(StorageError, match="refusing storage path"):
        storage.local_path(artifact)


def test_storage_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "does" / "not" / "exist"

    storage = ArtifactStorage(root, "host")

    assert storage.root == root.resolve()
    assert root.is_dir()
    shutil.rmtree(root)


def test_content_over_the_size_limit_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    storage = ArtifactStorage(tmp_path / "storage", "127.0.0.1:9090", max_content_size=2**20)
    source = make_tree(tmp_path / "src", {"small.yaml": "x"})
    with (source / "big.bin").open("wb") as big:
        big.truncate(2 * 2**20)  # sparse: a large file without the disk cost

    with pytest.raises(
        StorageError, match=r"exceeds the artifact size limit of 1 MiB at 'big\.bin'"
    ):
        archive(storage, source)

    assert not [
        p for p in (tmp_path / "storage").rglob("*") if p.is_file() and "lock" not in p.name
    ]
    (source / ".sourceignore").write_text("*.bin\n")
    assert "big.bin" not in members(storage, archive(storage, source))
