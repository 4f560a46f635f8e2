"""The pull-request client's settings (``host_for``), its timeout, and GitHub's request shapes
against a loopback HTTP server (GitHub itself cannot run here; Gitea's path is tested against
the real Gitea in tests/integration/test_image_pullrequest.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from controllers.envtest import free_port
from controllers.secrets import SecretData
from image_automation.pullrequest import (
    Host,
    Provider,
    PullRequestClient,
    PullRequestError,
    host_for,
)

TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"


def secret(**data: str) -> SecretData:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return SecretData("apps", "git-host", encoded)


@pytest.mark.parametrize(
    ("provider", "url", "address", "expected"),
    [
        pytest.param(
            "gitea",
            "https://git.example.com/team/apps.git",
            None,
            ("https://git.example.com/api/v1", "team", "apps"),
            id="gitea-https",
        ),
        pytest.param(
            "gitea",
            "ssh://git@git.example.com:2222/team/apps",
            None,
            ("https://git.example.com/api/v1", "team", "apps"),
            id="gitea-ssh-port-is-not-the-api's",
        ),
        pytest.param(
            "github",
            "git@github.com:team/apps.git",
            None,
            ("https://api.github.com", "team", "apps"),
            id="github-scp",
        ),
        pytest.param(
            "github",
            "https://ghe.example.com/team/apps",
            None,
            ("https://ghe.example.com/api/v3", "team", "apps"),
            id="github-enterprise",
        ),
        pytest.param(
            "gitea",
            "https://example.com/git/team/apps.git",
            "https://example.com/git/api/v1/",
            ("https://example.com/git/api/v1", "team", "apps"),
            id="address-for-a-host-under-a-path",
        ),
    ],
)
def test_the_api_and_repository_come_from_the_gitrepository_url(
    provider: Provider, url: str, address: str | None, expected: tuple[str, str, str]
) -> None:
    host = host_for(provider, url, secret(token=f"{TOKEN}\n"), address=address)

    assert (host.api_url, host.owner, host.repository) == expected
    assert host.token == TOKEN
    assert host.token_source == "the token in secret 'apps/git-host'"
    assert TOKEN not in repr(host)


def test_the_password_is_the_token_when_there_is_no_token() -> None:
    host = host_for("gitea", "https://git.example.com/a/b", secret(password=TOKEN))

    assert host.token == TOKEN


@pytest.mark.parametrize(
    ("url", "data", "address", "message"),
    [
        pytest.param(
            "https://example.com/git/team/apps",
            {"token": TOKEN},
            None,
            "the GitRepository's URL names 'git/team/apps', not <owner>/<repository>: for a "
            "host served under a path, set spec.git.push.pullRequest.address to its API URL",
            id="path-without-address",
        ),
        pytest.param(
            "ftp://example.com/team/apps",
            {"token": TOKEN},
            None,
            "the GitRepository's URL is not a repository on a Git host: scheme 'ftp' is not "
            "http, https or ssh",
            id="not-a-git-url",
        ),
        pytest.param(
            "https://example.com/team/apps",
            {"username": "bot"},
            None,
            "secret 'apps/git-host' has no 'token' for the Git host's API",
            id="no-token",
        ),
        pytest.param(
            "https://example.com/team/apps",
            {"token": "abc\ndef"},
            None,
            "secret 'apps/git-host' key 'token' has a line break or a character that is not "
            "printable ASCII",
            id="token-with-a-line-break",
        ),
        pytest.param(
            "https://example.com/team/apps",
            {"token": TOKEN, "ca.crt": "not a certificate"},
            None,
            "secret 'apps/git-host': 'ca.crt' is not a PEM certificate",
            id="bad-ca",
        ),
        pytest.param(
            "https://example.com/team/apps",
            {"token": TOKEN},
            "example.com/api/v1",
            "spec.git.push.pullRequest.address is not an http(s) URL",
            id="address-without-scheme",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_without_the_token(
    url: str, data: dict[str, str], address: str | None, message: str
) -> None:
    with pytest.raises(PullRequestError) as refused:
        host_for("gitea", url, secret(**data), address=address)

    assert str(refused.value) == message
    assert refused.value.status is None


async def test_a_host_that_does_not_answer_is_a_timeout_naming_the_host() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # kept open, never answered

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    host = Host("gitea", f"http://127.0.0.1:{port}/api/v1", "team", "apps", TOKEN, timeout=0.2)
    try:
        async with PullRequestClient(host) as client:
            with pytest.raises(PullRequestError) as refused:
                await client.find_open("updates", "main")
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()

    assert str(refused.value) == (
        f"http://127.0.0.1:{port} did not answer within 0.2s when asked to list the pull "
        "requests of team/apps"
    )


# GitHub's shapes: a loopback server answering as GitHub's documentation says.

Answer = tuple[int, Any]
Recorded = tuple[str, str, dict[str, str], Any]


@pytest.fixture
async def github_like() -> AsyncIterator[tuple[str, list[Recorded], list[Answer]]]:
    """A loopback server that records each request and gives the next queued answer."""
    recorded: list[Recorded] = []
    answers: list[Answer] = []

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        payload = json.loads(body) if body else None
        recorded.append((request.method, request.path_qs, dict(request.headers), payload))
        status, content = answers.pop(0)
        return web.json_response(content, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/api/v3", recorded, answers
    finally:
        await runner.cleanup()


def github_pull(number: int, head: str, title: str, repo: str = "team/apps") -> dict[str, Any]:
    return {
        "number": number,
        "html_url": f"https://github.example/{repo}/pull/{number}",
        "title": title,
        "body": "old body",
        "state": "open",
        "merged_at": None,
        "head": {"ref": head, "sha": "a" * 40, "repo": {"full_name": repo}},
        "base": {"ref": "main"},
    }


async def test_github_a_pull_request_opened_meanwhile_is_found_and_updated(
    github_like: tuple[str, list[Recorded], list[Answer]],
) -> None:
    api, recorded, answers = github_like
    host = Host("github", api, "team", "apps", TOKEN)
    answers += [
        (200, []),
        (
            422,
            {
                "message": "Validation Failed",
                "errors": [{"message": "A pull request already exists for team:updates."}],
            },
        ),
        # A fork's branch of the same name is not ours.
        (200, [github_pull(6, "updates", "fork", "fork/apps"), github_pull(7, "updates", "x")]),
        (200, github_pull(7, "updates", "Update app to 1.2.0") | {"body": "new body"}),
    ]

    async with PullRequestClient(host) as client:
        outcome = await client.ensure("updates", "main", "Update app to 1.2.0", "new body")

    assert (outcome.action, outcome.pull_request.number) == ("updated", 7)
    requests: list[tuple[str, str, Any]] = [(m, path, body) for m, path, _, body in recorded]
    query = "state=open&head=team%3Aupdates&base=main&per_page=100&sort=updated&direction=desc"
    assert requests == [
        ("GET", f"/api/v3/repos/team/apps/pulls?{query}", None),
        (
            "POST",
            "/api/v3/repos/team/apps/pulls",
            {"title": "Update app to 1.2.0", "body": "new body", "head": "updates", "base": "main"},
        ),
        ("GET", f"/api/v3/repos/team/apps/pulls?{query}", None),
        (
            "PATCH",
            "/api/v3/repos/team/apps/pulls/7",
            {"title": "Update app to 1.2.0", "body": "new body"},
        ),
    ]
    headers = recorded[0][2]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert headers["Accept"] == "application/vnd.github+json"


async def test_github_a_forbidden_answer_says_which_permission_the_token_needs(
    github_like: tuple[str, list[Recorded], list[Answer]],
) -> None:
    api, _, answers = github_like
    answers += [(403, {"message": "Resource not accessible by personal access token"})]
    host = Host("github", api, "team", "apps", TOKEN)

    async with PullRequestClient(host) as client:
        with pytest.raises(PullRequestError) as refused:
            await client.find_open("updates", "main")

    assert refused.value.status == 403
    assert str(refused.value) == (
        "the token may not list the pull requests of team/apps (403 Forbidden): Resource not "
        "accessible by personal access token: it needs write access to the repository's pull "
        "requests (Gitea: scope write:repository; GitHub: 'Pull requests: read and write')"
    )
