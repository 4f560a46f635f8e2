"""The ``helm.toolkit.fluxcd.io/v2`` API: HelmRelease.

Field names, defaults, patterns, enums and validation rules follow Flux's helm-controller v2 API
(``api/v2/*.go``) and the fluxcd/pkg types it embeds (``apis/meta``, ``apis/kustomize``). A
Python default is also the CRD default (the API server applies it), so optional fields without a
Flux default are ``None`` and stay out of the object when unset; Flux's defaults that live in
code instead (timeout 5m, maxHistory 5, the remediation strategy, ...) are the accessors below.

The reference types shared with the kustomize controller (selectors, patches, images, health
check expressions, the kubeconfig reference) are declared again here: controllers do not import
each other, and Flux too takes them from a shared package rather than from kustomize-controller.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal, Self

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
    "DEFAULT_TO_RETRY_ON_FAILURE",
    "DRIFT_DETECTION_DISABLED_VALUE",
    "DRIFT_DETECTION_METADATA_KEY",
    "FINALIZER",
    "FORCE_REQUEST_ANNOTATION",
    "GROUP",
    "MAX_RELEASE_NAME_LENGTH",
    "RESET_REQUEST_ANNOTATION",
    "SNAPSHOT_API_VERSION",
    "VERSION",
    "ActionStrategyName",
    "CRDsPolicy",
    "ChartNameChangeStrategy",
    "ChartRefKind",
    "ChartSourceKind",
    "CommonMetadata",
    "CrossNamespaceObjectReference",
    "CrossNamespaceSourceReference",
    "CustomHealthCheck",
    "DeletionPropagation",
    "DependencyReference",
    "DriftDetection",
    "DriftDetectionMode",
    "HelmChartTemplate",
    "HelmChartTemplateObjectMeta",
    "HelmChartTemplateSpec",
    "HelmChartTemplateVerification",
    "HelmRelease",
    "HelmReleaseSpec",
    "HelmReleaseStatus",
    "HelmTest",
    "IgnoreRule",
    "Image",
    "Install",
    "InstallRemediation",
    "InstallStrategy",
    "KubeConfigReference",
    "Kustomize",
    "Patch",
    "PostRenderStrategy",
    "PostRenderer",
    "ReleaseAction",
    "Remediation",
    "RemediationStrategy",
    "ResourceInventory",
    "ResourceRef",
    "Rollback",
    "SecretKeyReference",
    "Selector",
    "ServerSideApplyMode",
    "Snapshot",
    "TestFilter",
    "TestHookStatus",
    "Uninstall",
    "Upgrade",
    "UpgradeRemediation",
    "UpgradeStrategy",
    "ValuesReference",
    "WaitStrategy",
    "WaitStrategyName",
    "shorten_release_name",
]

GROUP = "helm.toolkit.fluxcd.io"
VERSION = "v2"
FINALIZER = "finalizers.fluxcd.io"

FORCE_REQUEST_ANNOTATION = "reconcile.fluxcd.io/forceAt"
"""A one-off forced release, handled when it equals ``reconcile.fluxcd.io/requestedAt``."""
RESET_REQUEST_ANNOTATION = "reconcile.fluxcd.io/resetAt"
"""A reset of the failure counters, handled when it equals ``reconcile.fluxcd.io/requestedAt``."""
DRIFT_DETECTION_METADATA_KEY = f"{GROUP}/driftDetection"
"""Label or annotation that takes one object of a release out of drift detection ..."""
DRIFT_DETECTION_DISABLED_VALUE = "disabled"
"""... when set to this value."""

DEFAULT_TO_RETRY_ON_FAILURE = False
"""Flux's ``DefaultToRetryOnFailure`` feature gate, off as in Flux: an action without a
``strategy`` remediates its failures rather than retrying them."""

SNAPSHOT_API_VERSION = "v2"
"""``status.history[].apiVersion`` of snapshots taken with Helm v4 (helm-controller 1.5+)."""

# Helm refuses longer release names (they end up in Secret names and labels).
MAX_RELEASE_NAME_LENGTH = 53
_SHORT_HASH_LENGTH = 12

_DEFAULT_TIMEOUT_SECONDS = 300.0
_DEFAULT_MAX_HISTORY = 5
_DEFAULT_RETRY_INTERVAL_SECONDS = 300.0

ChartSourceKind = Literal["HelmRepository", "GitRepository", "Bucket"]
ChartRefKind = Literal["OCIRepository", "HelmChart", "ExternalArtifact"]
DriftDetectionMode = Literal["enabled", "warn", "disabled"]
CRDsPolicy = Literal["Skip", "Create", "CreateReplace"]
ServerSideApplyMode = Literal["enabled", "disabled", "auto"]
ChartNameChangeStrategy = Literal["InPlaceUpdate", "Reinstall"]
ActionStrategyName = Literal["RemediateOnFailure", "RetryOnFailure"]
RemediationStrategy = Literal["rollback", "uninstall"]
PostRenderStrategy = Literal["nohooks", "combined", "separate"]
WaitStrategyName = Literal["poller", "legacy"]
DeletionPropagation = Literal["background", "foreground", "orphan"]
ReleaseAction = Literal["install", "upgrade", "rollback", "uninstall", "uninstall-remediation"]
"""What made a release: ``status.history[].action``. Only install and upgrade are ever
``status.lastAttemptedReleaseAction``."""

_INT64: dict[str, Any] = {"format": "int64"}
_DATE_TIME: dict[str, Any] = {"format": "date-time"}

_CHART_XOR_CHART_REF_RULE = (
    "(has(self.chart) && !has(self.chartRef)) || (!has(self.chart) && has(self.chartRef))"
)
_CHART_XOR_CHART_REF_MESSAGE = "either chart or chartRef must be set"
_KUBECONFIG_MESSAGE = (
    "exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be specified"
)
_INSTALL_RETRY_INTERVAL_RULE = "!has(self.retryInterval) || self.name != 'RemediateOnFailure'"
_INSTALL_RETRY_INTERVAL_MESSAGE = ".retryInterval cannot be set when .name is 'RemediateOnFailure'"
_UPGRADE_RETRY_INTERVAL_RULE = "!has(self.retryInterval) || self.name == 'RetryOnFailure'"
_UPGRADE_RETRY_INTERVAL_MESSAGE = ".retryInterval can only be set when .name is 'RetryOnFailure'"


def shorten_release_name(name: str) -> str:
    """The name Helm stores a release under (Flux's ``release.ShortenName``): ``name`` itself up
    to 53 characters, else its first 40 characters, a dash and the first 12 hex digits of its
    SHA-256, so that distinct long names stay distinct."""
    encoded = name.encode()
    # Go measures and cuts bytes; Kubernetes names are ASCII, where bytes are characters.
    if len(encoded) <= MAX_RELEASE_NAME_LENGTH:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:_SHORT_HASH_LENGTH]
    kept = encoded[: MAX_RELEASE_NAME_LENGTH - (_SHORT_HASH_LENGTH + 1)]
    return f"{kept.decode(errors='replace')}-{digest}"


# References


class CrossNamespaceObjectReference(KubeModel):
    """The source a chart template's chart is fetched from."""

    api_version: str | None = Field(default=None, description="API version of the source.")
    kind: ChartSourceKind = Field(description="Kind of the source.")
    name: str = Field(min_length=1, max_length=253, description="Name of the source.")
    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Namespace of the source; the HelmRelease's when unset.",
    )


class CrossNamespaceSourceReference(KubeModel):
    """The source object whose artifact is the chart (``spec.chartRef``)."""

    api_version: str | None = Field(default=None, description="API version of the source.")
    kind: ChartRefKind = Field(description="Kind of the source.")
    name: str = Field(min_length=1, max_length=253, description="Name of the source.")
    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Namespace of the source; the HelmRelease's when unset.",
    )


class DependencyReference(KubeModel):
    """A HelmRelease that must be ready before this one is reconciled."""

    name: str = Field(description="Name of the dependency.")
    namespace: str | None = Field(
        default=None, description="Namespace of the dependency; the HelmRelease's when unset."
    )
    ready_expr: str | None = Field(
        default=None,
        description="CEL expression deciding whether the dependency is ready, replacing the "
        "built-in readiness check.",
    )


class KubeConfigReference(KubeModel):
    """Where the kubeconfig of a remote cluster comes from."""

    model_config = ConfigDict(
        json_schema_extra={
            # Flux's two rules, word for word, so the API server's messages are the same.
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.configMapRef) || has(self.secretRef)",
                    "message": _KUBECONFIG_MESSAGE,
                },
                {
                    "rule": "!has(self.configMapRef) || !has(self.secretRef)",
                    "message": _KUBECONFIG_MESSAGE,
                },
            ]
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
        description="Secret holding a self-contained kubeconfig, under 'value' (or "
        "'value.yaml') unless a key is given; exclusive with configMapRef.",
    )

    @model_validator(mode="after")
    def _exactly_one_reference(self) -> Self:
        # Mirrors the CRD's x-kubernetes-validations rules.
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError(_KUBECONFIG_MESSAGE)
        return self


class ValuesReference(KubeModel):
    """A ConfigMap or Secret holding values, and where they are merged."""

    kind: Literal["Secret", "ConfigMap"] = Field(description="Kind of the object.")
    name: str = Field(
        min_length=1, max_length=253, description="Name of the object, in the same namespace."
    )
    values_key: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[\-._a-zA-Z0-9]+$",
        description="Data key holding the values (a YAML document, or one value with "
        "targetPath); 'values.yaml' when unset.",
    )
    target_path: str | None = Field(
        default=None,
        max_length=250,
        pattern=r"^([a-zA-Z0-9_\-.\\\/]|\[[0-9]{1,5}\])+$",
        description="Dotted path (Helm --set syntax) the single value is merged at; the values "
        "are merged at the root when unset.",
    )
    optional: bool | None = Field(
        default=None,
        description="Skip the reference when the object or its key does not exist; any "
        "other error still fails.",
    )
    literal: bool | None = Field(
        default=None,
        description="With targetPath, merge the value as it is (helm --set-literal) instead of "
        "reading Helm's --set syntax in it.",
    )

    @property
    def key(self) -> str:
        """``valuesKey``, ``values.yaml`` when unset (Flux's GetValuesKey)."""
        return self.values_key or "values.yaml"


# Shared with the kustomize API (fluxcd/pkg/apis/kustomize)


class CommonMetadata(KubeModel):
    """Labels and annotations set on every object of the release, overriding keys they have."""

    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations added to every object."
    )
    labels: dict[str, str] | None = Field(default=None, description="Labels added to every object.")


class IgnoreRule(KubeModel):
    """Fields left out of drift detection."""

    paths: list[str] = Field(description="JSON Pointers (RFC 6901) of the fields to ignore.")
    target: Selector | None = Field(
        default=None, description="Objects the rule applies to; every object when unset."
    )


class DriftDetection(KubeModel):
    """Whether and how changes made in the cluster to the release's objects are detected."""

    mode: DriftDetectionMode | None = Field(
        default=None,
        description="'enabled' detects and corrects drift, 'warn' only reports it, 'disabled' "
        "(the default) does neither.",
    )
    ignore: list[IgnoreRule] | None = Field(
        default=None, description="Fields left out of drift detection."
    )

    @property
    def effective_mode(self) -> DriftDetectionMode:
        """``mode``, ``disabled`` when unset (Flux's GetMode)."""
        return self.mode or "disabled"

    @property
    def detects_changes(self) -> bool:
        """True in the ``enabled`` and ``warn`` modes (Flux's MustDetectChanges)."""
        return self.effective_mode in ("enabled", "warn")


# The chart


class HelmChartTemplateObjectMeta(KubeModel):
    """Labels and annotations of the HelmChart the controller creates."""

    labels: dict[str, str] | None = Field(default=None, description="Labels of the HelmChart.")
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations of the HelmChart."
    )


class HelmChartTemplateVerification(KubeModel):
    """How to verify the signature of an OCI chart."""

    # Required with a default, as in Flux: the API server fills it in before it checks.
    model_config = ConfigDict(json_schema_extra={"required": ["provider"]})

    provider: Literal["cosign", "notation"] = Field(
        default="cosign", description="Technology the chart is signed with."
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with the trusted public keys."
    )


class HelmChartTemplateSpec(KubeModel):
    """The spec of the HelmChart the controller creates."""

    chart: str = Field(
        min_length=1,
        max_length=2048,
        description="Name of the chart in a Helm repository, or its path in a Git repository "
        "or bucket.",
    )
    version: str = Field(
        default="*",
        description="SemVer range of chart versions, the latest match wins; ignored for charts "
        "from GitRepository and Bucket sources.",
    )
    source_ref: CrossNamespaceObjectReference = Field(
        description="The source the chart is fetched from."
    )
    interval: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How often the source is checked for a new chart; the HelmRelease's "
        "interval when unset.",
    )
    reconcile_strategy: Literal["ChartVersion", "Revision"] = Field(
        default="ChartVersion",
        description="What makes a new chart artifact: a new chart version, or any new source "
        "revision.",
    )
    values_files: list[str] | None = Field(
        default=None,
        description="Values files in the source, merged in order, replacing the chart's "
        "values.yaml.",
    )
    ignore_missing_values_files: bool | None = Field(
        default=None, description="Leave out values files that do not exist instead of failing."
    )
    verify: HelmChartTemplateVerification | None = Field(
        default=None,
        description="Verification of the chart's signature; only for OCI sources, and not of "
        "dependencies that are not bundled.",
    )


class HelmChartTemplate(KubeModel):
    """The HelmChart the controller creates (and owns) in the source's namespace."""

    metadata: HelmChartTemplateObjectMeta | None = Field(
        default=None, description="Labels and annotations of the HelmChart."
    )
    spec: HelmChartTemplateSpec = Field(description="Spec of the HelmChart.")

    def interval_or(self, default: str) -> str:
        """``spec.interval``, else ``default`` (Flux's GetInterval)."""
        return self.spec.interval or default

    def namespace_or(self, default: str) -> str:
        """The source's namespace, else ``default`` (Flux's GetNamespace)."""
        return self.spec.source_ref.namespace or default


# Actions


class InstallStrategy(KubeModel):
    """What a failed install leads to."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _INSTALL_RETRY_INTERVAL_RULE,
                    "message": _INSTALL_RETRY_INTERVAL_MESSAGE,
                }
            ]
        }
    )

    name: ActionStrategyName = Field(
        description="'RemediateOnFailure' remediates as install.remediation says; "
        "'RetryOnFailure' retries the install every retryInterval without remediating."
    )
    retry_interval: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How soon a failed install is retried; 5m when unset. Only with "
        "RetryOnFailure.",
    )

    @property
    def retry_interval_seconds(self) -> float:
        """``retryInterval``, 5m when unset (Flux's GetRetryInterval)."""
        if self.retry_interval is None:
            return _DEFAULT_RETRY_INTERVAL_SECONDS
        return parse_duration(self.retry_interval)

    @model_validator(mode="after")
    def _retry_interval_needs_retry(self) -> Self:
        # Mirrors the CRD's rule, which is not the upgrade rule: see UpgradeStrategy.
        if self.retry_interval is not None and self.name == "RemediateOnFailure":
            raise ValueError(_INSTALL_RETRY_INTERVAL_MESSAGE)
        return self


class UpgradeStrategy(KubeModel):
    """What a failed upgrade leads to."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _UPGRADE_RETRY_INTERVAL_RULE,
                    "message": _UPGRADE_RETRY_INTERVAL_MESSAGE,
                }
            ]
        }
    )

    name: ActionStrategyName = Field(
        description="'RemediateOnFailure' remediates as upgrade.remediation says; "
        "'RetryOnFailure' retries the upgrade every retryInterval without remediating."
    )
    retry_interval: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How soon a failed upgrade is retried; 5m when unset. Only with "
        "RetryOnFailure.",
    )

    @property
    def retry_interval_seconds(self) -> float:
        """``retryInterval``, 5m when unset (Flux's GetRetryInterval)."""
        if self.retry_interval is None:
            return _DEFAULT_RETRY_INTERVAL_SECONDS
        return parse_duration(self.retry_interval)

    @model_validator(mode="after")
    def _retry_interval_needs_retry(self) -> Self:
        if self.retry_interval is not None and self.name != "RetryOnFailure":
            raise ValueError(_UPGRADE_RETRY_INTERVAL_MESSAGE)
        return self


class InstallRemediation(KubeModel):
    """What is done when an install (or its tests) fails: uninstall, then retry."""

    retries: int | None = Field(
        default=None,
        description="Install attempts after the first failed one, with an uninstall before "
        "each; 0 when unset, negative for no limit.",
    )
    ignore_test_failures: bool | None = Field(
        default=None,
        description="Do not remediate when the tests after an install fail; "
        "test.ignoreFailures when unset.",
    )
    remediate_last_failure: bool | None = Field(
        default=None,
        description="Uninstall after the last failure too, when no retries remain; false when "
        "unset.",
    )

    @property
    def retry_count(self) -> int:
        """``retries``, 0 when unset (Flux's GetRetries)."""
        return self.retries or 0

    def must_ignore_test_failures(self, default: bool) -> bool:
        """``ignoreTestFailures``, else ``default`` (``test.ignoreFailures``)."""
        return default if self.ignore_test_failures is None else self.ignore_test_failures

    @property
    def must_remediate_last_failure(self) -> bool:
        """``remediateLastFailure``, false when unset."""
        return bool(self.remediate_last_failure)

    @property
    def effective_strategy(self) -> RemediationStrategy:
        """``uninstall``: a failed install is always remediated by one (Flux's GetStrategy)."""
        return "uninstall"

    def failure_count(self, status: HelmReleaseStatus) -> int:
        """``status.installFailures``."""
        return status.install_failures or 0

    def retries_exhausted(self, status: HelmReleaseStatus) -> bool:
        """True once the failures outnumber the retries; never with negative retries."""
        return self.retry_count >= 0 and self.failure_count(status) > self.retry_count

    @property
    def uninstalls_after_upgrade(self) -> bool:
        """False: an install has no upgrade to undo (Flux's IsUninstallAfterUpgrade)."""
        return False


class UpgradeRemediation(KubeModel):
    """What is done when an upgrade (or its tests) fails: roll back or uninstall, then retry."""

    retries: int | None = Field(
        default=None,
        description="Upgrade attempts after the first failed one, with a remediation before "
        "each; 0 when unset, negative for no limit.",
    )
    ignore_test_failures: bool | None = Field(
        default=None,
        description="Do not remediate when the tests after an upgrade fail; "
        "test.ignoreFailures when unset.",
    )
    remediate_last_failure: bool | None = Field(
        default=None,
        description="Remediate after the last failure too, when no retries remain; true when "
        "unset and retries is above 0, else false.",
    )
    strategy: RemediationStrategy | None = Field(
        default=None,
        description="How a failed upgrade is remediated: 'rollback' (the default) or 'uninstall'.",
    )

    @property
    def retry_count(self) -> int:
        """``retries``, 0 when unset (Flux's GetRetries)."""
        return self.retries or 0

    def must_ignore_test_failures(self, default: bool) -> bool:
        """``ignoreTestFailures``, else ``default`` (``test.ignoreFailures``)."""
        return default if self.ignore_test_failures is None else self.ignore_test_failures

    @property
    def must_remediate_last_failure(self) -> bool:
        """``remediateLastFailure``; when unset, true exactly when retries is above 0."""
        if self.remediate_last_failure is None:
            return self.retry_count > 0
        return self.remediate_last_failure

    @property
    def effective_strategy(self) -> RemediationStrategy:
        """``strategy``, ``rollback`` when unset (Flux's GetStrategy)."""
        return self.strategy or "rollback"

    def failure_count(self, status: HelmReleaseStatus) -> int:
        """``status.upgradeFailures``."""
        return status.upgrade_failures or 0

    def retries_exhausted(self, status: HelmReleaseStatus) -> bool:
        """True once the failures outnumber the retries; never with negative retries."""
        return self.retry_count >= 0 and self.failure_count(status) > self.retry_count

    @property
    def uninstalls_after_upgrade(self) -> bool:
        """True when a failed upgrade is remediated by an uninstall."""
        return self.effective_strategy == "uninstall"


Remediation = InstallRemediation | UpgradeRemediation
"""Either action's remediation settings (Flux's Remediation interface): both have
``retry_count``, ``must_ignore_test_failures``, ``must_remediate_last_failure``,
``effective_strategy``, ``failure_count``, ``retries_exhausted`` and
``uninstalls_after_upgrade``."""


def _timeout_or(timeout: str | None, default_seconds: float) -> float:
    return default_seconds if timeout is None else parse_duration(timeout)


class Install(KubeModel):
    """Settings of the Helm install action."""

    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time allowed for each Kubernetes operation of the install, such as hook "
        "Jobs; spec.timeout when unset.",
    )
    strategy: InstallStrategy | None = Field(
        default=None,
        description="What a failed install leads to; 'RemediateOnFailure' when unset.",
    )
    remediation: InstallRemediation | None = Field(
        default=None,
        description="Remediation of a failed install; none (no retries) when unset.",
    )
    disable_take_ownership: bool | None = Field(
        default=None, description="Do not take over objects that exist already."
    )
    disable_wait: bool | None = Field(
        default=None, description="Do not wait for the objects to be ready after the install."
    )
    disable_wait_for_jobs: bool | None = Field(
        default=None, description="Do not wait for Jobs to complete after the install."
    )
    disable_hooks: bool | None = Field(default=None, description="Run no hooks on install.")
    disable_open_api_validation: bool | None = Field(
        default=None,
        alias="disableOpenAPIValidation",
        description="Do not validate the rendered objects against the Kubernetes OpenAPI schema.",
    )
    disable_schema_validation: bool | None = Field(
        default=None, description="Do not validate the values against the chart's JSON schema."
    )
    replace: bool | None = Field(
        default=None,
        description="Reuse the release name when it belongs to a deleted release kept in the "
        "history.",
    )
    skip_crds: bool | None = Field(
        default=None,
        alias="skipCRDs",
        description="Install no CRDs. Deprecated: use crds: Skip.",
    )
    crds: CRDsPolicy | None = Field(
        default=None,
        description="CRDs of the chart's crds/ directory: 'Skip' installs none, 'Create' (the "
        "default) creates new ones, 'CreateReplace' also replaces existing ones.",
    )
    create_namespace: bool | None = Field(
        default=None,
        description="Create the target namespace if it does not exist; it is not deleted on "
        "uninstall.",
    )
    server_side_apply: bool | None = Field(
        default=None, description="Apply the objects server-side; true when unset."
    )

    def timeout_seconds(self, default_seconds: float) -> float:
        """``timeout``, else ``default_seconds`` (the release's timeout)."""
        return _timeout_or(self.timeout, default_seconds)

    @property
    def remediation_settings(self) -> InstallRemediation:
        """``remediation``, Flux's empty one when unset (GetRemediation)."""
        return self.remediation or InstallRemediation()

    def retry(self, default_to_retry_on_failure: bool) -> InstallStrategy | None:
        """The retry strategy in force, or None when failures are remediated (GetRetry): an
        explicit RetryOnFailure strategy, or when none is set and ``default_to_retry_on_failure``
        (Flux's DefaultToRetryOnFailure feature gate) is on, RetryOnFailure with its defaults."""
        if self.strategy is None:
            return InstallStrategy(name="RetryOnFailure") if default_to_retry_on_failure else None
        return self.strategy if self.strategy.name == "RetryOnFailure" else None


class Upgrade(KubeModel):
    """Settings of the Helm upgrade action."""

    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time allowed for each Kubernetes operation of the upgrade, such as hook "
        "Jobs; spec.timeout when unset.",
    )
    strategy: UpgradeStrategy | None = Field(
        default=None,
        description="What a failed upgrade leads to; 'RemediateOnFailure' when unset.",
    )
    remediation: UpgradeRemediation | None = Field(
        default=None,
        description="Remediation of a failed upgrade; none (no retries) when unset.",
    )
    disable_take_ownership: bool | None = Field(
        default=None, description="Do not take over objects that exist already."
    )
    disable_wait: bool | None = Field(
        default=None, description="Do not wait for the objects to be ready after the upgrade."
    )
    disable_wait_for_jobs: bool | None = Field(
        default=None, description="Do not wait for Jobs to complete after the upgrade."
    )
    disable_hooks: bool | None = Field(default=None, description="Run no hooks on upgrade.")
    disable_open_api_validation: bool | None = Field(
        default=None,
        alias="disableOpenAPIValidation",
        description="Do not validate the rendered objects against the Kubernetes OpenAPI schema.",
    )
    disable_schema_validation: bool | None = Field(
        default=None, description="Do not validate the values against the chart's JSON schema."
    )
    force: bool | None = Field(
        default=None,
        description="Replace objects instead of merging into them; ignored with server-side "
        "apply, which always forces.",
    )
    preserve_values: bool | None = Field(
        default=None,
        description="Reuse the last release's values, with values merged over them; makes the "
        "release depend on its history.",
    )
    cleanup_on_fail: bool | None = Field(
        default=None, description="Delete the objects a failed upgrade created."
    )
    crds: CRDsPolicy | None = Field(
        default=None,
        description="CRDs of the chart's crds/ directory: 'Skip' (the default) touches none, "
        "'Create' creates new ones, 'CreateReplace' also replaces existing ones.",
    )
    server_side_apply: ServerSideApplyMode | None = Field(
        default=None,
        description="'enabled', 'disabled', or 'auto' (the default): as the release was "
        "applied before.",
    )
    chart_name_change_strategy: ChartNameChangeStrategy | None = Field(
        default=None,
        description="What a change of the chart's name leads to: 'Reinstall' (the default) "
        "uninstalls and installs again, 'InPlaceUpdate' upgrades.",
    )

    def timeout_seconds(self, default_seconds: float) -> float:
        """``timeout``, else ``default_seconds`` (the release's timeout)."""
        return _timeout_or(self.timeout, default_seconds)

    @property
    def remediation_settings(self) -> UpgradeRemediation:
        """``remediation``, Flux's empty one when unset (GetRemediation)."""
        return self.remediation or UpgradeRemediation()

    @property
    def effective_chart_name_change_strategy(self) -> ChartNameChangeStrategy:
        """``chartNameChangeStrategy``, ``Reinstall`` when unset."""
        return self.chart_name_change_strategy or "Reinstall"

    def retry(self, default_to_retry_on_failure: bool) -> UpgradeStrategy | None:
        """The retry strategy in force, or None when failures are remediated; as
        ``Install.retry``."""
        if self.strategy is None:
            return UpgradeStrategy(name="RetryOnFailure") if default_to_retry_on_failure else None
        return self.strategy if self.strategy.name == "RetryOnFailure" else None


class TestFilter(KubeModel):
    """One test to run or leave out."""

    # Not a pytest test class, whatever its name says.
    __test__: ClassVar[bool] = False

    name: str = Field(min_length=1, max_length=253, description="Name of the test.")
    exclude: bool | None = Field(default=None, description="Leave the named test out.")


class HelmTest(KubeModel):
    """Settings of the Helm test action (Flux's ``Test``)."""

    enable: bool | None = Field(
        default=None, description="Run the chart's tests after each install and upgrade."
    )
    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time allowed for each Kubernetes operation of the tests; spec.timeout "
        "when unset.",
    )
    ignore_failures: bool | None = Field(
        default=None,
        description="Do not remediate when tests fail; install and upgrade remediation may "
        "say otherwise.",
    )
    filters: list[TestFilter] | None = Field(
        default=None, description="Tests to run, or to leave out."
    )

    def timeout_seconds(self, default_seconds: float) -> float:
        """``timeout``, else ``default_seconds`` (the release's timeout)."""
        return _timeout_or(self.timeout, default_seconds)


class Rollback(KubeModel):
    """Settings of the Helm rollback action (remediation of failed upgrades)."""

    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time allowed for each Kubernetes operation of the rollback, such as hook "
        "Jobs; spec.timeout when unset.",
    )
    disable_wait: bool | None = Field(
        default=None, description="Do not wait for the objects to be ready after the rollback."
    )
    disable_wait_for_jobs: bool | None = Field(
        default=None, description="Do not wait for Jobs to complete after the rollback."
    )
    disable_hooks: bool | None = Field(default=None, description="Run no hooks on rollback.")
    recreate: bool | None = Field(
        default=None,
        description="Restart the pods of the workloads. Deprecated: Helm 4 dropped it; it only "
        "draws a warning.",
    )
    force: bool | None = Field(
        default=None,
        description="Replace objects instead of merging into them; ignored with server-side "
        "apply, which always forces.",
    )
    cleanup_on_fail: bool | None = Field(
        default=None, description="Delete the objects a failed rollback created."
    )
    server_side_apply: ServerSideApplyMode | None = Field(
        default=None,
        description="'enabled', 'disabled', or 'auto' (the default): as the release was "
        "applied before.",
    )

    def timeout_seconds(self, default_seconds: float) -> float:
        """``timeout``, else ``default_seconds`` (the release's timeout)."""
        return _timeout_or(self.timeout, default_seconds)


class Uninstall(KubeModel):
    """Settings of the Helm uninstall action."""

    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time allowed for each Kubernetes operation of the uninstall, such as hook "
        "Jobs; spec.timeout when unset.",
    )
    disable_hooks: bool | None = Field(default=None, description="Run no hooks on uninstall.")
    keep_history: bool | None = Field(
        default=None,
        description="Delete the objects but keep the release history, marked uninstalled.",
    )
    disable_wait: bool | None = Field(
        default=None, description="Do not wait for the objects to be deleted."
    )
    deletion_propagation: DeletionPropagation = Field(
        default="background",
        description="Propagation policy of the deletions: 'background', 'foreground' or 'orphan'.",
    )

    def timeout_seconds(self, default_seconds: float) -> float:
        """``timeout``, else ``default_seconds`` (the release's timeout)."""
        return _timeout_or(self.timeout, default_seconds)


# Post-rendering and waiting


class Kustomize(KubeModel):
    """A kustomize post-renderer: patches and image replacements over the rendered objects."""

    patches: list[Patch] | None = Field(
        default=None,
        description="Inline strategic merge and JSON 6902 patches, with selectors of the "
        "objects they apply to.",
    )
    images: list[Image] | None = Field(
        default=None, description="Replacements of image names, tags or digests."
    )


class PostRenderer(KubeModel):
    """One post-renderer, applied in the order of the list."""

    kustomize: Kustomize | None = Field(
        default=None, description="Kustomize patches and images applied to the objects."
    )


class WaitStrategy(KubeModel):
    """How Helm waits for the objects to be ready."""

    name: WaitStrategyName = Field(
        description="'poller' (the default) watches the objects' kstatus; 'legacy' is Helm v3's "
        "wait."
    )


# The release


class HelmReleaseSpec(KubeModel):
    """The desired state of a HelmRelease: which chart, with which values, and how to release."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": _CHART_XOR_CHART_REF_RULE, "message": _CHART_XOR_CHART_REF_MESSAGE}
            ]
        }
    )

    chart: HelmChartTemplate | None = Field(
        default=None,
        description="The HelmChart the controller creates for this release; exclusive with "
        "chartRef.",
    )
    chart_ref: CrossNamespaceSourceReference | None = Field(
        default=None,
        description="An OCIRepository, HelmChart or ExternalArtifact whose artifact is the "
        "chart; exclusive with chart.",
    )
    interval: Duration = Field(
        pattern=DURATION_PATTERN,
        description="How often the release is reconciled (with jitter).",
    )
    kube_config: KubeConfigReference | None = Field(
        default=None,
        description="Release into a remote cluster; with serviceAccountName, that account of "
        "the remote cluster is impersonated.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop reconciling this HelmRelease while true."
    )
    release_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=53,
        description="Name of the Helm release; '[targetNamespace-]name' when unset.",
    )
    target_namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Namespace the release is installed into; the HelmRelease's when unset.",
    )
    storage_namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Namespace Helm stores the release in; the HelmRelease's when unset.",
    )
    depends_on: list[DependencyReference] | None = Field(
        default=None,
        description="HelmReleases that must be ready before this one is reconciled.",
    )
    timeout: OptionalDuration = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time allowed for each Kubernetes operation of a Helm action, such as hook "
        "Jobs; 5m when unset.",
    )
    max_history: int | None = Field(
        default=None,
        description="Releases Helm keeps in its history; 5 when unset, 0 for no limit.",
    )
    service_account_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="ServiceAccount impersonated to reconcile the release.",
    )
    persistent_client: bool | None = Field(
        default=None,
        description="Reuse one Kubernetes client for the whole reconciliation; true when "
        "unset. Turn it off for charts that create CRDs outside Helm's CRD handling.",
    )
    drift_detection: DriftDetection | None = Field(
        default=None,
        description="Detection, and correction, of changes made in the cluster to the "
        "release's objects.",
    )
    install: Install | None = Field(default=None, description="Settings of Helm install.")
    upgrade: Upgrade | None = Field(default=None, description="Settings of Helm upgrade.")
    test: HelmTest | None = Field(default=None, description="Settings of Helm test.")
    rollback: Rollback | None = Field(default=None, description="Settings of Helm rollback.")
    uninstall: Uninstall | None = Field(default=None, description="Settings of Helm uninstall.")
    values_from: list[ValuesReference] | None = Field(
        default=None,
        description="ConfigMaps and Secrets holding values, merged in order before values.",
    )
    # Free-form JSON as in Flux, but an object: Helm values are a map, and Flux reads anything
    # else as no values at all.
    values: dict[str, Any] | None = Field(
        default=None, description="Values of the release, merged over valuesFrom."
    )
    common_metadata: CommonMetadata | None = Field(
        default=None,
        description="Labels and annotations set on every object of the release, overriding "
        "keys they already have.",
    )
    post_renderers: list[PostRenderer] | None = Field(
        default=None, description="Post-renderers applied in order to the rendered objects."
    )
    post_render_strategy: PostRenderStrategy | None = Field(
        default=None,
        description="Which objects the post-renderers see: 'combined' (the default) the "
        "templates and hooks together, 'separate' them apart, 'nohooks' no hooks (Helm 3).",
    )
    wait_strategy: WaitStrategy | None = Field(
        default=None, description="How Helm waits for the objects to be ready."
    )
    health_check_exprs: list[CustomHealthCheck] | None = Field(
        default=None,
        description="CEL health checks for custom kinds, used when an action waits with the "
        "'poller' strategy.",
    )

    @model_validator(mode="after")
    def _chart_or_chart_ref(self) -> Self:
        # Mirrors the CRD's x-kubernetes-validations rule.
        if (self.chart is None) == (self.chart_ref is None):
            raise ValueError(_CHART_XOR_CHART_REF_MESSAGE)
        return self


class TestHookStatus(KubeModel):
    """A test hook as the controller saw it run."""

    __test__: ClassVar[bool] = False

    last_started: str | None = Field(
        default=None, json_schema_extra=_DATE_TIME, description="When the hook last started."
    )
    last_completed: str | None = Field(
        default=None, json_schema_extra=_DATE_TIME, description="When the hook last completed."
    )
    phase: str | None = Field(default=None, description="Phase the hook was seen in.")


class Snapshot(KubeModel):
    """One Helm release the controller made, as kept in ``status.history``."""

    api_version: str | None = Field(
        default=None,
        description="How the digests were computed: 'v2' since Helm v4; none before.",
    )
    digest: str = Field(description="Checksum of the stored release, '<algorithm>:<hex>'.")
    name: str = Field(description="Name of the release.")
    namespace: str = Field(description="Namespace the release is installed into.")
    version: int = Field(description="Version of the release in Helm's storage.")
    status: str = Field(description="State of the release, e.g. deployed or superseded.")
    # A string rather than ReleaseAction: Flux's CRD has no enum here.
    action: str | None = Field(default=None, description="The action that made the release.")
    chart_name: str = Field(description="Name of the release's chart.")
    chart_version: str = Field(description="Version of the release's chart.")
    app_version: str | None = Field(default=None, description="App version of the chart.")
    config_digest: str = Field(description="Checksum of the release's values, '<algorithm>:<hex>'.")
    first_deployed: str = Field(
        json_schema_extra=_DATE_TIME, description="When the release was first deployed."
    )
    last_deployed: str = Field(
        json_schema_extra=_DATE_TIME, description="When the release was last deployed."
    )
    deleted: str | None = Field(
        default=None, json_schema_extra=_DATE_TIME, description="When the release was deleted."
    )
    test_hooks: dict[str, TestHookStatus] | None = Field(
        default=None,
        description="The test hooks the controller saw run, by name; empty when the chart has "
        "no selected tests.",
    )
    oci_digest: str | None = Field(
        default=None, description="Digest of the OCI artifact the chart came from."
    )

    @property
    def full_release_name(self) -> str:
        """``<namespace>/<name>.v<version>``, as Flux names a release in messages."""
        return f"{self.namespace}/{self.name}.v{self.version}"

    @property
    def versioned_chart_name(self) -> str:
        """``<chart>@<version>``."""
        return f"{self.chart_name}@{self.chart_version}"

    def has_test_in_phase(self, phase: str) -> bool:
        """True if any test hook was seen in ``phase``."""
        return any(hook.phase == phase for hook in (self.test_hooks or {}).values())

    @property
    def has_been_tested(self) -> bool:
        """True once the tests ran: none were selected, one failed, or all succeeded."""
        if self.test_hooks is None:
            return False
        hooks = self.test_hooks.values()
        if not hooks or any(hook.phase == "Failed" for hook in hooks):
            return True
        return all(hook.phase == "Succeeded" for hook in hooks)


class ResourceRef(KubeModel):
    """One object of the release."""

    id: str = Field(description="'<namespace>_<name>_<group>_<kind>' of the object.")
    v: str = Field(description="API version of the object's kind.")


class ResourceInventory(KubeModel):
    """The objects of the release."""

    entries: list[ResourceRef] = Field(description="The release's objects.")


class HelmReleaseStatus(ResourceStatus):
    """The observed state of a HelmRelease."""

    observed_generation: int | None = Field(
        default=None,
        json_schema_extra=_INT64,
        description="The last generation the controller acted on.",
    )
    observed_post_renderers_digest: str | None = Field(
        default=None,
        description="Digest of the post-renderers of the last successful reconciliation.",
    )
    observed_common_metadata_digest: str | None = Field(
        default=None,
        description="Digest of the common metadata of the last successful reconciliation.",
    )
    last_attempted_generation: int | None = Field(
        default=None,
        json_schema_extra=_INT64,
        description="The last generation the controller tried to reconcile.",
    )
    helm_chart: str | None = Field(
        default=None,
        description="'<namespace>/<name>' of the HelmChart the controller made for the release.",
    )
    storage_namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Namespace Helm stores the current release in.",
    )
    history: list[Snapshot] | None = Field(
        default=None,
        description="The releases the controller made, newest first, back to the last "
        "successful one.",
    )
    inventory: ResourceInventory | None = Field(
        default=None, description="The objects of the current release."
    )
    last_attempted_release_action: Literal["install", "upgrade"] | None = Field(
        default=None,
        description="The last release action tried; it decides which retry and remediation "
        "settings apply.",
    )
    last_attempted_release_action_duration: str | None = Field(
        default=None, description="How long the last release action took."
    )
    failures: int | None = Field(
        default=None,
        json_schema_extra=_INT64,
        description="Failed reconciliations of the current desired state; reset on success.",
    )
    install_failures: int | None = Field(
        default=None,
        json_schema_extra=_INT64,
        description="Failed installs of the current desired state; reset on success.",
    )
    upgrade_failures: int | None = Field(
        default=None,
        json_schema_extra=_INT64,
        description="Failed upgrades of the current desired state; reset on success.",
    )
    last_attempted_revision: str | None = Field(
        default=None,
        description="Chart revision of the last attempt; for OCI sources the chart version "
        "with '+' and the first 12 digest characters.",
    )
    last_attempted_revision_digest: str | None = Field(
        default=None, description="Digest of the last attempt's chart; OCI sources only."
    )
    last_attempted_values_checksum: str | None = Field(
        default=None,
        description="SHA-1 of the last attempt's values. Deprecated: see "
        "lastAttemptedConfigDigest.",
    )
    last_release_revision: int | None = Field(
        default=None,
        description="Version of the last successful release. Deprecated: see history.",
    )
    last_attempted_config_digest: str | None = Field(
        default=None, description="Digest of the last attempt's values."
    )
    last_handled_reset_at: str | None = Field(
        default=None,
        description="The last reconcile.fluxcd.io/resetAt value the controller handled.",
    )
    last_handled_force_at: str | None = Field(
        default=None,
        description="The last reconcile.fluxcd.io/forceAt value the controller handled.",
    )

    @property
    def helm_chart_key(self) -> tuple[str, str]:
        """Namespace and name of ``helmChart``; empty strings when it has no '/' (Flux's
        GetHelmChart)."""
        parts = (self.helm_chart or "").split("/")
        return (parts[0], parts[1]) if len(parts) > 1 else ("", "")

    @property
    def latest_snapshot(self) -> Snapshot | None:
        """The history entry of the highest release version."""
        return max(self.history or (), key=lambda snapshot: snapshot.version, default=None)


class HelmRelease(CustomResource):
    """A Helm chart released into the cluster with values, kept as declared."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="HelmRelease",
        plural="helmreleases",
        short_names=("hr",),
        categories=("all", "fluxcd", "fluxcd-appliers"),
        printer_columns=READY_COLUMNS,
    )

    spec: HelmReleaseSpec
    status: HelmReleaseStatus = Field(default_factory=HelmReleaseStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)

    @property
    def retry_interval_seconds(self) -> float | None:
        """After a failed release action whose strategy is ``RetryOnFailure``: its
        ``retryInterval`` (Flux requeues after it); None otherwise, the per-key backoff."""
        retry = self.active_retry(DEFAULT_TO_RETRY_ON_FAILURE)
        if retry is None or not self.status.failures:
            return None
        return retry.retry_interval_seconds

    @property
    def timeout_seconds(self) -> float:
        """``spec.timeout``, 5m when unset (Flux's GetTimeout); each action's own timeout
        falls back to it."""
        return _timeout_or(self.spec.timeout, _DEFAULT_TIMEOUT_SECONDS)

    @property
    def max_history(self) -> int:
        """``spec.maxHistory``, 5 when unset; 0 keeps every release."""
        return _DEFAULT_MAX_HISTORY if self.spec.max_history is None else self.spec.max_history

    @property
    def persistent_client(self) -> bool:
        """``spec.persistentClient``, true when unset."""
        return True if self.spec.persistent_client is None else self.spec.persistent_client

    @property
    def release_name(self) -> str:
        """``spec.releaseName``, else ``<targetNamespace>-<name>``, else the HelmRelease's
        name (Flux's GetReleaseName): the name Flux's messages use."""
        if self.spec.release_name:
            return self.spec.release_name
        if self.spec.target_namespace:
            return f"{self.spec.target_namespace}-{self.metadata.name}"
        return self.metadata.name

    @property
    def helm_release_name(self) -> str:
        """The name Helm stores the release under: ``release_name`` shortened to 53
        characters as Flux shortens it."""
        return shorten_release_name(self.release_name)

    @property
    def release_namespace(self) -> str:
        """``spec.targetNamespace``, else the HelmRelease's namespace."""
        return self.spec.target_namespace or self.metadata.namespace or ""

    @property
    def storage_namespace(self) -> str:
        """``spec.storageNamespace``, else the HelmRelease's namespace."""
        return self.spec.storage_namespace or self.metadata.namespace or ""

    @property
    def helm_chart_name(self) -> str:
        """Name of the HelmChart made from ``spec.chart``: ``<namespace>-<name>``."""
        return f"{self.metadata.namespace or ''}-{self.metadata.name}"

    @property
    def drift_detection(self) -> DriftDetection:
        """``spec.driftDetection``, disabled when unset."""
        return self.spec.drift_detection or DriftDetection()

    @property
    def install(self) -> Install:
        """``spec.install``, Flux's empty settings when unset."""
        return self.spec.install or Install()

    @property
    def upgrade(self) -> Upgrade:
        """``spec.upgrade``, Flux's empty settings when unset."""
        return self.spec.upgrade or Upgrade()

    @property
    def test(self) -> HelmTest:
        """``spec.test``, Flux's empty settings (tests off) when unset."""
        return self.spec.test or HelmTest()

    @property
    def rollback(self) -> Rollback:
        """``spec.rollback``, Flux's empty settings when unset."""
        return self.spec.rollback or Rollback()

    @property
    def uninstall(self) -> Uninstall:
        """``spec.uninstall``, Flux's empty settings when unset."""
        return self.spec.uninstall or Uninstall()

    @property
    def active_remediation(self) -> Remediation | None:
        """The remediation settings of ``status.lastAttemptedReleaseAction``; None before
        any release action (Flux's GetActiveRemediation)."""
        action = self.status.last_attempted_release_action
        if action == "install":
            return self.install.remediation_settings
        if action == "upgrade":
            return self.upgrade.remediation_settings
        return None

    def active_retry(
        self, default_to_retry_on_failure: bool
    ) -> InstallStrategy | UpgradeStrategy | None:
        """The retry strategy of ``status.lastAttemptedReleaseAction``, or None when its
        failures are remediated instead (Flux's GetActiveRetry)."""
        action = self.status.last_attempted_release_action
        if action == "install":
            return self.install.retry(default_to_retry_on_failure)
        if action == "upgrade":
            return self.upgrade.retry(default_to_retry_on_failure)
        return None

    @property
    def values(self) -> dict[str, Any]:
        """``spec.values``, empty when unset."""
        return dict(self.spec.values or {})

    @property
    def dependencies(self) -> list[tuple[str, str]]:
        """``(namespace, name)`` of each ``spec.dependsOn`` entry, the HelmRelease's namespace
        where one has none."""
        return [
            (dependency.namespace or self.metadata.namespace or "", dependency.name)
            for dependency in self.spec.depends_on or ()
        ]
