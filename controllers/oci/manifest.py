"""OCI image manifests and indexes (and Docker's v2 manifests and manifest lists), parsed
and checked, and which image of an index and which layer of a manifest are pulled."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from controllers.oci.errors import ContentError
from controllers.oci.reference import DIGEST

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "FLUX_CONFIG",
    "FLUX_CONTENT",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "Manifest",
    "parse_manifest",
    "select_layer",
    "select_manifest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
# What `flux push artifact` writes.
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """An image manifest (``layers``) or an index (``manifests``), and its digest."""

    digest: str
    media_type: str
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)


def parse_manifest(raw: bytes, digest: str, content_type: str | None = None) -> Manifest:
    """Parse a manifest whose digest is ``digest``; its media type is the document's
    ``mediaType``, else the response's ``Content-Type``."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise ContentError(f"manifest {digest} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ContentError(f"manifest {digest} is not a JSON object")
    media_type = document.get("mediaType") or (content_type or "").split(";")[0].strip()
    if not media_type:
        # An OCI manifest may omit its media type; what it lists says what it is.
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ContentError(
            f"manifest {digest} has unsupported media type '{media_type[:200]}'; expected one "
            f"of {', '.join(MANIFEST_MEDIA_TYPES)}"
        )
    key = "manifests" if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) else "layers"
    entries = document.get(key) or []
    if not isinstance(entries, list):
        raise ContentError(f"manifest {digest}: '{key}' is not a list")
    descriptors = tuple(_descriptor(entry, digest) for entry in entries)
    return Manifest(
        digest=digest,
        media_type=media_type,
        layers=descriptors if key == "layers" else (),
        manifests=descriptors if key == "manifests" else (),
        annotations=_string_map(document.get("annotations")),
    )


def _descriptor(entry: Any, manifest: str) -> Descriptor:
    if not isinstance(entry, dict):
        raise ContentError(f"manifest {manifest} has a descriptor that is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ContentError(f"manifest {manifest} has a descriptor with an invalid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ContentError(f"manifest {manifest} has a descriptor with an invalid size")
    return Descriptor(
        media_type=str(entry.get("mediaType") or ""),
        digest=digest,
        size=size,
        annotations=_string_map(entry.get("annotations")),
        platform=_string_map(entry.get("platform")),
    )


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def select_manifest(index: Manifest) -> Descriptor:
    """The image an index stands for, as go-containerregistry picks it: linux/amd64, or the
    only entry."""
    for entry in index.manifests:
        if entry.platform.get("os") == "linux" and entry.platform.get("architecture") == "amd64":
            return entry
    if len(index.manifests) == 1:
        return index.manifests[0]
    raise ContentError(
        f"index {index.digest} has {len(index.manifests)} manifests and none for linux/amd64"
    )


def select_layer(manifest: Manifest, media_type: str | None) -> Descriptor:
    """The first layer with ``media_type``, or the first layer when it is None or empty."""
    if not manifest.layers:
        raise ContentError("no layers found in artifact")
    if not media_type:
        return manifest.layers[0]
    for layer in manifest.layers:
        if layer.media_type == media_type:
            return layer
    raise ContentError(f"failed to find layer with media type '{media_type}' in artifact")
