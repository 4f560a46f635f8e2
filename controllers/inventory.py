"""What a Kustomization applied: object identities in Flux's inventory format, and their order.

An inventory entry is ``{"id": "<namespace>_<name>_<group>_<kind>", "v": "<version>"}``, the
string form of cli-utils' ``object.ObjMetadata`` that Flux stores in
``status.inventory.entries``: cluster-scoped objects have an empty namespace, the core group
is empty (``_podinfo__Namespace``), and the ``:`` in RBAC names is written ``__``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ObjectRef",
    "diff",
    "entries_for",
    "merge",
    "refs_from_entries",
    "sort_key",
]

_SEPARATOR = "_"
_RBAC_GROUP = "rbac.authorization.k8s.io"
_RBAC_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})

# Flux's apply order (fluxcd/pkg ssa/sort.go): these kinds first, in this order, then every
# other kind by group and kind, then webhooks last. Pruning walks it backwards.
_ORDER_FIRST = (
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "LimitRange",
    "PriorityClass",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
_KIND_RANK = {kind: i - len(_ORDER_FIRST) for i, kind in enumerate(_ORDER_FIRST)} | {
    kind: i + 1 for i, kind in enumerate(_ORDER_LAST)
}


@dataclass(frozen=True)
class ObjectRef:
    """One object's identity (namespace, name, group, kind) and the version it was applied at.

    The version is carried along but is not part of the identity, as in Flux: the same
    object applied at another version is the same inventory entry.
    """

    namespace: str
    name: str
    group: str
    kind: str
    version: str = field(default="", compare=False)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        """The identity of a Kubernetes object (a dict with apiVersion, kind and metadata)."""
        group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
        meta = obj.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            group=group,
            kind=str(obj.get("kind") or ""),
            version=version,
        )

    @classmethod
    def parse(cls, entry_id: str, version: str = "") -> ObjectRef:
        """An inventory id back into a reference; ``ValueError`` if it is malformed."""
        namespace, sep, rest = entry_id.partition(_SEPARATOR)
        rest, sep_kind, kind = rest.rpartition(_SEPARATOR)
        name, sep_group, group = rest.rpartition(_SEPARATOR)
        name = name.replace("__", ":")
        if not (sep and sep_kind and sep_group) or _SEPARATOR in name:
            raise ValueError(f"unable to parse stored object metadata: {entry_id}")
        return cls(namespace=namespace, name=name, group=group, kind=kind, version=version)

    @property
    def id(self) -> str:
        """Flux's inventory id, ``<namespace>_<name>_<group>_<kind>``."""
        name = self.name
        if self.group == _RBAC_GROUP and self.kind in _RBAC_KINDS:
            name = name.replace(":", "__")
        return _SEPARATOR.join((self.namespace, name, self.group, self.kind))

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def subject(self) -> str:
        """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), as Flux writes it."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return self.subject


def sort_key(ref: ObjectRef) -> tuple[int, str, str, str, str]:
    """Flux's apply order: by kind rank, then group, kind, namespace and name."""
    return (_KIND_RANK.get(ref.kind, 0), ref.group, ref.kind, ref.namespace, ref.name)


def entries_for(refs: Iterable[ObjectRef]) -> list[dict[str, str]]:
    """Inventory entries for ``refs``, in order, each id once."""
    seen: set[str] = set()
    entries = []
    for ref in refs:
        if ref.id not in seen:
            seen.add(ref.id)
            entries.append({"id": ref.id, "v": ref.version})
    return entries


def refs_from_entries(entries: Iterable[Mapping[str, str]]) -> list[ObjectRef]:
    """The references an inventory lists; ``ValueError`` on a malformed id."""
    return [ObjectRef.parse(entry["id"], entry.get("v", "")) for entry in entries]


def diff(old: Iterable[Mapping[str, str]], new: Iterable[Mapping[str, str]]) -> list[ObjectRef]:
    """What ``old`` lists and ``new`` does not (the stale objects), in Flux's apply order."""
    current = {entry["id"] for entry in new}
    stale = [ref for ref in refs_from_entries(old) if ref.id not in current]
    return sorted(stale, key=sort_key)


def merge(entries: Iterable[Mapping[str, str]], refs: Iterable[ObjectRef]) -> list[dict[str, str]]:
    """``entries`` with ``refs`` appended unless already listed (e.g. failed deletions)."""
    merged = [dict(entry) for entry in entries]
    seen = {entry["id"] for entry in merged}
    for ref in refs:
        if ref.id not in seen:
            seen.add(ref.id)
            merged.append({"id": ref.id, "v": ref.version})
    return merged
