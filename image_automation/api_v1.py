"""The ``image.toolkit.fluxcd.io/v1`` API: ImageRepository, ImagePolicy and ImageUpdateAutomation.

Field names, defaults, patterns, enums and validation rules follow Flux's v1 API types
(image-reflector-controller for the first two kinds, image-automation-controller for the third).
A Python default is also the CRD default (the API server applies it), so optional fields without
a Flux default are ``None`` and stay out of the object when unset. The few types this group
shares with others (``accessFrom``, a Git reference) are declared here again, because a
controller's API module imports no other controller's.
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
    PrinterColumn,
    ResourceInfo,
    ResourceStatus,
    parse_duration,
)
from controllers.apitypes import (
    AccessFrom,
    LabelSelector,
)
from controllers.crd import AGE_COLUMN

__all__ = [
    "DEFAULT_EXCLUSION_LIST",
    "GROUP",
    "AlphabeticalPolicy",
    "CommitSpec",
    "CommitUser",
    "CrossNamespaceSourceReference",
    "GitCheckoutSpec",
    "GitRepositoryRef",
    "GitSpec",
    "ImagePolicy",
    "ImagePolicyChoice",
    "ImagePolicySpec",
    "ImagePolicyStatus",
    "ImageRef",
    "ImageRepository",
    "ImageRepositoryProvider",
    "ImageRepositorySpec",
    "ImageRepositoryStatus",
    "ImageUpdateAutomation",
    "ImageUpdateAutomationSpec",
    "ImageUpdateAutomationStatus",
    "NamespacedObjectReference",
    "NumericalPolicy",
    "PullRequestProvider",
    "PullRequestSpec",
    "PushSpec",
    "ReflectionPolicy",
    "ScanResult",
    "SemVerPolicy",
    "SigningKey",
    "SigningKeyType",
    "SortOrder",
    "TagFilter",
    "UpdateStrategy",
]

GROUP = "image.toolkit.fluxcd.io"
VERSION = "v1"
IMAGE_CATEGORIES = ("all", "fluxcd", "fluxcd-images")

# Flux caps a scan's timeout below an hour: no "h" unit.
SCAN_TIMEOUT_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"

DEFAULT_EXCLUSION_LIST = (r"^.*\.sig$",)
"""Tags left out of a scan when ``spec.exclusionList`` is empty: cosign signature tags."""

# Flux's ImagePolicy.GetInterval when the digest is reflected Always and no interval is set.
DEFAULT_DIGEST_INTERVAL = "10m"

ImageRepositoryProvider = Literal["generic", "aws", "azure", "gcp"]
ReflectionPolicy = Literal["Always", "IfNotPresent", "Never"]
SortOrder = Literal["asc", "desc"]
SigningKeyType = Literal["gpg", "ssh"]
PullRequestProvider = Literal["gitea", "github"]


# References and selectors (fluxcd/pkg apis/meta and apis/acl, metav1.LabelSelector)


class NamespacedObjectReference(KubeModel):
    """An object by name, in the referrer's namespace unless another is given."""

    name: str = Field(description="Name of the referent.")
    namespace: str | None = Field(
        default=None, description="Namespace of the referent; the referrer's when unset."
    )


# ImageRepository


class ImageRepositorySpec(KubeModel):
    """The desired state of an ImageRepository: which image's tags to scan, and how often."""

    image: str = Field(
        description="The image repository to scan, without a tag or digest, e.g. "
        "'ghcr.io/fluxcd/flux' or 'nginx' (Docker Hub)."
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN, description="How long to wait between scans."
    )
    timeout: OptionalDuration = Field(
        default=None,
        pattern=SCAN_TIMEOUT_PATTERN,
        description="Timeout of a scan; the interval when unset (at least one second).",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with registry credentials, as `kubectl create secret "
        "docker-registry` makes it.",
    )
    proxy_secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the proxy settings used to reach the registry."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description="ServiceAccount whose image pull secrets authenticate the scan.",
    )
    cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret (Opaque or kubernetes.io/tls) with TLS settings for the registry: "
        "'ca.crt', and 'tls.crt' with 'tls.key' for a client certificate.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop scanning while true; a scan under way finishes."
    )
    access_from: AccessFrom | None = Field(
        default=None,
        description="Which namespaces' ImagePolicies may refer to this ImageRepository.",
    )
    exclusion_list: list[str] = Field(
        default=list(DEFAULT_EXCLUSION_LIST),
        max_length=25,
        description="Regular expressions (Go syntax) of tags to leave out of the scan.",
    )
    provider: ImageRepositoryProvider = Field(
        default="generic",
        description="Authentication provider: 'generic' (credentials from secretRef), "
        "'aws', 'azure' or 'gcp'.",
    )
    insecure: bool | None = Field(
        default=None, description="Connect to the registry over plain HTTP."
    )


class ScanResult(KubeModel):
    """What the last scan of an image repository found."""

    revision: str | None = Field(default=None, description="A stable hash of the scanned tags.")
    tag_count: int = Field(description="How many tags the last scan found.")
    scan_time: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the last scan was made.",
    )
    latest_tags: list[str] | None = Field(
        default=None,
        description="A sample of the tags found: the first 10 in descending alphabetical order.",
    )


class ImageRepositoryStatus(ResourceStatus):
    """The observed state of an ImageRepository."""

    canonical_image_name: str | None = Field(
        default=None,
        description="The image with every implied part made explicit, e.g. "
        "'docker.io/library/alpine' for 'alpine'.",
    )
    last_scan_result: ScanResult | None = Field(
        default=None, description="What the last successful scan found."
    )
    observed_exclusion_list: list[str] | None = Field(
        default=None, description="The exclusion list the last scan result was made with."
    )


class ImageRepository(CustomResource):
    """An image repository whose tags the controller scans for ImagePolicies to choose from."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="ImageRepository",
        plural="imagerepositories",
        short_names=("imgrepo", "imagerepo"),
        categories=IMAGE_CATEGORIES,
        printer_columns=(
            PrinterColumn("Image", ".spec.image"),
            PrinterColumn("Tags", ".status.lastScanResult.tagCount"),
            *READY_COLUMNS,
            PrinterColumn("Last scan", ".status.lastScanResult.scanTime", priority=1),
            AGE_COLUMN,
        ),
    )

    spec: ImageRepositorySpec
    status: ImageRepositoryStatus = Field(default_factory=ImageRepositoryStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def timeout_seconds(self) -> float:
        """``spec.timeout``, else the interval; never under a second (Flux's GetTimeout)."""
        seconds = parse_duration(self.spec.timeout or self.spec.interval)
        return max(seconds, 1.0)

    @property
    def exclusion_list(self) -> list[str]:
        """``spec.exclusionList``, the default when empty (Flux's GetExclusionList)."""
        return list(self.spec.exclusion_list or DEFAULT_EXCLUSION_LIST)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)


# ImagePolicy

# Flux's rules on ImagePolicy's spec, as CEL for the API server and in the model below.
_POLICY_RULES = (
    (
        "!has(self.interval) || (has(self.digestReflectionPolicy) && "
        "self.digestReflectionPolicy == 'Always')",
        "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'",
    ),
    (
        "has(self.interval) || !has(self.digestReflectionPolicy) || "
        "self.digestReflectionPolicy != 'Always'",
        "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'",
    ),
)


class SemVerPolicy(KubeModel):
    """Choose the highest version inside a range."""

    range: str = Field(
        description="A semantic version range (Masterminds syntax); the highest tag inside it "
        "is the latest image."
    )


class AlphabeticalPolicy(KubeModel):
    """Choose by alphabetical order of the tags."""

    order: SortOrder = Field(
        default="asc",
        description="With the letters of the alphabet as tags, 'asc' chooses Z, 'desc' A.",
    )


class NumericalPolicy(KubeModel):
    """Choose by the numerical value of the tags."""

    order: SortOrder = Field(
        default="asc",
        description="With the numbers 0 to 9 as tags, 'asc' chooses 9, 'desc' 0.",
    )


class ImagePolicyChoice(KubeModel):
    """How the latest image is chosen: one of the policies."""

    semver: SemVerPolicy | None = Field(
        default=None, description="Choose the highest version inside a semver range."
    )
    alphabetical: AlphabeticalPolicy | None = Field(
        default=None, description="Choose by alphabetical order."
    )
    numerical: NumericalPolicy | None = Field(
        default=None, description="Choose by numerical order."
    )


class TagFilter(KubeModel):
    """Which tags are considered, and what of each is compared."""

    pattern: str | None = Field(
        default=None, description="Regular expression (Go syntax) the tags must match."
    )
    extract: str | None = Field(
        default=None,
        description="What of a matching tag is compared, from the pattern's groups (e.g. '$ts').",
    )


class ImageRef(KubeModel):
    """An image reference: name, tag and optionally digest."""

    name: str = Field(description="The image's name, without tag or digest.")
    tag: str = Field(description="The image's tag.")
    digest: str | None = Field(default=None, description="The image's digest.")


class ImagePolicySpec(KubeModel):
    """The desired state of an ImagePolicy: which repository's tags, chosen how."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": rule, "message": message} for rule, message in _POLICY_RULES
            ]
        }
    )

    image_repository_ref: NamespacedObjectReference = Field(
        description="The ImageRepository whose tags are chosen from."
    )
    policy: ImagePolicyChoice = Field(description="How the latest image is chosen.")
    filter_tags: TagFilter | None = Field(
        default=None,
        description="Which tags are considered and what of each is compared; all tags, as "
        "they are, when unset.",
    )
    digest_reflection_policy: ReflectionPolicy = Field(
        default="Never",
        description="When status.latestRef.digest is set: 'Never' (left empty), "
        "'IfNotPresent' (once, while the chosen tag stays the same) or 'Always' (looked up "
        "every interval).",
    )
    interval: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How often the digest of the chosen tag is looked up again; only with "
        "digestReflectionPolicy 'Always', 10m when unset.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this ImagePolicy while true."
    )

    @model_validator(mode="after")
    def _interval_only_with_always(self) -> Self:
        # The CRD's x-kubernetes-validations rules, so the model rejects what the API server does.
        always = self.digest_reflection_policy == "Always"
        if self.interval is not None and not always:
            raise ValueError(_POLICY_RULES[0][1])
        if self.interval is None and always:
            raise ValueError(_POLICY_RULES[1][1])
        return self


class ImagePolicyStatus(ResourceStatus):
    """The observed state of an ImagePolicy."""

    latest_ref: ImageRef | None = Field(
        default=None, description="The image the policy chooses from the repository's tags."
    )
    observed_previous_ref: ImageRef | None = Field(
        default=None, description="The latestRef before the current one."
    )


class ImagePolicy(CustomResource):
    """A rule choosing the latest image among an ImageRepository's tags."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="ImagePolicy",
        plural="imagepolicies",
        short_names=("imgpol", "imagepol"),
        categories=IMAGE_CATEGORIES,
        printer_columns=(
            PrinterColumn("Image", ".status.latestRef.name"),
            PrinterColumn("Tag", ".status.latestRef.tag"),
            *READY_COLUMNS,
            AGE_COLUMN,
        ),
    )

    spec: ImagePolicySpec
    status: ImagePolicyStatus = Field(default_factory=ImagePolicyStatus)

    @property
    def interval_seconds(self) -> float:
        """How often the digest is looked up again: ``spec.interval`` (10m when unset or zero)
        with digestReflectionPolicy 'Always'; otherwise 0, no periodic run (Flux's
        GetInterval): the policy runs when its spec or its repository's scan changes."""
        if self.spec.digest_reflection_policy != "Always":
            return 0.0
        seconds = parse_duration(self.spec.interval or DEFAULT_DIGEST_INTERVAL)
        return seconds or parse_duration(DEFAULT_DIGEST_INTERVAL)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)


# ImageUpdateAutomation


class CrossNamespaceSourceReference(KubeModel):
    """The GitRepository whose repository the automation updates."""

    api_version: str | None = Field(default=None, description="API version of the referent.")
    kind: Literal["GitRepository"] = Field(
        default="GitRepository", description="Kind of the referent."
    )
    name: str = Field(description="Name of the referent.")
    namespace: str | None = Field(
        default=None, description="Namespace of the referent; the automation's when unset."
    )


class GitRepositoryRef(KubeModel):
    """A Git reference (source.toolkit.fluxcd.io/v1 GitRepositoryRef). Precedence: commit,
    name, semver, tag, branch."""

    branch: str | None = Field(default=None, description="Branch to check out.")
    tag: str | None = Field(default=None, description="Tag to check out; wins over branch.")
    semver: str | None = Field(
        default=None, description="SemVer range of tags to check out; wins over tag."
    )
    name: str | None = Field(
        default=None,
        description="Full Git reference to check out, e.g. refs/heads/main; wins over branch, "
        "tag and semver.",
    )
    commit: str | None = Field(
        default=None, description="Commit SHA to check out; wins over every other field."
    )


class GitCheckoutSpec(KubeModel):
    """What to clone before making changes."""

    ref: GitRepositoryRef = Field(description="Branch, tag or commit to clone.")


class CommitUser(KubeModel):
    """The author of the automation's commits."""

    name: str | None = Field(default=None, description="Name of the commit author.")
    email: str = Field(description="Email of the commit author.")


class SigningKey(KubeModel):
    """A Secret with the key commits are signed with."""

    secret_ref: LocalObjectReference = Field(
        description="Secret in the automation's namespace: 'git.asc' (an armored OpenPGP key "
        "pair) and optionally 'passphrase' for type gpg; 'identity' (an SSH private key) and "
        "optionally 'password' for type ssh."
    )
    type: SigningKeyType | None = Field(
        default=None, description="The key's format: 'gpg' (when unset) or 'ssh'."
    )


class CommitSpec(KubeModel):
    """How the changes are committed."""

    author: CommitUser = Field(description="Author of the commits.")
    signing_key: SigningKey | None = Field(
        default=None, description="Key the commits are signed with (OpenPGP or SSH)."
    )
    message_template: str | None = Field(
        default=None,
        description="Template of the commit message, given the changes made ('Changed').",
    )
    message_template_values: dict[str, str] | None = Field(
        default=None, description="More values the message template may use ('Values')."
    )


class PullRequestSpec(KubeModel):
    """weir's extension of ``spec.git.push``: propose changes as pull requests instead of
    pushing them to the checkout branch. Without it, the automation pushes as Flux does."""

    provider: PullRequestProvider = Field(
        description="The Git host's API: 'gitea' or 'github' (github.com or GitHub Enterprise)."
    )
    secret_ref: LocalObjectReference = Field(
        description="Secret in the automation's namespace with the API token in 'token' (or "
        "'password'), and optionally 'ca.crt', 'tls.crt' and 'tls.key' for the API's TLS. "
        "The token needs write access to the repository's pull requests (Gitea: scope "
        "write:repository; GitHub: 'Pull requests: read and write')."
    )
    address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The API's base URL, e.g. 'https://git.example.com/api/v1' for a Gitea "
        "served under a path; derived from the GitRepository's URL when unset "
        "(Gitea: <host>/api/v1; GitHub: api.github.com, GitHub Enterprise: <host>/api/v3).",
    )
    base: str | None = Field(
        default=None,
        description="The branch the pull requests target; the checkout branch when unset.",
    )
    title: str | None = Field(
        default=None,
        description="Template of the pull requests' titles, given the same values as "
        "messageTemplate; when unset, 'Update <image> to <tag>' for a pull request of one "
        "policy, the commit message's first line otherwise. The body is the commit message "
        "and the list of changes.",
    )


class PushSpec(KubeModel):
    """Where commits are pushed."""

    branch: str | None = Field(
        default=None,
        description="Branch to push to, created from the checkout when it does not exist.",
    )
    refspec: str | None = Field(
        default=None,
        description="Git refspec to push with; with branch, the commit goes to both.",
    )
    options: dict[str, str] | None = Field(
        default=None, description="Push options sent to the Git server."
    )
    pull_request: PullRequestSpec | None = Field(
        default=None,
        description="weir extension: push to a branch of its own and open (or update) a pull "
        "request against the base branch instead. One pull request per ImagePolicy, from "
        "branch 'image-updates/<policy>', or one for every change from spec.git.push.branch "
        "when it is set.",
    )


class GitSpec(KubeModel):
    """How the automation clones, commits and pushes."""

    checkout: GitCheckoutSpec | None = Field(
        default=None,
        description="What to clone; the GitRepository's spec.ref (or its default) when unset.",
    )
    commit: CommitSpec = Field(description="How changes are committed.")
    push: PushSpec | None = Field(
        default=None,
        description="Where commits are pushed; back to the checked out branch when unset.",
    )


class UpdateStrategy(KubeModel):
    """How the files in the repository are updated."""

    strategy: Literal["Setters"] = Field(
        default="Setters", description="The update strategy: 'Setters' (field markers)."
    )
    path: str | None = Field(
        default=None,
        description="Directory of the files to update; the repository's root when unset.",
    )


class ImageUpdateAutomationSpec(KubeModel):
    """The desired state of an ImageUpdateAutomation."""

    source_ref: CrossNamespaceSourceReference = Field(
        description="The GitRepository whose repository is updated."
    )
    git: GitSpec | None = Field(
        default=None, description="How to clone, commit and push; needed in practice."
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN, description="How often the automation runs at least."
    )
    policy_selector: LabelSelector | None = Field(
        default=None,
        description="Which ImagePolicies of the namespace apply, by label; all when unset.",
    )
    update: UpdateStrategy | None = Field(
        default=UpdateStrategy(),
        description="How the files are updated; setters by default.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop running this automation while true."
    )


class ImageUpdateAutomationStatus(ResourceStatus):
    """The observed state of an ImageUpdateAutomation."""

    last_automation_run_time: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the automation last ran to the end, changes or not.",
    )
    last_push_commit: str | None = Field(
        default=None, description="SHA-1 of the last commit the automation pushed."
    )
    last_push_time: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the automation last pushed a change.",
    )
    observed_policies: dict[str, ImageRef] | None = Field(
        default=None, description="The ImagePolicies of the last run, by name, with their image."
    )
    observed_source_revision: str | None = Field(
        default=None, description="The source revision of the last run."
    )


class ImageUpdateAutomation(CustomResource):
    """Commits the images ImagePolicies choose to the files of a Git repository."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="ImageUpdateAutomation",
        plural="imageupdateautomations",
        short_names=("iua", "imgupd", "imgauto"),
        categories=IMAGE_CATEGORIES,
        printer_columns=(
            *READY_COLUMNS,
            PrinterColumn("Last run", ".status.lastAutomationRunTime", priority=1),
            AGE_COLUMN,
        ),
    )

    spec: ImageUpdateAutomationSpec
    status: ImageUpdateAutomationStatus = Field(default_factory=ImageUpdateAutomationStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)
