"""``spec.healthCheckExprs``: the release's objects of custom kinds judged by CEL, after Helm.

In Flux the expressions are status readers handed to Helm's own kstatus waiter, so Helm waits
for every object of the release with them in place of kstatus for their kinds. Helm's library
(``helm-python-sdk``) takes no status reader, so weir lets Helm wait as usual (kstatus for every
object) and, once the install or upgrade has succeeded, waits itself for the objects whose kinds
have a custom check, with ``controllers.health``'s evaluators. The other objects are not waited
for again: Helm's wait has just seen each of them ``Current``, and a second kstatus pass would
only spend the action's time to learn the same thing.

What differs from Flux, and why it mostly does not show: Helm's kstatus wait judged the custom
kinds first. kstatus takes an object that reports nothing (no ``Ready``, ``Reconciling`` or
``Stalled`` condition, no ``observedGeneration`` behind) as ``Current``, which is what custom
checks are for, so Helm passes them and the expressions decide here. An object of a custom kind
whose ``Ready`` condition stays False keeps Helm waiting until the timeout, where Flux would
take the expression's word.

The failure reads as Helm's waiter writes it (``helm.sh/helm/v4/pkg/kube/statuswait.go``), one
line per object not ``Current``, then ``context deadline exceeded`` when the time ran out::

    resource Widget/apps/one not ready. status: InProgress, message: <why>
    context deadline exceeded

As Helm does, a ``Failed`` object does not stop the wait while others are still in progress;
once every object is ``Current`` or ``Failed``, the failed ones are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.discovery import RestMapper, UnknownKind
from controllers.health import CustomCheck
from controllers.kstatus import Health, Status, kind_key
from controllers.kube import ApiError, KubeClient
from controllers.wait import Observed, wait_until
from helm.client import HelmError
from helm.drift import release_objects

__all__ = [
    "ReleaseObject",
    "ReleaseUnhealthy",
    "checked_objects",
    "wait_for_release",
]

# Helm's waiter ends with the context's error when its time runs out.
_DEADLINE_EXCEEDED = "context deadline exceeded"


class ReleaseUnhealthy(HelmError):
    """Objects of the release judged by ``healthCheckExprs`` did not become ``Current`` in
    time, or failed; the message is what Helm's waiter would say."""


@dataclass(frozen=True)
class ReleaseObject:
    """An object of the release, where Helm put it (a namespaced object without a namespace in
    the manifest lives in the release's namespace)."""

    api_version: str
    kind: str
    namespace: str
    name: str


async def checked_objects(
    mapper: RestMapper,
    manifest: str | Sequence[Mapping[str, Any]],
    custom: Mapping[str, CustomCheck],
    release_namespace: str,
) -> list[ReleaseObject]:
    """The objects of the release manifest (its text, or the objects already read from it,
    ``helm.drift.release_objects``) whose kinds ``custom`` (``controllers.health.custom_checks``)
    has a check for, in manifest order. Raises ``safeyaml.YAMLLoadError`` for a manifest that
    is not YAML."""
    if not custom:
        return []
    objects = release_objects(manifest) if isinstance(manifest, str) else manifest
    found: list[ReleaseObject] = []
    for obj in objects:
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        if kind_key(api_version, kind) not in custom:
            continue
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if not namespace:
            try:
                namespaced = (await mapper.resource_for(api_version, kind)).namespaced
            except (UnknownKind, ApiError):
                # Helm applied it, so its kind is served; should discovery lag, the release's
                # namespace is where Helm puts a namespaced object, and the wait reports the
                # kind as unknown until discovery catches up.
                namespaced = True
            namespace = release_namespace if namespaced else ""
        found.append(ReleaseObject(api_version, kind, namespace, str(meta.get("name") or "")))
    return list(dict.fromkeys(found))


def _health(seen: Observed, custom: Mapping[str, CustomCheck]) -> Health:
    if seen.unknown_kind is not None:
        return Health(Status.UNKNOWN, seen.unknown_kind)
    if seen.obj is None:
        return Health(Status.NOT_FOUND, "Resource not found")
    check = custom[kind_key(str(seen.obj.get("apiVersion") or ""), str(seen.obj.get("kind")))]
    return check.health(seen.obj)


async def wait_for_release(
    client: KubeClient,
    mapper: RestMapper,
    objects: Sequence[ReleaseObject],
    custom: Mapping[str, CustomCheck],
    timeout: float,
) -> None:
    """Until every object of ``objects`` (``checked_objects``) is ``Current`` by its custom
    check, watching them (``controllers.wait``); give it what is left of the action's timeout.

    Raises :class:`ReleaseUnhealthy` when the time runs out first, or when every object is
    settled and some are ``Failed``; the caller treats it as the action's failure, as Flux does
    a failed Helm wait."""
    objects = list(dict.fromkeys(objects))
    if not objects:
        return

    def done(seen: Sequence[Observed]) -> bool:
        statuses = [_health(s, custom).status for s in seen]
        return all(status in (Status.CURRENT, Status.FAILED) for status in statuses)

    seen, finished = await wait_until(client, mapper, objects, done, max(timeout, 0.0))
    lines = []
    for ref, observed in zip(objects, seen, strict=True):
        health = _health(observed, custom)
        if health.status == Status.CURRENT:
            continue
        lines.append(
            f"resource {ref.kind}/{ref.namespace}/{ref.name} not ready. "
            f"status: {health.status}, message: {health.message}"
        )
    if not finished:
        lines.append(_DEADLINE_EXCEEDED)
    if lines:
        raise ReleaseUnhealthy("\n".join(lines))
