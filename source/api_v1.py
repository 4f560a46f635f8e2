"""The ``source.toolkit.fluxcd.io/v1`` API: GitRepository.

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
    KubeModel,
    LocalObjectReference,
    PrinterColumn,
    ResourceInfo,
    ResourceStatus,
)

__all__ = [
    "GROUP",
    "GitProvider",
    "GitRepository",
    "GitRepositoryInclude",
    "GitRepositoryRef",
    "GitRepositorySpec",
    "GitRepositoryStatus",
    "GitRepositoryVerification",
    "GitVerificationMode",
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
    interval: str = Field(
        pattern=DURATION_PATTERN,
        description="How often the repository is checked for updates (with jitter).",
    )
    timeout: str = Field(
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
