"""Where the objects a Receiver names live in the API: Flux kind to group, version and plural.

A Receiver's resources name a Flux kind (``spec.resources[].kind`` is an enum) and, optionally,
an ``apiVersion``. Without one, the kind's current Flux version is used; Flux's own table
stops at the sources and ImageRepository (a Kustomization needs an explicit apiVersion there),
weir's covers every kind the enum allows. An explicit ``apiVersion`` wins.
"""

from __future__ import annotations

from controllers.api import ResourceInfo

__all__ = ["DEFAULT_API_VERSIONS", "target_info"]

SOURCE = "source.toolkit.fluxcd.io/v1"
IMAGE = "image.toolkit.fluxcd.io/v1"

# kind: (apiVersion when the reference has none, plural)
_KINDS: dict[str, tuple[str, str]] = {
    "GitRepository": (SOURCE, "gitrepositories"),
    "Bucket": (SOURCE, "buckets"),
    "OCIRepository": (SOURCE, "ocirepositories"),
    "HelmRepository": (SOURCE, "helmrepositories"),
    "HelmChart": (SOURCE, "helmcharts"),
    "ExternalArtifact": (SOURCE, "externalartifacts"),
    "Kustomization": ("kustomize.toolkit.fluxcd.io/v1", "kustomizations"),
    "HelmRelease": ("helm.toolkit.fluxcd.io/v2", "helmreleases"),
    "ImageRepository": (IMAGE, "imagerepositories"),
    "ImagePolicy": (IMAGE, "imagepolicies"),
    "ImageUpdateAutomation": (IMAGE, "imageupdateautomations"),
    "ArtifactGenerator": ("source.extensions.fluxcd.io/v1beta1", "artifactgenerators"),
}

DEFAULT_API_VERSIONS: dict[str, str] = {kind: version for kind, (version, _) in _KINDS.items()}


def target_info(kind: str, api_version: str | None = None) -> ResourceInfo:
    """The ``ResourceInfo`` of a Flux ``kind``, in ``api_version`` if given; ``LookupError``
    for a kind that is not one of Flux's."""
    if kind not in _KINDS:
        raise LookupError(f"kind '{kind}' is not a Flux kind a Receiver can name")
    default, plural = _KINDS[kind]
    group, _, version = (api_version or default).rpartition("/")
    return ResourceInfo(group=group, version=version, kind=kind, plural=plural)
