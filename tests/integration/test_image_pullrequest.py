"""The pull-request client of the image automation against the suite's real Gitea: a pull request
is opened from a pushed branch, updated in place when the branch moves, left alone once merged
(a new one is opened) or closed unmerged at the same commit, and refusals read as the user can
act on them."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from controllers.secrets import SecretData
from image_automation.pullrequest import (
    Host,
    PullRequestClient,
    PullRequestError,
    host_for,
)
from tests.gitea import GiteaServer

pytestmark = pytest.mark.integration

HEAD = "image-updates/apps"
BASE = "main"
WAIT_SECONDS = 20.0


def git(cwd: Path, *args: str) -> str:
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
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


class Repository:
    """A repository on Gitea with a ``main`` branch, and a local clone to push branches from."""

    def __init__(self, gitea: GiteaServer, workdir: Path) -> None:
        self.gitea = gitea
        self.name = f"pr-{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.url = f"{gitea.url}/{gitea.owner}/{self.name}.git"

    def create(self) -> None:
        self.gitea.create_repository(self.name)
        self.workdir.mkdir(parents=True)
        git(self.workdir, "init", "--quiet", f"--initial-branch={BASE}")
        self.commit("deploy.yaml", "image: app:1.0.0\n")
        self.push(BASE)

    def commit(self, path: str, content: str) -> str:
        (self.workdir / path).write_text(content)
        git(self.workdir, "add", path)
        git(self.workdir, "commit", "--quiet", "-m", f"write {content.strip()}")
        return git(self.workdir, "rev-parse", "HEAD")

    def push(self, branch: str) -> str:
        """Force-push HEAD to ``branch``, as the automation pushes its branch; its SHA."""
        sha = git(self.workdir, "rev-parse", "HEAD")
        git(self.workdir, "push", "--quiet", "--force", self.gitea.clone_url(self.name),
            f"HEAD:refs/heads/{branch}")  # fmt: skip
        self.gitea.wait_for_push(self.name, sha, branch)
        return sha

    def propose(self, tag: str) -> str:
        """A commit on ``main`` setting ``tag``, force-pushed to the head branch: its SHA."""
        git(self.workdir, "checkout", "--quiet", "-B", "work", f"refs/heads/{BASE}")
        self.commit("deploy.yaml", f"image: app:{tag}\n")
        return self.push(HEAD)

    def pull(self, number: int) -> dict[str, Any]:
        pull: dict[str, Any] = self.gitea.api(
            "GET", f"/repos/{self.gitea.owner}/{self.name}/pulls/{number}"
        )
        return pull


def secret_with(token: str) -> SecretData:
    encoded = base64.b64encode(token.encode()).decode()
    return SecretData("apps", "gitea-token", {"token": encoded})


@pytest.fixture
async def repository(gitea: GiteaServer, tmp_path: Path) -> Repository:
    repo = Repository(gitea, tmp_path / "work")
    await asyncio.to_thread(repo.create)
    return repo


def gitea_host(gitea: GiteaServer, repository: Repository, token: str | None = None) -> Host:
    return host_for("gitea", repository.url, secret_with(token or gitea.token), timeout=10.0)


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """``check()``'s first truthy result, polled until a deadline."""
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.05
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS}s: {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def test_a_pull_request_is_opened_then_updated_in_place_when_the_branch_moves(
    gitea: GiteaServer, repository: Repository
) -> None:
    first = await asyncio.to_thread(repository.propose, "1.1.0")
    async with PullRequestClient(gitea_host(gitea, repository)) as client:
        opened = await client.ensure(HEAD, BASE, "Update app to 1.1.0", "app: 1.0.0 -> 1.1.0")
        second = await asyncio.to_thread(repository.propose, "1.2.0")
        updated = await client.ensure(HEAD, BASE, "Update app to 1.2.0", "app: 1.0.0 -> 1.2.0")
        again = await client.ensure(HEAD, BASE, "Update app to 1.2.0", "app: 1.0.0 -> 1.2.0")

    assert first != second
    assert (opened.action, updated.action, again.action) == ("created", "updated", "unchanged")
    number = opened.pull_request.number
    assert updated.pull_request.number == again.pull_request.number == number
    pull = repository.pull(number)
    assert (pull["title"], pull["body"], pull["state"]) == (
        "Update app to 1.2.0",
        "app: 1.0.0 -> 1.2.0",
        "open",
    )
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (HEAD, BASE)
    assert opened.pull_request.url == pull["html_url"]
    assert len(gitea.pull_requests(repository.name, "all")) == 1
    # Gitea moves the pull request to the force-pushed commit on its own, a moment later.
    await eventually(
        lambda: repository.pull(number)["head"]["sha"] == second, "the pull request at 1.2.0"
    )


async def test_a_merged_pull_request_is_left_as_it_is_and_the_next_change_opens_another(
    gitea: GiteaServer, repository: Repository
) -> None:
    owner, name = gitea.owner, repository.name
    await asyncio.to_thread(repository.propose, "1.1.0")
    async with PullRequestClient(gitea_host(gitea, repository)) as client:
        merged = await client.ensure(HEAD, BASE, "Update app to 1.1.0", "first")
        number = merged.pull_request.number
        # Gitea checks mergeability in the background; it refuses a merge until then.
        await eventually(
            lambda: _try_merge(gitea, f"/repos/{owner}/{name}/pulls/{number}/merge"),
            "the pull request merged",
        )
        found_after_merge = await client.find_open(HEAD, BASE)
        git(repository.workdir, "fetch", "--quiet", gitea.clone_url(name), f"+{BASE}:{BASE}")
        await asyncio.to_thread(repository.propose, "1.2.0")
        following = await client.ensure(HEAD, BASE, "Update app to 1.2.0", "second")

    assert found_after_merge is None
    assert following.action == "created"
    assert following.pull_request.number != number
    old = repository.pull(number)
    assert (old["merged"], old["title"], old["body"]) == (True, "Update app to 1.1.0", "first")
    assert repository.pull(following.pull_request.number)["title"] == "Update app to 1.2.0"


def _try_merge(gitea: GiteaServer, path: str) -> bool:
    try:
        gitea.api("POST", path, {"Do": "merge"})
    except RuntimeError:
        return False
    return True


async def test_a_pull_request_closed_unmerged_at_the_branchs_commit_is_not_opened_again(
    gitea: GiteaServer, repository: Repository
) -> None:
    owner, name = gitea.owner, repository.name
    sha = await asyncio.to_thread(repository.propose, "1.1.0")
    async with PullRequestClient(gitea_host(gitea, repository)) as client:
        opened = await client.ensure(HEAD, BASE, "Update app to 1.1.0", "", head_sha=sha)
        number = opened.pull_request.number
        gitea.api("PATCH", f"/repos/{owner}/{name}/pulls/{number}", {"state": "closed"})
        declined = await client.ensure(HEAD, BASE, "Update app to 1.1.0", "", head_sha=sha)
        newer = await asyncio.to_thread(repository.propose, "1.2.0")
        reopened = await client.ensure(HEAD, BASE, "Update app to 1.2.0", "", head_sha=newer)

    assert declined.action == "declined"
    assert declined.pull_request.number == number
    assert reopened.action == "created"
    assert reopened.pull_request.number != number
    states = {pull["number"]: pull["state"] for pull in gitea.pull_requests(name, "all")}
    assert states == {number: "closed", reopened.pull_request.number: "open"}


PAGE = 2


async def test_the_open_pull_request_is_found_beyond_the_first_page(
    gitea: GiteaServer, repository: Repository
) -> None:
    owner, name = gitea.owner, repository.name
    # Other branches with their open pull requests, all older than the automation's, more
    # than a page of PAGE holds.
    others = [f"other/{i}" for i in range(3)]
    git(repository.workdir, "checkout", "--quiet", "-B", "work", f"refs/heads/{BASE}")
    repository.commit("other.txt", "other\n")
    refspecs = [f"HEAD:refs/heads/{branch}" for branch in others]
    git(repository.workdir, "push", "--quiet", gitea.clone_url(name), *refspecs)
    await eventually(
        lambda: _count(gitea, f"/repos/{owner}/{name}/branches") == 4, "the other branches"
    )
    limit = asyncio.Semaphore(3)

    async def open_pull(branch: str) -> None:
        body = {"head": branch, "base": BASE, "title": f"change {branch}"}
        async with limit:
            await asyncio.to_thread(gitea.api, "POST", f"/repos/{owner}/{name}/pulls", body)

    await asyncio.gather(*(open_pull(branch) for branch in others))
    await asyncio.to_thread(repository.propose, "1.1.0")

    async with PullRequestClient(gitea_host(gitea, repository), page_size=PAGE) as client:
        opened = await client.ensure(HEAD, BASE, "Update app to 1.1.0", "first")
        found = await client.find_open(HEAD, BASE)
        updated = await client.ensure(HEAD, BASE, "Update app to 1.1.0", "second")

    assert opened.action == "created"
    assert found is not None
    assert found.number == opened.pull_request.number
    assert (updated.action, updated.pull_request.number) == ("updated", found.number)
    # More than a page holds: the automation's came on the second.
    assert _count(gitea, f"/repos/{owner}/{name}/pulls?state=open") == 4


def _count(gitea: GiteaServer, path: str) -> int:
    """How many items a list of Gitea's API has in all (its X-Total-Count)."""
    answer = httpx.get(
        f"{gitea.url}/api/v1{path}",
        params={"limit": 1},
        headers={"Authorization": f"token {gitea.token}"},
        timeout=10.0,
    )
    answer.raise_for_status()
    return int(answer.headers["X-Total-Count"])


async def test_a_wrong_token_is_refused_with_a_message_naming_its_secret_not_its_value(
    gitea: GiteaServer, repository: Repository
) -> None:
    await asyncio.to_thread(repository.propose, "1.1.0")
    wrong = "0123456789abcdef0123456789abcdef01234567"
    async with PullRequestClient(gitea_host(gitea, repository, wrong)) as client:
        with pytest.raises(PullRequestError) as refused:
            await client.ensure(HEAD, BASE, "Update app to 1.1.0", "")

    assert refused.value.status == 401
    message = str(refused.value)
    assert "the token in secret 'apps/gitea-token'" in message
    assert "401 Unauthorized" in message
    assert "expired or revoked" in message
    assert wrong not in message
    assert gitea.pull_requests(repository.name, "all") == []


def _read_only_token(gitea: GiteaServer) -> str:
    """A token of a new user, scoped to read repositories only."""
    reader = f"reader-{uuid.uuid4().hex[:6]}"
    password = uuid.uuid4().hex
    account = {
        "username": reader,
        "email": f"{reader}@weir.invalid",
        "password": password,
        "must_change_password": False,
    }
    gitea.api("POST", "/admin/users", account)
    # Gitea makes a user's tokens only with the user's password.
    made = httpx.post(
        f"{gitea.url}/api/v1/users/{reader}/tokens",
        json={"name": "read-only", "scopes": ["read:repository"]},
        auth=(reader, password),
        timeout=10.0,
    )
    made.raise_for_status()
    return str(made.json()["sha1"])


async def test_a_read_only_token_is_refused_with_the_scope_it_needs(
    gitea: GiteaServer, repository: Repository
) -> None:
    token = await asyncio.to_thread(_read_only_token, gitea)
    await asyncio.to_thread(repository.propose, "1.1.0")

    async with PullRequestClient(gitea_host(gitea, repository, token)) as client:
        with pytest.raises(PullRequestError) as refused:
            await client.ensure(HEAD, BASE, "Update app to 1.1.0", "")

    assert refused.value.status == 403
    message = str(refused.value)
    assert message.startswith(
        "the token in secret 'apps/gitea-token' may not open a pull request from "
        f"'{HEAD}' to '{BASE}' in {gitea.owner}/{repository.name} (403 Forbidden)"
    )
    assert "write:repository" in message
    assert token not in message


async def test_a_repository_the_host_does_not_have_is_a_404_naming_what_to_check(
    gitea: GiteaServer,
) -> None:
    url = f"{gitea.url}/{gitea.owner}/no-such-repository.git"
    host = host_for("gitea", url, secret_with(gitea.token), timeout=10.0)

    async with PullRequestClient(host) as client:
        with pytest.raises(PullRequestError) as refused:
            await client.find_open(HEAD, BASE)

    assert refused.value.status == 404
    assert str(refused.value) == (
        f"{gitea.url} answered 404 Not Found when asked to list the pull requests of "
        f"{gitea.owner}/no-such-repository: check the GitRepository's URL and the provider "
        f"(gitea, API at {gitea.url}/api/v1), and that the token in secret "
        f"'apps/gitea-token' can see {gitea.owner}/no-such-repository"
    )


async def test_a_head_branch_that_was_never_pushed_is_refused_with_a_hint(
    gitea: GiteaServer, repository: Repository
) -> None:
    async with PullRequestClient(gitea_host(gitea, repository)) as client:
        with pytest.raises(PullRequestError) as refused:
            await client.ensure("never-pushed", BASE, "Update app", "")

    assert refused.value.status == 404
    assert str(refused.value).endswith(
        f"open a pull request from 'never-pushed' to '{BASE}' in {gitea.owner}/"
        f"{repository.name}: the branch 'never-pushed' or '{BASE}' does not exist "
        "(was the change pushed?)"
    )
    assert gitea.pull_requests(repository.name, "all") == []
