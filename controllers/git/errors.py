"""The Git errors every controller sees, and the scrubbing of credentials from messages."""

from __future__ import annotations

import re

__all__ = ["AUTH_FAILED", "GIT_FAILED", "GitError", "PushRejected", "sanitize"]

AUTH_FAILED = "AuthenticationFailed"
GIT_FAILED = "GitOperationFailed"
_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-z+]+://)[^/@\s]+@")


class GitError(Exception):
    """A Git operation failed; ``reason`` is a Flux condition reason."""

    def __init__(self, message: str, *, reason: str = GIT_FAILED) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class PushRejected(GitError):
    """The remote refused the push because a branch moved since the clone (not a fast-forward,
    or updated while the push ran). Nothing was written; clone again, redo the edits on the new
    head and push again."""


def sanitize(text: str) -> str:
    """``text`` with any credentials embedded in URLs removed."""
    return _CREDENTIALS_IN_URL.sub(r"\g<scheme>", text)
