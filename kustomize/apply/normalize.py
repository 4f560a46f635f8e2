"""Flux's ssa normalize: an object's desired state cleaned up and defaulted as the API server
would store it, before it is dry-run and applied."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

__all__ = ["normalize"]

_POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


def _dig(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _default_protocols(ports: Any) -> None:
    for port in ports if isinstance(ports, list) else []:
        if isinstance(port, dict) and not port.get("protocol"):
            port["protocol"] = "TCP"


def normalize(obj: dict[str, Any]) -> None:
    """Flux's ssa normalize, in place: no status (but a CRD's) nor creationTimestamp, a
    Secret's stringData folded into data, port protocols defaulted to TCP."""
    obj.get("metadata", {}).pop("creationTimestamp", None)
    if obj.get("kind") != "CustomResourceDefinition":
        obj.pop("status", None)
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind == "Secret" and api_version == "v1" and isinstance(obj.get("stringData"), dict):
        data: dict[str, Any] = dict(obj.get("data") or {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    if kind == "Service" and api_version == "v1":
        _default_protocols(_dig(obj, ("spec", "ports")))
    elif kind in _POD_TEMPLATE_PATHS:
        pod_spec = _dig(obj, _POD_TEMPLATE_PATHS[str(kind)])
        for container in _dig(pod_spec, ("containers",)) or []:
            if isinstance(container, dict):
                _default_protocols(container.get("ports"))
