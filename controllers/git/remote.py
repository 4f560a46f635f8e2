"""Talking to a Git remote: the worker child process, the HTTPS bridge when libgit2 needs one,
and the credential checks every Git controller makes.

Each operation is one ``python -m controllers.git.worker`` process (see that module for why),
run with :func:`controllers.child.run`: a JSON request on stdin (credentials never in argv),
a JSON answer on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers import child
from controllers.git.bridge import https_bridge, needs_bridge
from controllers.git.errors import AUTH_FAILED, GIT_FAILED, GitError, PushRejected, sanitize

__all__ = ["Remote", "check_auth", "connect", "list_heads", "run_worker"]

WORKER_MODULE = "controllers.git.worker"
# The worker's JSON answer: every ref of a large remote (100,000 refs are about 10 MiB).
_MAX_ANSWER_BYTES = 64 * 1024 * 1024
# Only the last line of its stderr is shown (why it crashed).
_STDERR_TAIL_BYTES = 8192


@dataclass(frozen=True)
class Remote:
    """What the worker is given to reach a remote: the remote's own URL, credentials and proxy,
    or those of a loopback bridge to it."""

    url: str
    auth: Mapping[str, str] = field(repr=False)
    proxy: str | None = field(default=None, repr=False)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        return {"op": op, "url": self.url, "auth": dict(self.auth), "proxy": self.proxy, **fields}


def check_auth(url: str, auth: Mapping[str, str]) -> None:
    """Refuse credentials that cannot work, as Flux does, before any connection is made."""
    if ("tls.crt" in auth) != ("tls.key" in auth):
        raise GitError("a client certificate needs both tls.crt and tls.key", reason=AUTH_FAILED)
    if url.startswith("ssh://") and auth.get("identity") and not auth.get("known_hosts"):
        raise GitError(
            "SSH authentication requires 'known_hosts' in the secret", reason=AUTH_FAILED
        )


@contextlib.asynccontextmanager
async def connect(
    url: str, auth: Mapping[str, str], *, proxy: str | None, timeout: float
) -> AsyncIterator[Remote]:
    """The Remote the worker uses for ``url``: itself, or a bridge that lives as long as the
    ``async with`` block (a bridge's upstream error replaces libgit2's bare 502)."""
    if proxy and not url.startswith(("http://", "https://")):
        raise GitError("proxySecretRef works with http and https URLs only")
    if not needs_bridge(url, auth, proxy):
        yield Remote(url, auth, proxy)
        return
    try:
        async with https_bridge(url, dict(auth), proxy=proxy, timeout=timeout) as bridge:
            try:
                yield Remote(bridge.url, {})
            except GitError as err:
                if bridge.errors:
                    raise GitError(sanitize(bridge.errors[-1])) from err
                raise
    except ValueError as err:
        raise GitError(str(err), reason=AUTH_FAILED) from err


async def list_heads(remote: Remote, *, timeout: float) -> dict[str, str]:
    """Every ref the remote advertises (``git ls-remote``), without fetching anything."""
    answer = await run_worker(remote.request("list_heads"), timeout)
    heads: dict[str, str] = answer["heads"]
    return heads


async def run_worker(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one worker operation; its answer, or the GitError it reported (``PushRejected``
    when the remote refused a push that was not a fast-forward)."""
    request["timeout"] = timeout
    argv = [sys.executable, "-m", WORKER_MODULE]
    try:
        done = await child.run(
            argv,
            stdin=json.dumps(request).encode(),
            timeout=timeout,
            max_output=_MAX_ANSWER_BYTES,
            stderr_tail=_STDERR_TAIL_BYTES,
        )
    except child.ChildTimedOut:
        raise GitError(f"git operation timed out after {timeout:g}s") from None
    except child.ChildError as err:
        raise GitError(f"git worker failed: {err}") from None
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(
            f"git worker failed (exit {done.returncode}): {sanitize(said[-1] if said else '')}"
        )
    answer: dict[str, Any] = json.loads(done.stdout)
    if "error" in answer:
        error = PushRejected if answer.get("rejected") else GitError
        raise error(sanitize(answer["error"]), reason=answer.get("reason", GIT_FAILED))
    return answer
