"""A real Git host for the tests: Gitea, built from its pinned module (``hack/tools/gitea/``).

``GiteaServer`` runs ``gitea web`` on a free loopback port with a SQLite database in a temporary
work directory, and an admin user with an access token (``gitea admin user create``). Its REST
API makes repositories, webhooks and commit statuses; Git goes over plain HTTP with the token as
the password. Webhooks may target loopback addresses and are delivered from an in-memory queue,
so a push's webhook arrives within a fraction of a second.

The process dies with the thread that started it (``PR_SET_PDEATHSIG``), so a killed test run
leaves none behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from controllers.envtest import die_with_parent, ensure_binaries, find_binary, free_port

__all__ = ["GiteaError", "GiteaServer"]

START_TIMEOUT_SECONDS = 60.0
PUSH_TIMEOUT_SECONDS = 10.0
ADMIN_USER = "weir-admin"


class GiteaError(RuntimeError):
    """Gitea could not start, or a request to it failed; the message says why."""


class GiteaServer:
    """Gitea on ``127.0.0.1:<port>``; ``url`` is its root, ``token`` the admin's API token."""

    def __init__(self) -> None:
        self.port = 0
        self.token = ""
        self.owner = ADMIN_USER
        self._workdir: Path | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start Gitea, wait until its API answers, and create the admin user and token."""
        binary = find_binary("gitea") or ensure_binaries()["gitea"]
        self._workdir = Path(tempfile.mkdtemp(prefix="weir-gitea-"))
        try:
            self._start(binary, self._workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: Path, workdir: Path) -> None:
        config = workdir / "app.ini"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "GITEA_WORK_DIR": str(workdir),
        }
        if os.geteuid() == 0:  # Gitea refuses to run as root unless told that it is meant
            env["GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT"] = "true"
        common = [f"--config={config}", f"--work-path={workdir}"]
        for _ in range(3):  # a port taken between choosing and binding: try another
            self.port = free_port()
            # The templates and locales were copied beside the binary when it was built.
            config.write_text(_app_ini(workdir, self.port, binary.parent))
            with (workdir / "gitea.log").open("ab") as log:
                self._popen = subprocess.Popen(
                    [str(binary), "web", *common],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=env,
                    preexec_fn=die_with_parent,
                )
            if self._wait_ready():
                break
        else:
            raise GiteaError(f"gitea did not start:\n{self._log_tail()}")
        created = subprocess.run(
            [
                str(binary),
                "admin",
                "user",
                "create",
                *common,
                f"--username={ADMIN_USER}",
                "--random-password",  # the token is all the tests use
                "--email=admin@weir.invalid",
                "--admin",
                "--must-change-password=false",
                "--access-token",
                "--access-token-name=weir-tests",
                "--access-token-scopes=all",
            ],
            capture_output=True,
            text=True,
            cwd=workdir,
            env=env,
            check=False,
            timeout=START_TIMEOUT_SECONDS,
        )
        token_lines = [
            line for line in created.stdout.splitlines() if "Access token was successfully" in line
        ]
        if created.returncode or not token_lines:
            raise GiteaError(f"gitea admin user create failed:\n{created.stdout}{created.stderr}")
        self.token = token_lines[0].split()[-1]
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"token {self.token}"},
            timeout=10.0,
        )

    def _wait_ready(self) -> bool:
        """True once the API answers; False if the process exited (its port was taken)."""
        assert self._popen is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        delay = 0.05
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/version", timeout=2.0).is_success:
                    return True
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise GiteaError(f"gitea not answering after {START_TIMEOUT_SECONDS}s:\n{self._log_tail()}")

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # The REST API

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One API request (``path`` under ``/api/v1``); the decoded JSON answer, or None."""
        if self._http is None:
            raise GiteaError("gitea is not started")
        response = self._http.request(method, path, json=body)
        if not response.is_success:
            raise GiteaError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def create_repository(self, name: str, *, default_branch: str = "main") -> dict[str, Any]:
        """An empty repository of the admin user."""
        body = {"name": name, "default_branch": default_branch, "auto_init": False}
        repository: dict[str, Any] = self.api("POST", "/user/repos", body)
        return repository

    def clone_url(self, name: str) -> str:
        """The repository's HTTP clone URL, with the admin user and token as credentials."""
        return (
            f"http://{quote(self.owner)}:{quote(self.token, safe='')}@127.0.0.1:{self.port}"
            f"/{self.owner}/{name}.git"
        )

    def wait_for_push(self, name: str, sha: str, branch: str = "main") -> None:
        """Wait until Gitea has processed a push of ``sha`` to ``branch``: it does so after the
        push returns, and until then it lists no branch and calls the repository empty."""
        deadline = time.monotonic() + PUSH_TIMEOUT_SECONDS
        delay = 0.02
        while True:
            repository = self.api("GET", f"/repos/{self.owner}/{name}")
            branches = self.api("GET", f"/repos/{self.owner}/{name}/branches")
            heads = {each["name"]: each["commit"]["id"] for each in branches or ()}
            if not repository["empty"] and heads.get(branch) == sha:
                return
            if time.monotonic() > deadline:
                raise GiteaError(f"{name}: {branch} at {heads.get(branch)}, not {sha}")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def add_webhook(
        self, name: str, url: str, secret: str, events: tuple[str, ...] = ("push",)
    ) -> dict[str, Any]:
        """A Gitea-type webhook posting JSON to ``url`` and signing it with ``secret``."""
        body = {
            "type": "gitea",
            "active": True,
            "events": list(events),
            "config": {"url": url, "content_type": "json", "secret": secret},
        }
        hook: dict[str, Any] = self.api("POST", f"/repos/{self.owner}/{name}/hooks", body)
        return hook

    def set_commit_status(
        self, name: str, sha: str, state: str, context: str, description: str = ""
    ) -> dict[str, Any]:
        """Set the status ``state`` (pending, success, error, failure, warning) of ``context``."""
        body = {"state": state, "context": context, "description": description}
        status: dict[str, Any] = self.api(
            "POST", f"/repos/{self.owner}/{name}/statuses/{sha}", body
        )
        return status

    def commit_statuses(self, name: str, sha: str) -> list[dict[str, Any]]:
        """Every status set on ``sha``, newest first."""
        statuses: list[dict[str, Any]] = self.api(
            "GET", f"/repos/{self.owner}/{name}/commits/{sha}/statuses"
        )
        return statuses

    def pull_requests(self, name: str, state: str = "all") -> list[dict[str, Any]]:
        """The repository's pull requests (``open``, ``closed`` or ``all``)."""
        pulls: list[dict[str, Any]] = self.api(
            "GET", f"/repos/{self.owner}/{name}/pulls?state={state}"
        )
        return pulls

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._workdir / "gitea.log").read_text(errors="replace")[-3000:]
        return ""


def _app_ini(workdir: Path, port: int, static_root: Path) -> str:
    """Gitea's configuration: loopback only, SQLite, no mail, SSH, indexers or update checks."""
    return f"""\
APP_NAME = weir tests
RUN_MODE = prod
WORK_PATH = {workdir}

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = {static_root}
APP_DATA_PATH = {workdir}/data

[database]
DB_TYPE = sqlite3
PATH = {workdir}/data/gitea.db

[repository]
ROOT = {workdir}/repositories

[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(32)}
INTERNAL_TOKEN = {secrets.token_hex(32)}
# Webhook targets are the tests' listeners on 127.0.0.1.
ALLOWED_HOST_LIST = loopback

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db

[queue]
# In memory: a push's webhook goes out at once instead of after the next poll of a disk queue.
TYPE = channel

[actions]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = Warn
ROOT_PATH = {workdir}/log
"""
