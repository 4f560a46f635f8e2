"""Reconcile at once when a referenced ConfigMap or Secret changes (Flux's config watchers).

An object that reads a ConfigMap or Secret (a HelmRelease's ``valuesFrom``, a Kustomization's
``substituteFrom``) would otherwise see the change only at its next interval. As Flux does,
only the ConfigMaps and Secrets that ``--watch-configs-label-selector`` matches are watched
(by default those labelled ``reconcile.fluxcd.io/watch: Enabled``); unlike Flux, the selector
is given to the API server, so the process never holds the cluster's other Secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from controllers.api import object_key
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.reconcile import Watch

__all__ = ["References", "config_watches"]

References = Callable[[dict[str, Any]], Iterable[tuple[str, str]]]
"""The ``(kind, name)`` of each ConfigMap and Secret an object (raw) reads, in its namespace."""


def config_watches(references: References) -> list[Watch]:
    """Watches of ConfigMaps and Secrets that requeue the objects ``references`` says read
    them, on creation, deletion (an optional reference too, as Flux) and every change."""
    return [
        Watch(CONFIG_MAP, _requeue("ConfigMap", references), configs=True),
        Watch(SECRET, _requeue("Secret", references), configs=True),
    ]


def _requeue(kind: str, references: References) -> Callable[..., list[str]]:
    def requeue(
        old: dict[str, Any] | None, new: dict[str, Any] | None, primaries: Iterable[dict[str, Any]]
    ) -> list[str]:
        changed = new or old
        if changed is None or (old and new and _version(old) == _version(new)):
            return []
        meta = changed.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        return [
            object_key(primary)
            for primary in primaries
            if (primary.get("metadata") or {}).get("namespace") == namespace
            and (kind, name) in set(references(primary))
        ]

    return requeue


def _version(obj: dict[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("resourceVersion")
