"""The ``kustomize.toolkit.fluxcd.io/v1`` API: Kustomization.

Field names, defaults, patterns and enums follow Flux's kustomize-controller v1 API
(``api/v1/kustomization_types.go``) and the fluxcd/pkg types it embeds (``apis/meta``,
``apis/kustomize``). A Python default is also the CRD default, so optional fields without a
Flux default are ``None`` and stay out of the object when unset.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from controllers.api import (
    DURATION_PATTERN,
    READY_COLUMNS,
    CustomResource,
    Duration,
    KubeModel,
    LocalObjectReference,
    OptionalDuration,
    ResourceInfo,
    ResourceStatus,
    parse_duration,
)
from controllers.apitypes import CustomHealthCheck, Image, Patch, SecretKeyReference, Selector

__all__ = [
    "GROUP",
    "BuildMetadataOption",
    "CommonMetadata",
    "CrossNamespaceSourceReference",
    "CustomHealthCheck",
    "Decryption",
    "DeletionPolicy",
    "DependencyReference",
    "DriftDetection",
    "DriftDetectionMode",
    "IgnoreRule",
    "Image",
    "KubeConfigReference",
    "Kustomization",
    "KustomizationSpec",
    "KustomizationStatus",
    "NamespacedObjectKindReference",
    "Patch",
    "PostBuild",
    "ResourceInventory",
    "ResourceRef",
    "SecretKeyReference",
    "Selector",
    "Snapshot",
    "SourceKind",
    "SubstituteReference",
    "SubstituteStrategy",
]

GROUP = "kustomize.toolkit.fluxcd.io"
VERSION = "v1"

SourceKind = Literal["OCIRepository", "GitRepository", "Bucket", "ExternalArtifact"]
DeletionPolicy = Literal["MirrorPrune", "Delete", "WaitForTermination", "Orphan"]
SubstituteStrategy = Literal["WithVariables", "Always"]
BuildMetadataOption = Literal["originAnnotations", "transformerAnnotations"]
# A weir extension: Flux's Kustomization always corrects drift ("enabled").
DriftDetectionMode = Literal["enabled", "warn"]

# Flux floors the timeout of a run at 30s, and derives it from the interval when unset.
_MIN_TIMEOUT_SECONDS = 30.0

_KUBECONFIG_RULE = "has(self.configMapRef) != has(self.secretRef)"
_KUBECONFIG_MESSAGE = (
    "exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be specified"
)


class CrossNamespaceSourceReference(KubeModel):
    """The source whose artifact holds the manifests."""

    api_version: str | None = Field(default=None, description="API version of the source.")
    kind: SourceKind = Field(description="Kind of the source.")
    name: str = Field(description="Name of the source.")
    namespace: str | None = Field(
        default=None, description="Namespace of the source; the Kustomization's when unset."
    )


class DependencyReference(KubeModel):
    """A Kustomization that must be ready before this one is reconciled."""

    name: str = Field(description="Name of the dependency.")
    namespace: str | None = Field(
        default=None, description="Namespace of the dependency; the Kustomization's when unset."
    )
    ready_expr: str | None = Field(
        default=None,
        description="CEL expression deciding whether the dependency is ready, replacing the "
        "built-in readiness check.",
    )


class NamespacedObjectKindReference(KubeModel):
    """An object, of any kind and in any namespace, whose health is checked."""

    api_version: str | None = Field(
        default=None, description="API version of the object; the preferred version when unset."
    )
    kind: str = Field(description="Kind of the object.")
    name: str = Field(description="Name of the object.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")


class KubeConfigReference(KubeModel):
    """Where the kubeconfig of a remote cluster comes from."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": _KUBECONFIG_RULE, "message": _KUBECONFIG_MESSAGE}]
        }
    )

    config_map_ref: LocalObjectReference | None = Field(
        default=None,
        description="ConfigMap describing the cluster for a cloud provider ('provider', "
        "'cluster', 'address', 'ca.crt', 'serviceAccountName', 'audiences'); exclusive with "
        "secretRef.",
    )
    secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="Secret holding a self-contained kubeconfig, under 'value' unless a key is "
        "given; exclusive with configMapRef.",
    )

    @model_validator(mode="after")
    def _exactly_one_reference(self) -> Self:
        # Mirrors the CRD's x-kubernetes-validations rule.
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError(_KUBECONFIG_MESSAGE)
        return self


class CommonMetadata(KubeModel):
    """Labels and annotations set on every applied object, overriding keys they already have."""

    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations added to every object."
    )
    labels: dict[str, str] | None = Field(default=None, description="Labels added to every object.")


class IgnoreRule(KubeModel):
    """Fields left out of drift detection and apply."""

    paths: list[str] = Field(description="JSON Pointers (RFC 6901) of the fields to ignore.")
    target: Selector | None = Field(
        default=None, description="Objects the rule applies to; every object when unset."
    )


class DriftDetection(KubeModel):
    """What is done about changes made in the cluster to the applied objects (a weir
    extension, shaped as HelmRelease's driftDetection; its ignore rules are spec.ignore)."""

    mode: DriftDetectionMode | None = Field(
        default=None,
        description="'enabled' (the default, as in Flux) detects and corrects drift; 'warn' "
        "only reports it (the Drifted condition and a Warning event) and writes nothing while "
        "the revision stays the one last applied. A new revision is applied in both modes.",
    )


class Decryption(KubeModel):
    """How encrypted Secrets are decrypted before they are applied."""

    provider: Literal["sops"] = Field(description="Decryption engine.")
    service_account_name: str | None = Field(
        default=None,
        description="ServiceAccount used to authenticate with cloud KMS services; static "
        "credentials in secretRef win.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret holding the private keys and KMS credentials."
    )


class SubstituteReference(KubeModel):
    """A ConfigMap or Secret whose data keys are variables to substitute."""

    kind: Literal["Secret", "ConfigMap"] = Field(description="Kind of the object.")
    name: str = Field(
        min_length=1, max_length=253, description="Name of the object, in the same namespace."
    )
    optional: bool = Field(
        default=False,
        description="Carry on as if the object were empty when it does not exist.",
    )


class PostBuild(KubeModel):
    """What to do with the manifests after kustomize built them."""

    substitute_strategy: SubstituteStrategy | None = Field(
        default=None,
        description="'WithVariables' (the default) substitutes only when a variable is defined; "
        "'Always' substitutes even without variables, for defaults such as ${var:=default}.",
    )
    substitute: dict[str, str] | None = Field(
        default=None,
        description="Variables to substitute for ${name} in the manifests, with bash-style "
        "string functions such as ${var:=default}.",
    )
    substitute_from: list[SubstituteReference] | None = Field(
        default=None,
        description="ConfigMaps and Secrets whose data keys are variables to substitute; "
        "later ones win, and substitute wins over all.",
    )


class KustomizationSpec(KubeModel):
    """The desired state of a Kustomization: what to build, from which source, and how."""

    common_metadata: CommonMetadata | None = Field(
        default=None,
        description="Labels and annotations set on every applied object, overriding keys they "
        "already have.",
    )
    depends_on: list[DependencyReference] | None = Field(
        default=None,
        description="Kustomizations that must be ready before this one is reconciled.",
    )
    decryption: Decryption | None = Field(
        default=None, description="Decryption of Secrets before they are applied."
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN,
        description="How often the Kustomization is reconciled (with jitter).",
    )
    retry_interval: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How soon a failed reconciliation is retried; the interval when unset.",
    )
    kube_config: KubeConfigReference | None = Field(
        default=None,
        description="Apply to a remote cluster; with serviceAccountName, that account of the "
        "remote cluster is impersonated.",
    )
    path: str | None = Field(
        default=None,
        description="Directory of the source holding a kustomization.yaml, or plain manifests "
        "one is generated for; the root when unset.",
    )
    post_build: PostBuild | None = Field(
        default=None, description="Actions on the manifests after the kustomize build."
    )
    prune: bool = Field(description="Delete the objects that left the source.")
    deletion_policy: DeletionPolicy | None = Field(
        default=None,
        description="What deleting the Kustomization does to its objects: 'MirrorPrune' (the "
        "default) deletes them when prune is true, 'Delete' and 'WaitForTermination' always "
        "delete them, 'Orphan' never does.",
    )
    health_checks: list[NamespacedObjectKindReference] | None = Field(
        default=None, description="Objects whose health decides the Kustomization's."
    )
    name_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Prefix added to the name of every object.",
    )
    name_suffix: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Suffix added to the name of every object.",
    )
    patches: list[Patch] | None = Field(
        default=None,
        description="Inline strategic merge and JSON 6902 patches, with selectors of the "
        "objects they apply to.",
    )
    images: list[Image] | None = Field(
        default=None, description="Replacements of image names, tags or digests."
    )
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount impersonated to apply the objects."
    )
    source_ref: CrossNamespaceSourceReference = Field(
        description="The source whose artifact holds the manifests."
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this Kustomization while true."
    )
    target_namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Namespace set on every namespaced object, overriding the "
        "kustomization.yaml's.",
    )
    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Timeout of the build, apply and health checks; the interval less 30s "
        "(at least 30s) when unset.",
    )
    force: bool = Field(
        default=False,
        description="Recreate objects whose changes touch immutable fields.",
    )
    wait: bool | None = Field(
        default=None,
        description="Wait until every applied object is healthy; healthChecks are then ignored.",
    )
    build_metadata: list[BuildMetadataOption] | None = Field(
        default=None,
        description="kustomize build metadata to add to the objects: 'originAnnotations' "
        "(where each object came from) and 'transformerAnnotations' (what changed it).",
    )
    components: list[str] | None = Field(
        default=None, description="Relative paths of kustomize Components to include."
    )
    ignore_missing_components: bool | None = Field(
        default=None,
        description="Leave out components whose path does not exist instead of failing.",
    )
    health_check_exprs: list[CustomHealthCheck] | None = Field(
        default=None,
        description="CEL health checks for custom kinds, used with wait or healthChecks.",
    )
    ignore: list[IgnoreRule] | None = Field(
        default=None, description="Fields left out of drift detection and apply."
    )
    drift_detection: DriftDetection | None = Field(
        default=None,
        description="Detection, and correction, of changes made in the cluster to the "
        "applied objects (weir extension); corrected as in Flux when unset.",
    )


class ResourceRef(KubeModel):
    """One applied object."""

    id: str = Field(description="'<namespace>_<name>_<group>_<kind>' of the object.")
    v: str = Field(description="API version of the object's kind.")


class ResourceInventory(KubeModel):
    """The objects last applied."""

    entries: list[ResourceRef] = Field(description="The applied objects.")


class Snapshot(KubeModel):
    """One reconciliation outcome of a set of objects, as kept in the history."""

    digest: str = Field(description="Checksum of the objects, '<algorithm>:<hex>'.")
    first_reconciled: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When this digest was first reconciled.",
    )
    last_reconciled: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When this digest was last reconciled.",
    )
    last_reconciled_duration: str = Field(description="How long the last reconciliation took.")
    last_reconciled_status: str = Field(description="Outcome of the last reconciliation.")
    total_reconciliations: int = Field(
        json_schema_extra={"format": "int64"},
        description="How many reconciliations ended with this digest and outcome.",
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="More about the snapshot, such as the source revision."
    )


class KustomizationStatus(ResourceStatus):
    """The observed state of a Kustomization."""

    last_applied_revision: str | None = Field(
        default=None, description="Revision of the source artifact last applied successfully."
    )
    last_applied_origin_revision: str | None = Field(
        default=None,
        description="Origin revision of the artifact last applied successfully, e.g. the "
        "'org.opencontainers.image.revision' of an OCI artifact.",
    )
    last_attempted_revision: str | None = Field(
        default=None, description="Revision of the source artifact last attempted."
    )
    inventory: ResourceInventory | None = Field(
        default=None, description="The objects last applied successfully."
    )
    history: list[Snapshot] | None = Field(
        default=None, description="The last reconciliations, most recent first (at most 5)."
    )


class Kustomization(CustomResource):
    """Manifests built with kustomize from a source artifact and applied to the cluster."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="Kustomization",
        plural="kustomizations",
        short_names=("ks",),
        categories=("all", "fluxcd", "fluxcd-appliers"),
        printer_columns=READY_COLUMNS,
    )

    spec: KustomizationSpec
    status: KustomizationStatus = Field(default_factory=KustomizationStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)

    @property
    def timeout_seconds(self) -> float:
        """``spec.timeout``, else the interval less 30s; never under 30s (Flux's GetTimeout)."""
        if self.spec.timeout is not None:
            seconds = parse_duration(self.spec.timeout)
        else:
            seconds = parse_duration(self.spec.interval) - _MIN_TIMEOUT_SECONDS
        return max(seconds, _MIN_TIMEOUT_SECONDS)

    @property
    def retry_interval_seconds(self) -> float:
        """``spec.retryInterval``, else ``spec.interval``."""
        return parse_duration(self.spec.retry_interval or self.spec.interval)

    @property
    def deletion_policy(self) -> DeletionPolicy:
        """``spec.deletionPolicy``, ``MirrorPrune`` when unset."""
        return self.spec.deletion_policy or "MirrorPrune"

    @property
    def drift_mode(self) -> DriftDetectionMode:
        """``spec.driftDetection.mode``, ``enabled`` (Flux's behaviour) when unset."""
        drift = self.spec.drift_detection
        return (drift.mode if drift else None) or "enabled"

    @property
    def substitute_strategy(self) -> SubstituteStrategy:
        """``spec.postBuild.substituteStrategy``, ``WithVariables`` when unset."""
        post_build = self.spec.post_build
        return (post_build.substitute_strategy if post_build else None) or "WithVariables"
