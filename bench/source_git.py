"""GitRepository pipeline on a repository of 5,000 files / 50 MB: first fetch, no-op re-check,
one-commit update. Prints wall time and peak RSS (controller process and git worker).

Runs the same code the reconciler runs (ls-remote, checkout in the worker process, archive
into storage) against a real ``git daemon``; no Kubernetes involved, so the figures are the
source work itself.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from controllers.envtest import free_port
from source import git
from source.api_v1 import GitRepositoryRef
from source.storage import ArtifactStorage

FILES = 5_000
TOTAL_BYTES = 50 * 1024 * 1024


def make_repository(root: Path) -> Path:
    """A bare repo whose one commit holds FILES files of incompressible text."""
    work = root / "work"
    work.mkdir()
    size = TOTAL_BYTES // FILES
    for i in range(FILES):
        directory = work / f"dir{i % 50:02d}"
        directory.mkdir(exist_ok=True)
        (directory / f"file{i:05d}.yaml").write_text(os.urandom(size // 2).hex())
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    run = lambda *a: subprocess.run(["git", *a], cwd=work, env=env, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "main")
    run("add", ".")
    run("commit", "-qm", "initial")
    bare = root / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def commit_one_change(root: Path) -> None:
    work = root / "work"
    (work / "dir00" / "file00000.yaml").write_text("changed\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "commit", "-qam", "one change"], cwd=work, env=env, check=True)
    subprocess.run(["git", "push", "-q", str(root / "repo.git"), "main"], cwd=work, check=True)


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


async def fetch(url: str, storage: ArtifactStorage, scratch: Path, known: str | None) -> str:
    """What GitRepositoryReconciler does for a branch ref; returns the revision."""
    heads = await git.list_heads(url, {}, proxy=None, timeout=120)
    target = git.resolve(GitRepositoryRef(branch="main"), heads)
    assert target.commit is not None
    revision = target.revision(target.commit)
    if revision == known:
        return revision  # the no-op path: nothing fetched
    workdir = Path(tempfile.mkdtemp(dir=scratch))
    try:
        checkout = await git.checkout(url, target, workdir, {}, proxy=None, timeout=120)
        artifact = storage.new_artifact(
            "GitRepository", "bench", "repo", checkout.revision, f"{checkout.commit}.tar.gz"
        )
        await asyncio.to_thread(storage.archive, artifact, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return checkout.revision


async def measure(url: str, root: Path) -> list[tuple[str, float, float, float]]:
    storage = ArtifactStorage(root / "storage", "127.0.0.1:0")
    scratch = root / "scratch"
    scratch.mkdir()
    rows = []

    async def step(label: str, known: str | None) -> str:
        started = time.perf_counter()
        revision = await fetch(url, storage, scratch, known)
        rows.append((label, time.perf_counter() - started, *peak_rss_mib()))
        return revision

    first = await step("first fetch", None)
    await step("no-op re-check", first)
    await asyncio.to_thread(commit_one_change, root)
    await step("one-commit update", first)
    return rows


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="weir-bench-"))
    port = free_port()
    daemon = None
    try:
        started = time.perf_counter()
        make_repository(root)
        built = time.perf_counter() - started
        print(f"repository: {FILES} files, {TOTAL_BYTES // 2**20} MiB (built in {built:.1f}s)")
        daemon = subprocess.Popen(
            [
                "git",
                "daemon",
                "--export-all",
                f"--base-path={root}",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={port}",
                str(root),
            ],
        )
        time.sleep(0.5)  # git daemon has no readiness signal; a benchmark may wait
        rows = asyncio.run(measure(f"git://127.0.0.1:{port}/repo.git", root))
        print(
            f"{'step':<20} {'seconds':>8} {'peak RSS controller':>20} {'peak RSS git worker':>20}"
        )
        for label, seconds, own, children in rows:
            print(f"{label:<20} {seconds:>8.2f} {own:>16.0f} MiB {children:>16.0f} MiB")
        artifact = max((root / "storage").rglob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
        print(f"artifact size: {artifact.stat().st_size / 2**20:.1f} MiB")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
