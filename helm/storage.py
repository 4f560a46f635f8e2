"""The one write weir makes to Helm's release storage itself: unlocking a pending release.

Helm's library (helm-python-sdk 0.2.2) has no call that rewrites a stored release's status,
which Flux's Unlock does through Helm's storage driver. This module does what that driver does
for the Secrets backend: read ``sh.helm.release.v1.<name>.v<version>``, set ``info.status`` and
``info.description`` in the release (base64 of gzipped JSON in ``data.release``), set the
``status`` and ``modifiedAt`` labels, and replace the Secret at the resourceVersion it read (a
conflicting writer makes it fail, never overwrite). The Go-built ``helm history`` reading the
result back is its test.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import time
from typing import Any

from controllers.kinds import SECRET
from controllers.kube import ApiError, KubeClient

__all__ = ["StorageError", "mark_failed", "release_secret_name"]

_GZIP_MAGIC = b"\x1f\x8b\x08"
FIELD_MANAGER = "helm-controller"


class StorageError(Exception):
    """The stored release could not be read or rewritten."""


def release_secret_name(name: str, version: int) -> str:
    return f"sh.helm.release.v1.{name}.v{version}"


def _decode(secret: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded = base64.b64decode(base64.b64decode(secret["data"]["release"]))
        raw = gzip.decompress(encoded) if encoded.startswith(_GZIP_MAGIC) else encoded
        release: dict[str, Any] = json.loads(raw)
    except (KeyError, TypeError, ValueError, binascii.Error, OSError) as err:
        raise StorageError(f"stored release is not readable: {err}") from None
    return release


def _encode(release: dict[str, Any]) -> str:
    packed = gzip.compress(json.dumps(release, separators=(",", ":")).encode())
    return base64.b64encode(base64.b64encode(packed)).decode()


async def mark_failed(
    client: KubeClient, namespace: str, name: str, version: int, description: str
) -> None:
    """Set release ``name`` revision ``version`` to ``failed`` with ``description``."""
    secret_name = release_secret_name(name, version)
    try:
        secret = await client.get(SECRET, namespace, secret_name)
    except ApiError as err:
        raise StorageError(f"cannot read {namespace}/{secret_name}: {err}") from None
    release = _decode(secret)
    info = release.setdefault("info", {})
    info["status"] = "failed"
    info["description"] = description
    secret["data"]["release"] = _encode(release)
    labels = secret["metadata"].setdefault("labels", {})
    labels["status"] = "failed"
    labels["modifiedAt"] = str(int(time.time()))
    try:
        await client.replace(SECRET, secret, field_manager=FIELD_MANAGER)
    except ApiError as err:
        raise StorageError(f"cannot update {namespace}/{secret_name}: {err}") from None
