"""Built-in kinds the tests touch, and a GitRepository manifest maker."""

from __future__ import annotations

from typing import Any

from controllers.api import ResourceInfo
from source.api_v1 import GitRepository

NAMESPACE = ResourceInfo(
    group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False
)
EVENT = ResourceInfo(group="", version="v1", kind="Event", plural="events")
LEASE = ResourceInfo(group="coordination.k8s.io", version="v1", kind="Lease", plural="leases")
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
