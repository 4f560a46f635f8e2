"""API types several weir kinds embed, as Flux keeps them in fluxcd/pkg (``apis/meta``,
``apis/kustomize``): one definition, so a Kustomization's and a HelmRelease's ``patches``,
``images``, ``healthCheckExprs`` and Secret key references cannot drift apart."""

from __future__ import annotations

from pydantic import Field

from controllers.api import KubeModel

__all__ = ["CustomHealthCheck", "Image", "Patch", "SecretKeyReference", "Selector"]


class SecretKeyReference(KubeModel):
    """A key of a Secret in the same namespace."""

    name: str = Field(description="Name of the Secret.")
    key: str | None = Field(
        default=None,
        description="Key in the Secret; an implementation-specific default when unset.",
    )


class Selector(KubeModel):
    """Objects matching all of the given criteria."""

    group: str | None = Field(default=None, description="API group of the objects.")
    version: str | None = Field(default=None, description="API version of the objects.")
    kind: str | None = Field(default=None, description="Kind of the objects.")
    namespace: str | None = Field(default=None, description="Namespace of the objects.")
    name: str | None = Field(default=None, description="Name of the objects.")
    annotation_selector: str | None = Field(
        default=None, description="Label selector expression matched against the annotations."
    )
    label_selector: str | None = Field(
        default=None, description="Label selector expression matched against the labels."
    )


class Patch(KubeModel):
    """An inline strategic merge or JSON 6902 patch, and the objects it applies to."""

    patch: str = Field(
        description="A strategic merge patch, or a JSON 6902 patch as a list of operations."
    )
    target: Selector | None = Field(
        default=None, description="Objects the patch applies to; those it names when unset."
    )


class Image(KubeModel):
    """A container image whose name, tag or digest is replaced."""

    name: str = Field(description="Image name, without a tag.")
    new_name: str | None = Field(default=None, description="Name replacing the original one.")
    new_tag: str | None = Field(default=None, description="Tag replacing the original one.")
    digest: str | None = Field(
        default=None, description="Digest replacing the original tag; wins over newTag."
    )


class CustomHealthCheck(KubeModel):
    """CEL expressions deciding the health of objects of one custom kind."""

    api_version: str = Field(description="API version of the objects.")
    kind: str | None = Field(default=None, description="Kind of the objects.")
    current: str = Field(description="CEL expression true when the object is healthy.")
    in_progress: str | None = Field(
        default=None, description="CEL expression true while the object is progressing."
    )
    failed: str | None = Field(
        default=None, description="CEL expression true when the object has failed."
    )
