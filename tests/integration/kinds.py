"""Built-in kinds the tests touch, and a GitRepository manifest maker."""

from __future__ import annotations

from typing import Any

from controllers.kinds import EVENT, LEASE, NAMESPACE
from source.api_v1 import GitRepository

__all__ = ["EVENT", "GITREPO", "LEASE", "NAMESPACE", "git_repository"]

GITREPO = GitRepository.info


def git_repository(
    name: str, namespace: str, *, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    """A GitRepository as a user would write it."""
    return {
        "apiVersion": GITREPO.api_version,
        "kind": GITREPO.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"url": "https://example.invalid/repo.git", "interval": "10m", **spec},
    }
