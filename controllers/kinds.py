"""Where the built-in kinds that controllers read live in the API: one definition each."""

from __future__ import annotations

from controllers.api import ResourceInfo

__all__ = ["CONFIG_MAP", "EVENT", "LEASE", "NAMESPACE", "SECRET", "SERVICE_ACCOUNT"]

CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
SECRET = ResourceInfo(group="", version="v1", kind="Secret", plural="secrets")
SERVICE_ACCOUNT = ResourceInfo(
    group="", version="v1", kind="ServiceAccount", plural="serviceaccounts"
)
EVENT = ResourceInfo(group="", version="v1", kind="Event", plural="events")
LEASE = ResourceInfo(group="coordination.k8s.io", version="v1", kind="Lease", plural="leases")
NAMESPACE = ResourceInfo(
    group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False
)
