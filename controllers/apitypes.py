"""API types several weir kinds embed, as Flux keeps them in fluxcd/pkg (``apis/meta``,
``apis/kustomize``, ``apis/acl``) and Kubernetes in metav1: one definition, so a
Kustomization's and a HelmRelease's ``patches``, ``images``, ``healthCheckExprs`` and Secret key
references, and the sources' and image repositories' ``accessFrom``, cannot drift apart."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from controllers.api import KubeModel

__all__ = [
    "AccessFrom",
    "CustomHealthCheck",
    "Image",
    "LabelSelector",
    "LabelSelectorRequirement",
    "NamespaceSelector",
    "Patch",
    "SecretKeyReference",
    "Selector",
]


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


class NamespaceSelector(KubeModel):
    """Namespaces whose objects may refer to this one, by label."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a namespace must have, all of them."
    )


class AccessFrom(KubeModel):
    """Cross-namespace access control list."""

    namespace_selectors: list[NamespaceSelector] = Field(
        description="Namespaces allowed to refer to this object; any one must match."
    )


class LabelSelectorRequirement(KubeModel):
    """One expression of a label selector: a key, an operator and values."""

    key: str = Field(description="The label key the requirement applies to.")
    operator: str = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] | None = Field(
        default=None,
        description="Values for In and NotIn (not empty); empty for Exists and DoesNotExist.",
    )


class LabelSelector(KubeModel):
    """metav1.LabelSelector: every requirement must hold; empty selects everything."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels an object must have, all of them."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Label requirements an object must meet, all of them."
    )
