"""The repository side of ``weir bootstrap git``: the manifests it commits, and the commit.

As ``flux bootstrap git``: under ``<path>/flux-system/`` go ``gotk-components.yaml`` (the
install bundle), ``gotk-sync.yaml`` (a GitRepository ``flux-system`` following the branch and
a Kustomization ``flux-system`` applying ``<path>``) and a ``kustomization.yaml`` listing
both. Git runs as the ``git`` command, with the credentials given for this run only (an SSH
key file checked against known_hosts, or an HTTP header); nothing is left in the clone's
configuration or the user's.
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kustomize.api_v1 import Kustomization
from source.api_v1 import GitRepository

__all__ = ["BootstrapError", "GitCredentials", "commit_manifests", "sync_manifests"]

SYNC_NAME = "flux-system"
GIT_TIMEOUT_SECONDS = 120
COMMIT_MESSAGE = "Add weir {version} sync manifests"
AUTHOR = ("weir", "weir@users.noreply.local")


class BootstrapError(Exception):
    """A Git operation that failed, with git's own words."""


@dataclass(frozen=True)
class GitCredentials:
    """What to authenticate with: an SSH key and known_hosts, or basic auth (a token is the
    password); ``ca`` for an HTTPS server with its own CA."""

    identity: str | None = None
    known_hosts: str | None = None
    username: str | None = None
    password: str | None = None
    ca: str | None = None


def sync_manifests(
    url: str, branch: str, path: str, namespace: str, *, interval: str = "1m"
) -> list[dict[str, Any]]:
    """The GitRepository and Kustomization that keep the cluster in sync with ``path``."""
    repository = {
        "apiVersion": GitRepository.info.api_version,
        "kind": GitRepository.info.kind,
        "metadata": {"name": SYNC_NAME, "namespace": namespace},
        "spec": {
            "interval": interval,
            "ref": {"branch": branch},
            "secretRef": {"name": SYNC_NAME},
            "url": url,
        },
    }
    kustomization = {
        "apiVersion": Kustomization.info.api_version,
        "kind": Kustomization.info.kind,
        "metadata": {"name": SYNC_NAME, "namespace": namespace},
        "spec": {
            "interval": "10m0s",
            "path": f"./{path.strip('/')}",
            "prune": True,
            "sourceRef": {"kind": GitRepository.info.kind, "name": SYNC_NAME},
        },
    }
    return [repository, kustomization]


def _documents(objects: Sequence[dict[str, Any]]) -> str:
    return "".join(
        "---\n" + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects
    )


def manifest_files(
    path: str, components: Sequence[dict[str, Any]], sync: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """Repository path to content, for everything bootstrap commits."""
    base = f"{path.strip('/')}/{SYNC_NAME}"
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["gotk-components.yaml", "gotk-sync.yaml"],
    }
    return {
        f"{base}/gotk-components.yaml": _documents(components),
        f"{base}/gotk-sync.yaml": _documents(sync),
        f"{base}/kustomization.yaml": yaml.safe_dump(kustomization, sort_keys=False),
    }


def commit_manifests(
    url: str,
    branch: str,
    files: dict[str, str],
    credentials: GitCredentials,
    *,
    version: str,
) -> str | None:
    """Clone ``branch`` of ``url`` (or start it), write ``files``, commit and push them if
    anything changed; the new commit's SHA, or None when the branch already had them."""
    with tempfile.TemporaryDirectory(prefix="weir-bootstrap-") as scratch:
        git = _Git(Path(scratch), credentials)
        work = Path(scratch) / "repository"
        git.run("clone", "--quiet", "--no-checkout", url, str(work))
        git.cwd = work
        exists = git.run("ls-remote", "--heads", "origin", branch).strip()
        if exists:
            git.run("checkout", "--quiet", "-B", branch, f"origin/{branch}")
        else:
            git.run("checkout", "--quiet", "--orphan", branch)
        for name, content in files.items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git.run("add", "--", *files)
        if not git.run("status", "--porcelain", "--", *files).strip():
            return None
        git.run("commit", "--quiet", "-m", COMMIT_MESSAGE.format(version=version))
        git.run("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return git.run("rev-parse", "HEAD").strip()


class _Git:
    """``git`` with this run's credentials and identity, and git's stderr in its errors."""

    def __init__(self, scratch: Path, credentials: GitCredentials) -> None:
        self.cwd = scratch
        self._env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": AUTHOR[0],
            "GIT_AUTHOR_EMAIL": AUTHOR[1],
            "GIT_COMMITTER_NAME": AUTHOR[0],
            "GIT_COMMITTER_EMAIL": AUTHOR[1],
            # Not the user's settings: hooks, signing, templates would change what is pushed.
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        identity = _private_file(scratch / "identity", credentials.identity)
        known_hosts = _private_file(scratch / "known_hosts", credentials.known_hosts)
        ca = _private_file(scratch / "ca.crt", credentials.ca)
        if identity is not None:
            ssh = ["ssh", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
            ssh += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
            self._env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        if credentials.username or credentials.password:
            pair = f"{credentials.username or 'git'}:{credentials.password or ''}"
            header = "Authorization: Basic " + base64.b64encode(pair.encode()).decode()
            # In the environment, not as `-c` on the command line, where any local user's `ps`
            # would show the credentials (git reads GIT_CONFIG_COUNT since 2.31).
            self._env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": header,
                }
            )
        if ca is not None:
            # The variable, not http.sslCAInfo: git lets a GIT_SSL_CAINFO already set win.
            self._env["GIT_SSL_CAINFO"] = str(ca)

    def run(self, *args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BootstrapError(f"git {args[0]} took more than {GIT_TIMEOUT_SECONDS}s") from None
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()
            raise BootstrapError(f"git {args[0]} failed: {why[-1] if why else done.returncode}")
        return done.stdout


def _private_file(path: Path, content: str | None) -> Path | None:
    """``content`` in a new file only its owner reads (removed with the scratch directory)."""
    if content is None:
        return None
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(content if content.endswith("\n") else content + "\n")
    return path
