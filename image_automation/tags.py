"""Where an ImageRepository's last full scan is kept: a ConfigMap the controller owns.

The ImagePolicy reconciler needs every tag of the last scan, in this process and after a
restart. Flux keeps them in a database on the controller's disk (Badger, or files), rebuilt by
rescanning when it is lost. weir keeps them in the cluster instead, for two reasons:

- **not in the object's status**: a repository may have tens of thousands of tags; status
  would then carry hundreds of kilobytes that every reader of ImageRepositories (kubectl, the
  CLI, the notification controller's informers, each watch event) receives on every scan, and
  the object would near etcd's size limit. Status keeps Flux's small summary
  (``lastScanResult``) only.
- **a ConfigMap the controller owns**: one per ImageRepository, named ``<name>.image-tags``
  (shortened with a hash past 253 characters), in its namespace, with an owner reference to
  it, so Kubernetes' garbage collector removes it with the ImageRepository (the finalizer
  removes it first anyway). The tags, newest first as Flux sorts them, one per line, are
  gzipped in ``binaryData`` (tags compress about tenfold); ``data`` holds the revision, scan
  time and canonical image name. A scan whose compressed list is over ``MAX_STORED_SIZE``
  (900 KiB, under the API server's 1 MiB object limit; some 400 000 typical tags) fails with
  a message asking for a narrower ``exclusionList``. It needs no volume, survives restarts
  and leader changes, and is there for any replica that takes over.

A ConfigMap of that name that is not owned by the ImageRepository is neither read nor
overwritten. The store caches what it wrote and read by revision, so the policy reconciler
(which passes the revision it saw in the ImageRepository's status) reads the ConfigMap only
after a restart or a scan by another process.

ImagePolicies learn of a new scan through the ImageRepository itself: its
``status.lastScanResult.revision`` changes after the ConfigMap is written, and
``policies_to_requeue`` is the requeue function of a ``Watch`` on ImageRepositories.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.api import object_key
from controllers.kinds import CONFIG_MAP
from controllers.kube import ApiError, KubeClient
from image_automation.api_v1 import ImageRepository

__all__ = [
    "MAX_STORED_SIZE",
    "ScanResult",
    "TagStore",
    "TagStoreError",
    "config_map_name",
    "policies_to_requeue",
    "scan_revision_of",
]

MAX_STORED_SIZE = 900 * 1024
"""The most bytes of gzipped tags one ConfigMap holds."""
# What a stored list may inflate to when read back: a bound against a doctored ConfigMap.
MAX_INFLATED_SIZE = 64 * 1024 * 1024
MAX_NAME_LENGTH = 253
_SUFFIX = ".image-tags"
_TAGS_KEY = "tags.gz"
_MANAGED_BY = {"app.kubernetes.io/managed-by": "image-automation-controller"}


class TagStoreError(Exception):
    """The tags could not be stored or read; the message says why, for a condition."""


@dataclass(frozen=True)
class ScanResult:
    """A full scan: every tag not excluded (descending order, as Flux stores them), the
    scan's revision, its time (RFC 3339) and the canonical image name scanned."""

    tags: tuple[str, ...]
    revision: str
    scan_time: str
    canonical_image_name: str


def config_map_name(name: str) -> str:
    """The ConfigMap holding ImageRepository ``name``'s tags."""
    full = name + _SUFFIX
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_NAME_LENGTH - len(_SUFFIX) - 13]}-{digest}{_SUFFIX}"


class TagStore:
    """The last scan of each ImageRepository, in ConfigMaps; one store per process, shared by
    the ImageRepository reconciler (``save``, ``delete``) and the ImagePolicy reconciler
    (``tags_of``)."""

    def __init__(
        self, *, field_manager: str = "image-automation-controller", max_size: int = MAX_STORED_SIZE
    ) -> None:
        self.field_manager = field_manager
        self.max_size = max_size
        self._cache: dict[tuple[str, str], ScanResult] = {}

    async def tags_of(
        self, client: KubeClient, namespace: str, name: str, *, revision: str | None = None
    ) -> ScanResult | None:
        """The last full scan of ImageRepository ``namespace/name``; None when there is none
        (never scanned, or the ConfigMap is gone or not its own). With ``revision`` (the one in
        the ImageRepository's status), a cached scan of that revision is returned without
        reading the cluster."""
        cached = self._cache.get((namespace, name))
        if cached is not None and revision is not None and cached.revision == revision:
            return cached
        try:
            config_map = await client.get_or_none(CONFIG_MAP, namespace, config_map_name(name))
        except ApiError as err:
            raise TagStoreError(f"failed to read the tags of '{namespace}/{name}': {err}") from None
        if config_map is None or _owner(config_map, name) is None:
            self._cache.pop((namespace, name), None)
            return None
        result = _decode(config_map, f"{namespace}/{name}")
        self._cache[(namespace, name)] = result
        return result

    async def save(
        self, client: KubeClient, repository: ImageRepository, result: ScanResult
    ) -> None:
        """Keep ``result`` as ``repository``'s last scan (create or replace its ConfigMap)."""
        namespace, name = repository.metadata.namespace or "", repository.metadata.name
        payload = gzip.compress("".join(f"{tag}\n" for tag in result.tags).encode(), mtime=0)
        if len(payload) > self.max_size:
            raise TagStoreError(
                f"the {len(result.tags)} tags of '{result.canonical_image_name}' take "
                f"{len(payload)} bytes compressed, more than the {self.max_size} bytes kept per "
                "ImageRepository; exclude tags with spec.exclusionList"
            )
        body = _config_map(repository, result, payload)
        try:
            existing = await client.get_or_none(CONFIG_MAP, namespace, body["metadata"]["name"])
            if existing is None:
                await client.create(CONFIG_MAP, body, field_manager=self.field_manager)
            else:
                owner = _owner(existing, name)
                if owner is None or owner.get("uid") != repository.metadata.uid:
                    raise TagStoreError(
                        f"ConfigMap '{namespace}/{body['metadata']['name']}' exists and is not "
                        f"owned by ImageRepository '{name}'; delete or rename it"
                    )
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await client.replace(CONFIG_MAP, body, field_manager=self.field_manager)
        except ApiError as err:
            raise TagStoreError(
                f"failed to store the tags of '{namespace}/{name}': {err}"
            ) from None
        self._cache[(namespace, name)] = result

    async def delete(self, client: KubeClient, repository: ImageRepository) -> None:
        """Remove ``repository``'s stored scan (its ConfigMap, when it owns it)."""
        namespace, name = repository.metadata.namespace or "", repository.metadata.name
        self._cache.pop((namespace, name), None)
        existing = await client.get_or_none(CONFIG_MAP, namespace, config_map_name(name))
        owner = _owner(existing, name) if existing is not None else None
        if owner is not None and owner.get("uid") == repository.metadata.uid:
            await client.delete(CONFIG_MAP, namespace, config_map_name(name))


def scan_revision_of(repository: dict[str, Any] | None) -> str | None:
    """``status.lastScanResult.revision`` of an ImageRepository as the API returns it."""
    if repository is None:
        return None
    result = (repository.get("status") or {}).get("lastScanResult") or {}
    revision = result.get("revision")
    return revision if isinstance(revision, str) else None


def policies_to_requeue(
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    policies: Iterable[dict[str, Any]],
) -> list[str]:
    """For a ``Watch`` on ImageRepositories: the keys of the ImagePolicies that refer to the
    changed ImageRepository, when its scan revision changed (or it appeared or went)."""
    if scan_revision_of(old) == scan_revision_of(new) and (old is None) == (new is None):
        return []
    changed = new if new is not None else old
    if changed is None:
        return []
    meta = changed.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    keys = []
    for policy in policies:
        policy_namespace = (policy.get("metadata") or {}).get("namespace")
        ref = (policy.get("spec") or {}).get("imageRepositoryRef") or {}
        if ref.get("name") == name and (ref.get("namespace") or policy_namespace) == namespace:
            keys.append(object_key(policy))
    return keys


def _config_map(repository: ImageRepository, result: ScanResult, payload: bytes) -> dict[str, Any]:
    info = ImageRepository.info
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(repository.metadata.name),
            "namespace": repository.metadata.namespace,
            "labels": dict(_MANAGED_BY),
            "ownerReferences": [
                {
                    "apiVersion": info.api_version,
                    "kind": info.kind,
                    "name": repository.metadata.name,
                    "uid": repository.metadata.uid,
                    "controller": True,
                }
            ],
        },
        "data": {
            "revision": result.revision,
            "scanTime": result.scan_time,
            "canonicalImageName": result.canonical_image_name,
            "tagCount": str(len(result.tags)),
        },
        "binaryData": {_TAGS_KEY: base64.b64encode(payload).decode()},
    }


def _owner(config_map: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The owner reference naming ImageRepository ``name`` as controller, if there is one."""
    info = ImageRepository.info
    references: Sequence[dict[str, Any]] = (config_map.get("metadata") or {}).get(
        "ownerReferences"
    ) or []
    for reference in references:
        if (
            reference.get("kind") == info.kind
            and str(reference.get("apiVersion", "")).startswith(f"{info.group}/")
            and reference.get("name") == name
            and reference.get("controller")
        ):
            return reference
    return None


def _decode(config_map: dict[str, Any], shown: str) -> ScanResult:
    data = config_map.get("data") or {}
    encoded = (config_map.get("binaryData") or {}).get(_TAGS_KEY, "")
    try:
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # gzip
        raw = inflater.decompress(base64.b64decode(encoded, validate=True), MAX_INFLATED_SIZE)
        if inflater.unconsumed_tail:
            raise TagStoreError(
                f"the stored tags of '{shown}' inflate past {MAX_INFLATED_SIZE} bytes"
            )
        text = raw.decode()
    except (binascii.Error, zlib.error, UnicodeDecodeError):
        raise TagStoreError(f"the stored tags of '{shown}' are corrupt") from None
    return ScanResult(
        tags=tuple(text.splitlines()),
        revision=str(data.get("revision", "")),
        scan_time=str(data.get("scanTime", "")),
        canonical_image_name=str(data.get("canonicalImageName", "")),
    )
