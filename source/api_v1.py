"""The ``source.toolkit.fluxcd.io/v1`` API: GitRepository, OCIRepository, Bucket,
HelmRepository and HelmChart.

Field names, defaults, patterns and enums follow Flux's source-controller v1 API. A Python default
is also the CRD default (the API server applies it), so optional fields without a Flux default
are ``None`` and stay out of the object when unset.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from controllers.api import (
    DURATION_PATTERN,
    READY_COLUMNS,
    Artifact,
    CustomResource,
    Duration,
    KubeModel,
    LocalObjectReference,
    PrinterColumn,
    ResourceInfo,
    ResourceStatus,
    parse_duration,
)
from controllers.apitypes import AccessFrom
from controllers.crd import AGE_COLUMN

__all__ = [
    "GROUP",
    "Bucket",
    "BucketProvider",
    "BucketSTSProvider",
    "BucketSTSSpec",
    "BucketSpec",
    "BucketStatus",
    "GitProvider",
    "GitRepository",
    "GitRepositoryInclude",
    "GitRepositoryRef",
    "GitRepositorySpec",
    "GitRepositoryStatus",
    "GitRepositoryVerification",
    "GitVerificationMode",
    "HelmChart",
    "HelmChartSourceKind",
    "HelmChartSpec",
    "HelmChartStatus",
    "HelmChartVerification",
    "HelmReconcileStrategy",
    "HelmRepository",
    "HelmRepositoryProvider",
    "HelmRepositorySpec",
    "HelmRepositoryStatus",
    "HelmRepositoryType",
    "LocalHelmChartSourceReference",
    "OCILayerOperation",
    "OCILayerSelector",
    "OCIProvider",
    "OCIRepository",
    "OCIRepositoryRef",
    "OCIRepositorySpec",
    "OCIRepositoryStatus",
    "OCIRepositoryVerification",
    "OCIVerificationProvider",
    "OIDCIdentityMatch",
]

GROUP = "source.toolkit.fluxcd.io"
VERSION = "v1"
SOURCE_CATEGORIES = ("all", "fluxcd", "fluxcd-sources")

# Flux caps Git operation timeouts below an hour: no "h" unit.
GIT_TIMEOUT_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"

GitProvider = Literal["generic", "aws", "azure", "github"]
# "head" is accepted for backwards compatibility and means the same as "HEAD".
GitVerificationMode = Literal["head", "HEAD", "Tag", "TagAndHEAD"]


class GitRepositoryRef(KubeModel):
    """The Git reference to check out. Precedence: commit, name, semver, tag, branch."""

    branch: str | None = Field(
        default=None,
        description="Branch to check out; 'master' when no other field is set.",
    )
    tag: str | None = Field(default=None, description="Tag to check out; wins over branch.")
    semver: str | None = Field(
        default=None, description="SemVer range of tags to check out; wins over tag."
    )
    name: str | None = Field(
        default=None,
        description="Full Git reference to check out, e.g. refs/heads/main or refs/pull/420/head; "
        "wins over branch, tag and semver.",
    )
    commit: str | None = Field(
        default=None,
        description="Commit SHA to check out; wins over every other field. With branch, the "
        "branch is cloned shallowly and must contain the commit.",
    )


class GitRepositoryVerification(KubeModel):
    """How to verify the signatures of the checked out Git objects."""

    mode: GitVerificationMode = Field(
        default="HEAD",
        description="Which Git objects to verify: the HEAD commit, the tag, or both.",
    )
    secret_ref: LocalObjectReference = Field(
        description="Secret with the trusted public keys: PGP keys under keys ending in .asc, "
        "SSH keys under keys ending in .sshpub."
    )


class GitRepositoryInclude(KubeModel):
    """Another GitRepository whose artifact contents are copied into this one's artifact."""

    repository: LocalObjectReference = Field(
        description="The GitRepository whose artifact contents are included."
    )
    from_path: str | None = Field(
        default=None, description="Path to copy from; the artifact root when unset."
    )
    to_path: str | None = Field(
        default=None, description="Path to copy to; the repository name when unset."
    )


class GitRepositorySpec(KubeModel):
    """The desired state of a GitRepository: where to fetch from and how often."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.serviceAccountName) || (has(self.provider) && "
                    "(self.provider == 'azure' || self.provider == 'aws'))",
                    "message": "serviceAccountName can only be set when provider is "
                    "'azure' or 'aws'",
                }
            ]
        }
    )

    url: str = Field(
        # Flux allows http, https and ssh; git:// (git daemon) is weir's compatible addition.
        pattern=r"^(http|https|ssh|git)://.*$",
        description="URL of the Git repository: an HTTP/S, SSH or git:// address.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the credentials: 'username' and 'password' or 'bearerToken' "
        "for HTTPS, 'identity' and 'known_hosts' for SSH.",
    )
    provider: GitProvider | None = Field(
        default=None,
        description="Authentication provider: 'generic' (the default, credentials from "
        "secretRef), 'aws', 'azure' or 'github'.",
    )
    service_account_name: str | None = Field(
        default=None,
        description="ServiceAccount used to authenticate; only for the 'azure' and 'aws' "
        "providers.",
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN,
        description="How often the repository is checked for updates (with jitter).",
    )
    timeout: Duration = Field(
        default="60s",
        pattern=GIT_TIMEOUT_PATTERN,
        description="Timeout of Git operations such as cloning.",
    )
    ref: GitRepositoryRef | None = Field(
        default=None,
        description="Git reference to check out and watch; the 'master' branch when unset.",
    )
    verify: GitRepositoryVerification | None = Field(
        default=None, description="Verification of the commit and tag signatures."
    )
    proxy_secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the proxy settings used to reach the Git server."
    )
    ignore: str | None = Field(
        default=None,
        description="Exclusion patterns in .sourceignore (gitignore) format, replacing the "
        "defaults.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this GitRepository while true."
    )
    recurse_submodules: bool | None = Field(
        default=None, description="Clone and include all submodules, with their default settings."
    )
    include: list[GitRepositoryInclude] | None = Field(
        default=None,
        description="Other GitRepositories whose artifact contents are included in this one.",
    )
    sparse_checkout: list[str] | None = Field(
        default=None,
        description="Directories to check out; only these are included in the artifact.",
    )

    @model_validator(mode="after")
    def _service_account_needs_cloud_provider(self) -> Self:
        # Mirrors the CRD's x-kubernetes-validations rule, so the model rejects what the API
        # server rejects.
        if self.service_account_name is not None and self.provider not in ("azure", "aws"):
            raise ValueError("serviceAccountName can only be set when provider is 'azure' or 'aws'")
        return self


class GitRepositoryStatus(ResourceStatus):
    """The observed state of a GitRepository."""

    artifact: Artifact | None = Field(
        default=None, description="The artifact of the last successful reconciliation."
    )
    included_artifacts: list[Artifact] | None = Field(
        default=None, description="The artifacts last included as spec.include asks."
    )
    observed_ignore: str | None = Field(
        default=None, description="The exclusion patterns the current artifact was built with."
    )
    observed_recurse_submodules: bool | None = Field(
        default=None, description="The submodule setting the current artifact was built with."
    )
    observed_include: list[GitRepositoryInclude] | None = Field(
        default=None, description="The includes the current artifact was built with."
    )
    observed_sparse_checkout: list[str] | None = Field(
        default=None, description="The sparse checkout the current artifact was built with."
    )
    source_verification_mode: str | None = Field(
        default=None, description="The verification mode last used on the current revision."
    )


class GitRepository(CustomResource):
    """A Git repository that source-controller fetches and serves as a tarball artifact."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="GitRepository",
        plural="gitrepositories",
        short_names=("gitrepo",),
        categories=SOURCE_CATEGORIES,
        printer_columns=(PrinterColumn("URL", ".spec.url"), *READY_COLUMNS),
    )

    spec: GitRepositorySpec
    status: GitRepositoryStatus = Field(default_factory=GitRepositoryStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)


# OCIRepository

OCIProvider = Literal["generic", "aws", "azure", "gcp"]
OCILayerOperation = Literal["extract", "copy"]
OCIVerificationProvider = Literal["cosign", "notation"]


class OCIRepositoryRef(KubeModel):
    """The OCI reference to pull. Precedence: digest, semver, tag; the 'latest' tag by default."""

    digest: str | None = Field(
        default=None,
        description="Image digest to pull, 'sha256:<hash>'; wins over semver and tag.",
    )
    semver: str | None = Field(
        default=None,
        description="SemVer range of tags to pull, selecting the latest within the range; "
        "wins over tag.",
    )
    semver_filter: str | None = Field(
        default=None,
        description="Regular expression the tags must match to be considered for the SemVer range.",
    )
    tag: str | None = Field(default=None, description="Image tag to pull; 'latest' when unset.")


class OCILayerSelector(KubeModel):
    """Which layer of the OCI artifact becomes the artifact, and how."""

    media_type: str | None = Field(
        default=None,
        description="OCI media type of the layer to use; the first layer of this type is "
        "selected. The first layer when unset.",
    )
    operation: OCILayerOperation | None = Field(
        default=None,
        description="'extract' (the default) unpacks the layer's tarball into the artifact; "
        "'copy' stores the compressed layer as it is.",
    )


class OIDCIdentityMatch(KubeModel):
    """Identity matching criteria for Cosign keyless signatures."""

    issuer: str = Field(description="Regular expression the OIDC issuer must match.")
    subject: str = Field(description="Regular expression the identity subject must match.")


class OCIRepositoryVerification(KubeModel):
    """How to verify the authenticity of the OCI artifact."""

    provider: OCIVerificationProvider = Field(
        default="cosign", description="Technology used to sign the OCI artifact."
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the trusted public keys."
    )
    match_oidc_identity: list[OIDCIdentityMatch] | None = Field(
        default=None,
        alias="matchOIDCIdentity",
        description="Identities accepted for Cosign keyless signatures; any one must match.",
    )
    trusted_root_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with a Sigstore 'trusted_root.json' for self-hosted Sigstore.",
    )


class OCIRepositorySpec(KubeModel):
    """The desired state of an OCIRepository: which artifact to pull and how often."""

    url: str = Field(
        pattern=r"^oci://.*$",
        description="Address of the OCI repository, 'oci://<host>[:<port>]/<path>', without a "
        "tag or digest.",
    )
    ref: OCIRepositoryRef | None = Field(
        default=None, description="OCI reference to pull and watch; the 'latest' tag when unset."
    )
    layer_selector: OCILayerSelector | None = Field(
        default=None, description="Which layer to use; the first layer when unset."
    )
    provider: OCIProvider = Field(
        default="generic",
        description="Authentication provider: 'generic' (credentials from secretRef or the "
        "ServiceAccount's image pull secrets), 'aws', 'azure' or 'gcp'.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the registry credentials: a kubernetes.io/dockerconfigjson "
        "Secret, or 'username' and 'password'.",
    )
    verify: OCIRepositoryVerification | None = Field(
        default=None, description="Verification of the OCI artifact's signature."
    )
    service_account_name: str | None = Field(
        default=None,
        description="ServiceAccount whose image pull secrets authenticate the pull.",
    )
    cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with TLS settings for the registry: 'ca.crt', and 'tls.crt' with "
        "'tls.key' for a client certificate.",
    )
    proxy_secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the proxy settings used to reach the registry."
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN,
        description="How often the repository is checked for updates (with jitter).",
    )
    timeout: Duration = Field(
        default="60s",
        # Flux caps OCI operation timeouts below an hour, as for Git.
        pattern=GIT_TIMEOUT_PATTERN,
        description="Timeout of OCI operations such as pulling.",
    )
    ignore: str | None = Field(
        default=None,
        description="Exclusion patterns in .sourceignore (gitignore) format, replacing the "
        "defaults.",
    )
    insecure: bool | None = Field(
        default=None, description="Connect to the registry over plain HTTP."
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this OCIRepository while true."
    )


class OCIRepositoryStatus(ResourceStatus):
    """The observed state of an OCIRepository."""

    url: str | None = Field(
        default=None, description="Download address of the artifact of the last sync."
    )
    artifact: Artifact | None = Field(
        default=None, description="The artifact of the last successful reconciliation."
    )
    observed_ignore: str | None = Field(
        default=None, description="The exclusion patterns the current artifact was built with."
    )
    observed_layer_selector: OCILayerSelector | None = Field(
        default=None, description="The layer selector the current artifact was built with."
    )


class OCIRepository(CustomResource):
    """An OCI artifact that source-controller pulls and serves as a tarball artifact."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="OCIRepository",
        plural="ocirepositories",
        short_names=("ocirepo",),
        categories=SOURCE_CATEGORIES,
        # Flux lists Age last for this kind.
        printer_columns=(PrinterColumn("URL", ".spec.url"), *READY_COLUMNS, AGE_COLUMN),
    )

    spec: OCIRepositorySpec
    status: OCIRepositoryStatus = Field(default_factory=OCIRepositoryStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)


# Bucket

BucketProvider = Literal["generic", "aws", "gcp", "azure"]
BucketSTSProvider = Literal["aws", "ldap"]

# Flux's rules on spec (bucket_types.go), as CEL for the API server and in the model below.
_BUCKET_RULES = (
    (
        "self.provider == 'aws' || self.provider == 'generic' || !has(self.sts)",
        "STS configuration is only supported for the 'aws' and 'generic' Bucket providers",
    ),
    (
        "self.provider != 'aws' || !has(self.sts) || self.sts.provider == 'aws'",
        "'aws' is the only supported STS provider for the 'aws' Bucket provider",
    ),
    (
        "self.provider != 'generic' || !has(self.sts) || self.sts.provider == 'ldap'",
        "'ldap' is the only supported STS provider for the 'generic' Bucket provider",
    ),
    (
        "!has(self.sts) || self.sts.provider != 'aws' || !has(self.sts.secretRef)",
        "spec.sts.secretRef is not required for the 'aws' STS provider",
    ),
    (
        "!has(self.sts) || self.sts.provider != 'aws' || !has(self.sts.certSecretRef)",
        "spec.sts.certSecretRef is not required for the 'aws' STS provider",
    ),
    (
        "self.provider != 'generic' || !has(self.serviceAccountName)",
        "ServiceAccountName is not supported for the 'generic' Bucket provider",
    ),
    (
        "!has(self.secretRef) || !has(self.serviceAccountName)",
        "cannot set both .spec.secretRef and .spec.serviceAccountName",
    ),
)


class BucketSTSSpec(KubeModel):
    """A Security Token Service to fetch temporary credentials from."""

    provider: BucketSTSProvider = Field(description="Provider of the Security Token Service.")
    endpoint: str = Field(
        pattern=r"^(http|https)://.*$",
        description="HTTP/S address of the Security Token Service.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with 'username' and 'password' for the STS endpoint; only for the "
        "'ldap' provider.",
    )
    cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with TLS settings for the STS endpoint: 'ca.crt', and 'tls.crt' with "
        "'tls.key' for a client certificate; only for the 'ldap' provider.",
    )


class BucketSpec(KubeModel):
    """The desired state of a Bucket: which object storage bucket to fetch and how often."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": rule, "message": message} for rule, message in _BUCKET_RULES
            ]
        }
    )

    provider: BucketProvider = Field(
        default="generic",
        description="Provider of the object storage bucket: 'generic' (any S3 compatible "
        "storage, the default), 'aws', 'gcp' or 'azure'.",
    )
    bucket_name: str = Field(description="Name of the object storage bucket.")
    endpoint: str = Field(
        description="Object storage address the bucket is located at, 'host[:port]'."
    )
    sts: BucketSTSSpec | None = Field(
        default=None,
        description="Security Token Service for temporary credentials; only for the 'aws' and "
        "'generic' providers.",
    )
    insecure: bool | None = Field(
        default=None, description="Connect to the endpoint over plain HTTP, without TLS."
    )
    region: str | None = Field(
        default=None, description="Region of the endpoint the bucket is located in."
    )
    prefix: str | None = Field(
        default=None, description="Only objects whose keys start with this prefix are fetched."
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the credentials, 'accesskey' and 'secretkey' for the 'generic' "
        "provider.",
    )
    service_account_name: str | None = Field(
        default=None,
        description="ServiceAccount used to authenticate; only for the 'gcp' and 'aws' providers.",
    )
    cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with TLS settings for the endpoint: 'ca.crt', and 'tls.crt' with "
        "'tls.key' for a client certificate; only for the 'generic' provider.",
    )
    proxy_secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the proxy settings used to reach the endpoint."
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN,
        description="How often the bucket is checked for updates (with jitter).",
    )
    timeout: Duration = Field(
        default="60s",
        # Flux caps fetch timeouts below an hour, as for Git.
        pattern=GIT_TIMEOUT_PATTERN,
        description="Timeout of fetch operations.",
    )
    ignore: str | None = Field(
        default=None,
        description="Exclusion patterns in .sourceignore (gitignore) format, applied to the "
        "object keys after the bucket's own .sourceignore.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this Bucket while true."
    )

    @model_validator(mode="after")
    def _flux_rules(self) -> Self:
        # The CRD's x-kubernetes-validations rules, so the model rejects what the API server does.
        sts = self.sts
        broken = [
            sts is not None and self.provider not in ("aws", "generic"),
            self.provider == "aws" and sts is not None and sts.provider != "aws",
            self.provider == "generic" and sts is not None and sts.provider != "ldap",
            sts is not None and sts.provider == "aws" and sts.secret_ref is not None,
            sts is not None and sts.provider == "aws" and sts.cert_secret_ref is not None,
            self.provider == "generic" and self.service_account_name is not None,
            self.secret_ref is not None and self.service_account_name is not None,
        ]
        for (_, message), is_broken in zip(_BUCKET_RULES, broken, strict=True):
            if is_broken:
                raise ValueError(message)
        return self


class BucketStatus(ResourceStatus):
    """The observed state of a Bucket."""

    url: str | None = Field(
        default=None, description="Download address of the artifact of the last sync."
    )
    artifact: Artifact | None = Field(
        default=None, description="The artifact of the last successful reconciliation."
    )
    observed_ignore: str | None = Field(
        default=None, description="The exclusion patterns the current artifact was built with."
    )


class Bucket(CustomResource):
    """An object storage bucket that source-controller fetches and serves as a tarball artifact."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="Bucket",
        plural="buckets",
        categories=SOURCE_CATEGORIES,
        printer_columns=(PrinterColumn("Endpoint", ".spec.endpoint"), *READY_COLUMNS),
    )

    spec: BucketSpec
    status: BucketStatus = Field(default_factory=BucketStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)


# HelmRepository

HelmRepositoryType = Literal["default", "oci"]
HelmRepositoryProvider = Literal["generic", "aws", "azure", "gcp"]
# Flux's HelmRepository.GetTimeout and GetRequeueAfter when the field is unset (or 0s).
HELM_REPOSITORY_DEFAULT_TIMEOUT = "60s"
HELM_REPOSITORY_DEFAULT_INTERVAL = "1m"


class HelmRepositorySpec(KubeModel):
    """The desired state of a HelmRepository: where the repository is and how often."""

    url: str = Field(
        pattern=r"^(http|https|oci)://.*$",
        description="URL of the Helm repository: http(s):// for an index.yaml repository, "
        "oci:// with type 'oci'.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the credentials: 'username' and 'password' for HTTP basic "
        "auth (TLS keys here are deprecated: use certSecretRef).",
    )
    cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with TLS settings: 'ca.crt', and 'tls.crt' with 'tls.key' for a "
        "client certificate; wins over TLS keys in secretRef.",
    )
    pass_credentials: bool | None = Field(
        default=None,
        description="Send the secretRef credentials to hosts other than the URL's, e.g. chart "
        "URLs of the index on another host. Enable with caution.",
    )
    interval: Duration | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How often the index is fetched (with jitter); 1m when unset. Not used "
        "with type 'oci'.",
    )
    insecure: bool | None = Field(
        default=None,
        description="Connect to a registry over plain HTTP; only with type 'oci'.",
    )
    timeout: Duration | None = Field(
        default=None,
        pattern=GIT_TIMEOUT_PATTERN,
        description="Timeout of the index fetch, and of OCI operations of the HelmCharts "
        "using this repository; 60s when unset.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this HelmRepository while true."
    )
    access_from: AccessFrom | None = Field(
        default=None,
        description="Access control list for cross-namespace references; provisional, not "
        "enforced.",
    )
    type: HelmRepositoryType | None = Field(
        default=None,
        description="'default' for an index.yaml repository, 'oci' for an OCI registry (the "
        "URL then starts with oci://).",
    )
    provider: HelmRepositoryProvider = Field(
        default="generic",
        description="Authentication provider for type 'oci': 'generic' (credentials from "
        "secretRef), 'aws', 'azure' or 'gcp'.",
    )


class HelmRepositoryStatus(ResourceStatus):
    """The observed state of a HelmRepository; empty for type 'oci'."""

    url: str | None = Field(
        default=None, description="Download address of the index artifact of the last sync."
    )
    artifact: Artifact | None = Field(
        default=None, description="The artifact of the last successful reconciliation."
    )


class HelmRepository(CustomResource):
    """A Helm repository: an index.yaml served as an artifact, or a static OCI registry path."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="HelmRepository",
        plural="helmrepositories",
        short_names=("helmrepo",),
        categories=SOURCE_CATEGORIES,
        # Flux lists Age before Ready for this kind.
        printer_columns=(PrinterColumn("URL", ".spec.url"), AGE_COLUMN, *READY_COLUMNS),
    )

    spec: HelmRepositorySpec
    status: HelmRepositoryStatus = Field(default_factory=HelmRepositoryStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds; a minute when unset or zero, as Flux requeues."""
        seconds = parse_duration(self.spec.interval or HELM_REPOSITORY_DEFAULT_INTERVAL)
        return seconds or parse_duration(HELM_REPOSITORY_DEFAULT_INTERVAL)

    @property
    def timeout_seconds(self) -> float:
        """``spec.timeout`` in seconds; a minute when unset."""
        return parse_duration(self.spec.timeout or HELM_REPOSITORY_DEFAULT_TIMEOUT)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)

    @property
    def static(self) -> bool:
        """Type 'oci': a data container, neither reconciled nor given a status (Flux)."""
        return self.spec.type == "oci"


# HelmChart

HelmChartSourceKind = Literal["HelmRepository", "GitRepository", "Bucket"]
HelmReconcileStrategy = Literal["ChartVersion", "Revision"]


class LocalHelmChartSourceReference(KubeModel):
    """The source, in the HelmChart's namespace, that holds the chart."""

    api_version: str | None = Field(default=None, description="APIVersion of the referent.")
    kind: HelmChartSourceKind = Field(
        description="Kind of the referent: HelmRepository, GitRepository or Bucket."
    )
    name: str = Field(description="Name of the referent.")


class HelmChartVerification(KubeModel):
    """How to verify the authenticity of a chart pulled from an OCI HelmRepository."""

    provider: OCIVerificationProvider = Field(
        default="cosign", description="Technology used to sign the chart."
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the trusted public keys."
    )
    match_oidc_identity: list[OIDCIdentityMatch] | None = Field(
        default=None,
        alias="matchOIDCIdentity",
        description="Identities accepted for Cosign keyless signatures; any one must match.",
    )


class HelmChartSpec(KubeModel):
    """The desired state of a HelmChart: which chart, at which versions, from which source."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.verify) || self.sourceRef.kind == 'HelmRepository'",
                    "message": "spec.verify is only supported when spec.sourceRef.kind is "
                    "'HelmRepository'",
                }
            ]
        }
    )

    chart: str = Field(description="Name or path of the chart in the source.")
    version: str = Field(
        default="*",
        description="SemVer range of the chart version; ignored for charts from GitRepository "
        "and Bucket sources. Latest stable when omitted.",
    )
    source_ref: LocalHelmChartSourceReference = Field(
        description="The source the chart is available at."
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN,
        description="How often the source is checked for a new chart (with jitter).",
    )
    reconcile_strategy: HelmReconcileStrategy = Field(
        default="ChartVersion",
        description="What makes a new artifact: a new chart version ('ChartVersion'), or "
        "also a new revision of the source ('Revision').",
    )
    values_files: list[str] | None = Field(
        default=None,
        description="Values files in the source, merged in order (the last wins) into the "
        "chart's values; values.yaml is not included unless listed.",
    )
    ignore_missing_values_files: bool | None = Field(
        default=None, description="Skip values files that are missing instead of failing."
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this HelmChart while true."
    )
    verify: HelmChartVerification | None = Field(
        default=None,
        description="Verify the chart's signature; only for HelmRepository sources of type "
        "'oci'. Dependencies not bundled in the chart are not verified.",
    )


class HelmChartStatus(ResourceStatus):
    """The observed state of a HelmChart."""

    observed_source_artifact_revision: str | None = Field(
        default=None, description="The source's artifact revision last seen."
    )
    observed_chart_name: str | None = Field(
        default=None, description="The chart name the last resolved chart reference gave."
    )
    observed_values_files: list[str] | None = Field(
        default=None, description="The values files merged into the chart of the artifact."
    )
    url: str | None = Field(
        default=None, description="Download address of the artifact of the last sync."
    )
    artifact: Artifact | None = Field(
        default=None, description="The artifact of the last successful reconciliation."
    )


class HelmChart(CustomResource):
    """A Helm chart, pulled from a HelmRepository or packaged from a source, as an artifact."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="HelmChart",
        plural="helmcharts",
        short_names=("hc",),
        categories=SOURCE_CATEGORIES,
        printer_columns=(
            PrinterColumn("Chart", ".spec.chart"),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Source Kind", ".spec.sourceRef.kind"),
            PrinterColumn("Source Name", ".spec.sourceRef.name"),
            AGE_COLUMN,
            *READY_COLUMNS,
        ),
    )

    spec: HelmChartSpec
    status: HelmChartStatus = Field(default_factory=HelmChartStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)
