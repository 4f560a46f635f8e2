"""Server-side apply, as every weir controller that applies objects does it (fluxcd/pkg ``ssa``).

- :func:`server_side_apply`: one object applied (or dry-run) with a field manager, ``force``;
- :func:`normalize`: the desired state cleaned up and defaulted as the API server stores it;
- :func:`any_in_metadata`: the per-object opt-out labels and annotations;
- :func:`masked`, :func:`dry_run_failure`, :func:`is_immutable`: how an apply fails, in words
  that never carry a Secret's values.

The kustomize controller's staged apply (``kustomize.apply``) and the helm controller's drift
detection (``helm.drift``) are built on these.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.api import ResourceInfo
from controllers.kube import APPLY_PATCH, ApiError, KubeClient, resource_path

__all__ = [
    "any_in_metadata",
    "dry_run_failure",
    "is_immutable",
    "masked",
    "normalize",
    "server_side_apply",
]


async def server_side_apply(
    kube: KubeClient,
    info: ResourceInfo,
    obj: Mapping[str, Any],
    *,
    field_manager: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Apply ``obj`` as ``field_manager``, taking the fields other managers own (``force``);
    with ``dry_run``, nothing is stored and the answer is what would be. Raises ``ApiError``."""
    meta = obj["metadata"]
    query = {"fieldManager": field_manager, "force": "true"}
    if dry_run:
        query["dryRun"] = "All"
    path = resource_path(info, meta.get("namespace"), meta["name"])
    return await kube.request("PATCH", path, query=query, body=obj, content_type=APPLY_PATCH)


# Normalizing

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


# Opt-outs


def any_in_metadata(obj: Mapping[str, Any] | None, selector: Mapping[str, str]) -> bool:
    """Whether a label or annotation of ``obj`` has one of the selector's values (any case)."""
    if not obj:
        return False
    meta = obj.get("metadata") or {}
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        for key, value in selector.items():
            found = source.get(key)
            if found and str(found).lower() == value.lower():
                return True
    return False


# Failures

# Flux's ssa errors.IsImmutableError: kubectl's rule (any 409 or 422) plus the wording that
# webhooks and CEL rules use.
_IMMUTABLE = re.compile(r"is\simmutable|immutable\sfield")


def is_immutable(err: ApiError) -> bool:
    """Whether ``err`` refuses a change to an immutable field (Flux's ``IsImmutableError``)."""
    return err.status in (409, 422) or bool(_IMMUTABLE.search(err.message))


def dry_run_failure(err: ApiError) -> str:
    """Flux's DryRunErr wording, after the object's name."""
    if err.status == 404:
        return f"not found: {err.message}"
    reason = f" ({err.reason})" if err.reason else ""
    return f"dry-run failed{reason}: {err.message}"


def _secret_values(obj: Mapping[str, Any]) -> list[str]:
    """Every value of a Secret, as written and decoded, longest first."""
    if obj.get("kind") != "Secret":
        return []
    values: set[str] = set()
    for key in ("data", "stringData"):
        for value in (obj.get(key) or {}).values():
            values.add(str(value))
            if key == "data":
                with contextlib.suppress(ValueError):  # not base64, or not text
                    values.add(base64.b64decode(str(value), validate=True).decode())
    return sorted((v for v in values if v), key=len, reverse=True)


def masked(message: str, obj: Mapping[str, Any]) -> str:
    """``message`` with a Secret's values replaced by ``***``: the API server may quote them."""
    for value in _secret_values(obj):
        # Short values would mangle unrelated words; mask them only where quoted.
        if len(value) >= 4:
            message = message.replace(value, "***")
        else:
            message = message.replace(f'"{value}"', '"***"')
    return message
