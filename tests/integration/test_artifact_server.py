"""The artifact server and client together over real HTTP on 127.0.0.1 (no Kubernetes):
store with ArtifactStorage, serve with start_artifact_server, fetch with fetch_artifact."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controllers.api import Artifact
from controllers.artifact import (
    ArtifactTooLarge,
    ArtifactUnavailable,
    DigestMismatch,
    fetch_artifact,
)
from source.server import start_artifact_server
from source.storage import ArtifactStorage

pytestmark = pytest.mark.integration

SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT"
SOURCE_TREE = {
    "deploy/app.yaml": "kind: Deployment\n",
    "deploy/service.yaml": "kind: Service\n",
    "kustomization.yaml": "resources: [deploy]\n",
}


@dataclass
class Served:
    storage: ArtifactStorage
    base: str
    port: int
    artifact: Artifact
    outside: Path


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    root = tmp_path / "storage"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    source = tmp_path / "source"
    for name, content in SOURCE_TREE.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(content)

    runner = await start_artifact_server(root, "127.0.0.1", 0)
    try:
        port = runner.addresses[0][1]
        storage = ArtifactStorage(root, f"127.0.0.1:{port}")
        pending = storage.new_artifact("GitRepository", "default", "app", "main@sha1:1", "1.tar.gz")
        artifact = await asyncio.to_thread(storage.archive, pending, source)
        # A symlink inside the root that leads out of it.
        (storage.local_path(artifact).parent / "escape").symlink_to(outside)
        yield Served(storage, f"http://127.0.0.1:{port}", port, artifact, outside)
    finally:
        await runner.cleanup()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work" / "out"


def leftovers(dest: Path) -> list[str]:
    return sorted(path.name for path in dest.parent.iterdir())


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_a_stored_artifact_is_fetched_and_unpacked(served: Served, dest: Path) -> None:
    await fetch_artifact(served.artifact.url, served.artifact.digest, dest)

    assert tree(dest) == SOURCE_TREE
    assert leftovers(dest) == ["out"]


async def test_get_and_head_describe_the_file(served: Served) -> None:
    data = served.storage.local_path(served.artifact).read_bytes()
    etag = f'"{served.artifact.digest.removeprefix("sha256:")}"'

    async with httpx.AsyncClient(timeout=10) as client:
        get = await client.get(served.artifact.url)
        head = await client.head(served.artifact.url)
        cached = await client.get(served.artifact.url, headers={"If-None-Match": etag})

    assert (get.status_code, get.content) == (200, data)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(data)) == get.headers["Content-Length"]
    assert head.headers["ETag"] == get.headers["ETag"] == etag
    assert hashlib.sha256(get.content).hexdigest() == etag.strip('"')
    assert cached.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/gitrepository/default/app/missing.tar.gz", id="missing-file"),
        pytest.param("/gitrepository/default/app", id="directory"),
        pytest.param("/gitrepository/default/app/escape/secret.txt", id="symlink-out-of-root"),
        pytest.param("/gitrepository/default/app/.1.tar.gz.lock", id="lock-file"),
        pytest.param("/%2e%2e/outside/secret.txt", id="encoded-dotdot"),
        pytest.param("/%2E%2E/%2E%2E/etc/passwd", id="encoded-dotdot-upper"),
        pytest.param("/..%2foutside%2fsecret.txt", id="encoded-slash"),
        pytest.param("/%2foutside/secret.txt", id="encoded-absolute"),
        pytest.param("/gitrepository/%2e%2e/%2e%2e/outside/secret.txt", id="dotdot-deeper"),
        pytest.param("/..%5coutside%5csecret.txt", id="encoded-backslash"),
        pytest.param("/a%00b", id="nul"),
        pytest.param("/", id="root"),
    ],
)
async def test_nothing_outside_the_artifacts_is_served(served: Served, path: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        # httpx keeps percent-encoding as given; the server sees exactly this path.
        response = await client.get(f"{served.base}{path}")

    assert response.status_code in (400, 404)
    assert SECRET not in response.text
    assert "root:" not in response.text


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/../../etc/passwd", id="dotdot"),
        pytest.param("/../outside/secret.txt", id="dotdot-to-sibling"),
        pytest.param("/gitrepository/../../outside/secret.txt", id="dotdot-inside"),
        pytest.param("//etc/passwd", id="double-slash"),
        pytest.param("http://127.0.0.1/../../etc/passwd", id="absolute-form"),
    ],
)
async def test_raw_request_lines_cannot_traverse(served: Served, target: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        request = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        async with asyncio.timeout(10):
            response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()

    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.split()[1] in (b"400", b"404"), status_line
    assert SECRET.encode() not in response
    assert b"root:" not in response


async def test_a_digest_mismatch_leaves_nothing(served: Served, dest: Path) -> None:
    wrong = "sha256:" + "0" * 64

    with pytest.raises(DigestMismatch, match=r"expected sha256:0{64}"):
        await fetch_artifact(served.artifact.url, wrong, dest)

    assert leftovers(dest) == []


async def test_a_missing_artifact_is_unavailable(served: Served, dest: Path) -> None:
    url = f"{served.base}/gitrepository/default/app/gone.tar.gz"

    with pytest.raises(ArtifactUnavailable, match="HTTP 404"):
        await fetch_artifact(url, served.artifact.digest, dest)

    assert leftovers(dest) == []


async def test_error_messages_never_carry_credentials(served: Served, dest: Path) -> None:
    url = f"http://robot:hunter2@127.0.0.1:{served.port}/nope.tar.gz?token=s3cr3t"

    with pytest.raises(ArtifactUnavailable) as caught:
        await fetch_artifact(url, served.artifact.digest, dest)

    message = str(caught.value)
    assert f"http://127.0.0.1:{served.port}/nope.tar.gz" in message
    for secret in ("robot", "hunter2", "token", "s3cr3t"):
        assert secret not in message


async def test_a_download_over_the_limit_is_refused(served: Served, dest: Path) -> None:
    assert served.artifact.size is not None

    with pytest.raises(ArtifactTooLarge, match="larger than"):
        await fetch_artifact(
            served.artifact.url,
            served.artifact.digest,
            dest,
            max_size=served.artifact.size - 1,
        )

    assert leftovers(dest) == []


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port that is bound but not listening: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_a_refused_connection_is_unavailable(
    served: Served, dest: Path, refusing_port: int
) -> None:
    url = f"http://127.0.0.1:{refusing_port}/gitrepository/default/app/1.tar.gz"

    with pytest.raises(ArtifactUnavailable, match="cannot download"):
        await fetch_artifact(url, served.artifact.digest, dest)

    assert leftovers(dest) == []
