"""The ``notification.toolkit.fluxcd.io/v1`` API: Receiver.

Field names, defaults, patterns and enums follow Flux's notification-controller v1 API
(``api/v1/receiver_types.go``, ``reference_types.go``). A Python default is also the CRD
default, so optional fields without a Flux default are ``None`` and stay out of the object.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

from pydantic import Field

from controllers.api import (
    DURATION_PATTERN,
    CustomResource,
    Duration,
    KubeModel,
    LocalObjectReference,
    PrinterColumn,
    ResourceInfo,
    ResourceStatus,
    parse_duration,
)

__all__ = [
    "GROUP",
    "RECEIVER_TYPES",
    "CrossNamespaceObjectReference",
    "EventSourceKind",
    "OIDCProvider",
    "OIDCValidation",
    "OIDCVariable",
    "Receiver",
    "ReceiverResource",
    "ReceiverSpec",
    "ReceiverStatus",
    "ReceiverType",
    "webhook_path",
]

GROUP = "notification.toolkit.fluxcd.io"
VERSION = "v1"
CATEGORIES = ("all", "fluxcd", "fluxcd-notifications")
WEBHOOK_PREFIX = "/hook/"
DEFAULT_OIDC_AUDIENCE = "notification-controller"

ReceiverType = Literal[
    "generic",
    "generic-hmac",
    "generic-oidc",
    "github",
    "gitlab",
    "bitbucket",
    "harbor",
    "dockerhub",
    "quay",
    "gcr",
    "nexus",
    "acr",
    "cdevents",
]
RECEIVER_TYPES: tuple[str, ...] = ReceiverType.__args__  # type: ignore[attr-defined]

# The kinds an Alert or a Receiver may name: every kind of the Flux controllers.
EventSourceKind = Literal[
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
    "ArtifactGenerator",
    "ExternalArtifact",
]


class CrossNamespaceObjectReference(KubeModel):
    """An object of a Flux kind, by name or ``*`` with labels, in any namespace."""

    api_version: str | None = Field(default=None, description="API version of the referent.")
    kind: EventSourceKind = Field(description="Kind of the referent.")
    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the referent; '*' selects every object of the kind.",
    )
    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Namespace of the referent; the referring object's when unset.",
    )
    match_labels: dict[str, str] | None = Field(
        default=None,
        description="Labels the referents must all have; requires the name to be '*'.",
    )


class ReceiverResource(CrossNamespaceObjectReference):
    """A resource a Receiver requests reconciles of."""

    filter: str | None = Field(
        default=None,
        description="CEL expression over 'res' (the resource) and 'req' (the webhook body) "
        "that must return true for the resource to be reconciled; in addition to "
        "spec.resourceFilter.",
    )


class OIDCVariable(KubeModel):
    """A named CEL expression over the token claims, exposed as ``vars.<name>``."""

    name: str = Field(description="Variable name; a CEL identifier.")
    expression: str = Field(description="CEL expression defining the variable's value.")


class OIDCValidation(KubeModel):
    """A CEL condition every accepted token must meet."""

    expression: str = Field(description="CEL boolean expression over the claims and vars.")
    message: str = Field(description="Returned to the caller when the expression is false.")


class OIDCProvider(KubeModel):
    """An OIDC issuer whose tokens a generic-oidc Receiver accepts."""

    issuer_url: str = Field(
        alias="issuerURL",
        pattern=r"^https?://",
        description="Issuer URL used for discovery; must equal the token's 'iss' claim.",
    )
    audience: str | None = Field(
        default=None,
        description="Expected 'aud' claim; 'notification-controller' when unset.",
    )
    variables: list[OIDCVariable] | None = Field(
        default=None, description="Named CEL expressions evaluated in order."
    )
    validations: list[OIDCValidation] = Field(
        min_length=1,
        description="CEL conditions over the claims; all must hold for a request to be accepted.",
    )


class ReceiverSpec(KubeModel):
    """What a Receiver accepts and which objects it asks to reconcile."""

    type: ReceiverType = Field(
        description="Type of webhook sender: how the request is validated and read."
    )
    interval: Duration = Field(
        default="10m",
        pattern=DURATION_PATTERN,
        description="Interval at which the Receiver is reconciled with its Secret.",
    )
    events: list[str] | None = Field(
        default=None,
        description="Event types to handle, e.g. 'push' for GitHub or 'Push Hook' for GitLab; "
        "all when empty.",
    )
    resources: list[ReceiverResource] = Field(
        description="Resources to request reconciles of when a webhook is accepted."
    )
    resource_filter: str | None = Field(
        default=None,
        description="CEL expression over 'res' and 'req' that must return true for each "
        "resource to be reconciled.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the 'token' that validates requests and derives the webhook "
        "path; required for every type but generic-oidc.",
    )
    oidc_providers: list[OIDCProvider] | None = Field(
        default=None,
        alias="oidcProviders",
        description="Issuers whose tokens a generic-oidc Receiver accepts.",
    )
    suspend: bool | None = Field(
        default=None, description="Stop handling webhooks for this Receiver."
    )


class ReceiverStatus(ResourceStatus):
    """The observed state of a Receiver."""

    webhook_path: str | None = Field(
        default=None,
        description="The webhook path, '/hook/' + sha256(token + name + namespace).",
    )


class Receiver(CustomResource):
    """Webhooks from Git hosts and registries that trigger reconciles."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP,
        version=VERSION,
        kind="Receiver",
        plural="receivers",
        categories=CATEGORIES,
        printer_columns=(
            PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            PrinterColumn("Status", '.status.conditions[?(@.type=="Ready")].message'),
        ),
    )

    spec: ReceiverSpec
    status: ReceiverStatus = Field(default_factory=ReceiverStatus)

    @property
    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds."""
        return parse_duration(self.spec.interval)

    @property
    def suspended(self) -> bool:
        """``spec.suspend``."""
        return bool(self.spec.suspend)


def webhook_path(token: str, name: str, namespace: str) -> str:
    """Flux's Receiver path: ``/hook/`` + hex sha256 of token, name and namespace."""
    digest = hashlib.sha256(f"{token}{name}{namespace}".encode()).hexdigest()
    return WEBHOOK_PREFIX + digest
