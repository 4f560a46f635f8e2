"""Gitea, the tests' real Git host: it runs, takes pushes over HTTP, signs its webhooks as GitHub
does, and keeps commit statuses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from controllers.envtest import free_port
from tests.gitea import GiteaServer

WEBHOOK_TIMEOUT_SECONDS = 5.0

Delivery = tuple[CIMultiDictProxy[str], bytes]


def _git(cwd: Path, *args: str) -> str:
    # The caller's ~/.gitconfig and /etc/gitconfig must not change what is committed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Weir Test",
        "GIT_AUTHOR_EMAIL": "test@weir.invalid",
        "GIT_COMMITTER_NAME": "Weir Test",
        "GIT_COMMITTER_EMAIL": "test@weir.invalid",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.strip()


def _push_commit(clone_url: str, workdir: Path, content: str) -> str:
    """Commit ``content`` as README on a new local ``main`` and push it; return the SHA."""
    workdir.mkdir(parents=True, exist_ok=True)
    _git(workdir, "init", "--quiet", "--initial-branch=main")
    (workdir / "README").write_text(content)
    _git(workdir, "add", "README")
    _git(workdir, "commit", "--quiet", "-m", "first")
    _git(workdir, "push", "--quiet", clone_url, "main")
    return _git(workdir, "rev-parse", "HEAD")


@pytest.fixture
async def webhook_listener() -> AsyncIterator[tuple[str, asyncio.Queue[Delivery]]]:
    """A loopback HTTP endpoint that queues every request it gets: its URL and the queue."""
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        deliveries.put_nowait((request.headers, await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", deliveries
    finally:
        await runner.cleanup()


def test_gitea_starts_and_answers_its_api(gitea: GiteaServer) -> None:
    version = gitea.api("GET", "/version")
    user = gitea.api("GET", "/user")

    assert version["version"] == "1.27.3"
    assert user["login"] == gitea.owner
    assert user["is_admin"] is True


async def test_a_push_over_http_arrives_and_fires_a_signed_push_webhook(
    gitea: GiteaServer,
    webhook_listener: tuple[str, asyncio.Queue[Delivery]],
    tmp_path: Path,
) -> None:
    name = f"push-{uuid.uuid4().hex[:8]}"
    secret = uuid.uuid4().hex
    url, deliveries = webhook_listener
    await asyncio.to_thread(gitea.create_repository, name)
    await asyncio.to_thread(gitea.add_webhook, name, url, secret)

    sha = await asyncio.to_thread(_push_commit, gitea.clone_url(name), tmp_path / "work", "one")
    headers, body = await asyncio.wait_for(deliveries.get(), WEBHOOK_TIMEOUT_SECONDS)

    await asyncio.to_thread(gitea.wait_for_push, name, sha)
    assert headers["X-GitHub-Event"] == "push"
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
    assert sha.encode() in body
    assert deliveries.empty()


async def test_a_commit_status_set_through_the_api_is_read_back(
    gitea: GiteaServer, tmp_path: Path
) -> None:
    name = f"status-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(gitea.create_repository, name)
    sha = await asyncio.to_thread(_push_commit, gitea.clone_url(name), tmp_path / "work", "two")
    await asyncio.to_thread(gitea.wait_for_push, name, sha)

    await asyncio.to_thread(
        gitea.set_commit_status, name, sha, "success", "kustomization/apps", "applied"
    )
    statuses = await asyncio.to_thread(gitea.commit_statuses, name, sha)

    assert [(s["status"], s["context"], s["description"]) for s in statuses] == [
        ("success", "kustomization/apps", "applied")
    ]
    assert await asyncio.to_thread(gitea.pull_requests, name) == []
