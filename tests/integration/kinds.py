"""Built-in kinds the tests touch, and a GitRepository manifest maker."""

from __future__ import annotations

from typing import Any

from controllers.api import ResourceInfo
from controllers.kinds import EVENT, LEASE, NAMESPACE
from kustomize.api_v1 import Kustomization
from source.api_v1 import GitRepository

__all__ = ["EVENT", "GITREPO", "KS", "LEASE", "NAMESPACE", "git_repository", "kustomization"]

GITREPO = GitRepository.info
KS = Kustomization.info
RBAC = "rbac.authorization.k8s.io"
DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
CLUSTER_ROLE = ResourceInfo(RBAC, "v1", "ClusterRole", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDING = ResourceInfo(
    RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False
)
CRD = ResourceInfo(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
)


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


def kustomization(name: str, namespace: str, path: str, **spec: Any) -> dict[str, Any]:
    """A Kustomization of the GitRepository ``app``, as a user would write it."""
    return {
        "apiVersion": KS.api_version,
        "kind": KS.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "path": path,
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "app"},
            **spec,
        },
    }
