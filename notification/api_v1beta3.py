"""The ``notification.toolkit.fluxcd.io/v1beta3`` API: Alert and Provider.

As in Flux's notification-controller (``api/v1beta3``), neither kind has a status: they are
read when an event arrives, and a problem with one is reported as an event on it (and by
``weir get alerts|alert-providers``, which checks them the same way).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from controllers.api import (
    DURATION_PATTERN,
    CustomResource,
    KubeModel,
    LocalObjectReference,
    OptionalDuration,
    ResourceInfo,
    ResourceStatus,
    parse_duration,
)
from notification.api_v1 import CATEGORIES, GROUP, CrossNamespaceObjectReference

__all__ = [
    "PROVIDER_TYPES",
    "Alert",
    "AlertSpec",
    "EventSeverity",
    "Provider",
    "ProviderSpec",
    "ProviderType",
]

VERSION = "v1beta3"
# Flux's default when spec.timeout is unset.
DEFAULT_PROVIDER_TIMEOUT_SECONDS = 15.0
# Provider timeouts have no "h" unit in Flux.
_TIMEOUT_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"

EventSeverity = Literal["info", "error"]

# Every type Flux's CRD accepts, so a Flux manifest applies unchanged; the controller refuses
# (with an event on the Provider) the types it does not implement.
ProviderType = Literal[
    "slack",
    "discord",
    "msteams",
    "rocket",
    "generic",
    "generic-hmac",
    "github",
    "gitlab",
    "gitea",
    "giteapullrequestcomment",
    "bitbucketserver",
    "bitbucket",
    "azuredevops",
    "googlechat",
    "googlepubsub",
    "webex",
    "sentry",
    "azureeventhub",
    "telegram",
    "lark",
    "matrix",
    "opsgenie",
    "alertmanager",
    "grafana",
    "githubdispatch",
    "githubpullrequestcomment",
    "gitlabmergerequestcomment",
    "pagerduty",
    "datadog",
    "nats",
    "zulip",
    "otel",
    "zoom",
    "incident.io",
]
PROVIDER_TYPES: tuple[str, ...] = ProviderType.__args__  # type: ignore[attr-defined]


class AlertSpec(KubeModel):
    """Which events an Alert forwards, and through which Provider."""

    provider_ref: LocalObjectReference = Field(
        description="The Provider, in the Alert's namespace, events are sent through."
    )
    event_severity: EventSeverity = Field(
        default="info",
        description="'info' forwards every event, 'error' only errors.",
    )
    event_sources: list[CrossNamespaceObjectReference] = Field(
        description="Objects whose events are forwarded, by kind, name (or '*') and namespace."
    )
    inclusion_list: list[str] | None = Field(
        default=None,
        description="Regular expressions (Go RE2 syntax) of which an event's message must "
        "match one to be forwarded.",
    )
    event_metadata: dict[str, str] | None = Field(
        default=None,
        description="Metadata added to every forwarded event; a key the event already has "
        "keeps the event's value.",
    )
    exclusion_list: list[str] | None = Field(
        default=None,
        description="Regular expressions (Go RE2 syntax); an event whose message matches one "
        "is not forwarded.",
    )
    summary: str | None = Field(
        default=None,
        max_length=255,
        description="Short description of the impact and affected cluster. Deprecated: use "
        "eventMetadata.",
    )
    suspend: bool | None = Field(default=None, description="Stop forwarding events.")


class Alert(CustomResource):
    """Forwards the events of chosen objects to a Provider."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP, version=VERSION, kind="Alert", plural="alerts", categories=CATEGORIES
    )

    spec: AlertSpec
    # No status in v1beta3 (kept out of the CRD).
    status: SkipJsonSchema[ResourceStatus] = Field(default_factory=ResourceStatus, exclude=True)

    @property
    def suspended(self) -> bool:
        return bool(self.spec.suspend)


class ProviderSpec(KubeModel):
    """Where and how alerts are sent."""

    type: ProviderType = Field(description="The kind of receiving service.")
    interval: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Deprecated and not used in v1beta3.",
    )
    channel: str | None = Field(
        default=None, max_length=2048, description="Destination channel, where the type has one."
    )
    username: str | None = Field(
        default=None, max_length=2048, description="Name events are posted under."
    )
    address: str | None = Field(
        default=None,
        max_length=2048,
        description="The endpoint alerts are sent to: a URL for most types; the Secret's "
        "'address' wins over it.",
    )
    timeout: OptionalDuration = Field(
        default=None,
        pattern=_TIMEOUT_PATTERN,
        description="Timeout for sending one alert; 15s when unset.",
    )
    proxy: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^(http|https)://.*$",
        description="HTTP(S) proxy address. Deprecated: use proxySecretRef.",
    )
    proxy_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the proxy's 'address' and optional 'username' and 'password'.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the credentials: 'address', 'token', 'username', 'password', "
        "'headers' (YAML map) as the type uses them.",
    )
    service_account_name: str | None = Field(
        default=None,
        description="Service account for cloud workload identity (azureeventhub, azuredevops, "
        "googlepubsub).",
    )
    cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with 'ca.crt' (server CA) and/or 'tls.crt' + 'tls.key' (client "
        "certificate).",
    )
    suspend: bool | None = Field(default=None, description="Stop sending alerts.")
    commit_status_expr: str | None = Field(
        default=None,
        description="CEL expression over 'event', 'provider' and 'alert' giving the commit "
        "status key (github, gitlab, gitea, bitbucket, bitbucketserver, azuredevops).",
    )


class Provider(CustomResource):
    """A service alerts are sent to: a chat tool, a webhook, or a Git host's commit statuses."""

    info: ClassVar[ResourceInfo] = ResourceInfo(
        group=GROUP, version=VERSION, kind="Provider", plural="providers", categories=CATEGORIES
    )

    spec: ProviderSpec
    status: SkipJsonSchema[ResourceStatus] = Field(default_factory=ResourceStatus, exclude=True)

    @property
    def suspended(self) -> bool:
        return bool(self.spec.suspend)

    @property
    def timeout_seconds(self) -> float:
        """``spec.timeout``, else Flux's 15s."""
        if self.spec.timeout is None:
            return DEFAULT_PROVIDER_TIMEOUT_SECONDS
        return parse_duration(self.spec.timeout)
