"""Types shared by every weir API: object metadata, conditions and the custom resource base.

Field names are Python snake_case with the Kubernetes camelCase names as aliases; objects are
read with ``model_validate`` and written with ``model_dump(by_alias=True, exclude_none=True)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "Artifact",
    "Condition",
    "CustomResource",
    "KubeModel",
    "LocalObjectReference",
    "ObjectMeta",
    "PrinterColumn",
    "ResourceInfo",
    "ResourceStatus",
    "format_duration",
    "parse_duration",
]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


class KubeModel(BaseModel):
    """Base for API structs: camelCase on the wire, unknown fields kept out."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        """The object as the API server expects it."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(KubeModel):
    """The parts of metav1.ObjectMeta the controllers read; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None


class Condition(KubeModel):
    """metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    reason: str = Field(
        max_length=1024, min_length=1, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    message: str = Field(max_length=32768)


class LocalObjectReference(KubeModel):
    """A reference to an object in the same namespace."""

    name: str = Field(description="Name of the referent.")


class Artifact(KubeModel):
    """The output of a source reconciliation: a file served over HTTP by the source controller."""

    path: str = Field(description="Path of the file relative to the root of the artifact storage.")
    url: str = Field(description="HTTP address the file can be downloaded from.")
    revision: str = Field(
        description="Human-readable identifier of what the artifact was built from, "
        "e.g. main@sha1:<commit> or a chart version."
    )
    digest: str = Field(
        pattern=r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$",
        description="Digest of the file, '<algorithm>:<checksum>'.",
    )
    last_update_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the artifact was last updated.",
    )
    size: int | None = Field(
        default=None,
        json_schema_extra={"format": "int64"},
        description="Size of the file in bytes.",
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="Upstream information, such as OCI annotations."
    )


class ResourceStatus(KubeModel):
    """The status fields every weir object has."""

    observed_generation: int | None = Field(
        default=None, description="The last generation the controller acted on."
    )
    conditions: list[Condition] | None = None
    last_handled_reconcile_at: str | None = Field(
        default=None,
        description="The last reconcile.fluxcd.io/requestedAt value the controller handled.",
    )


@dataclass(frozen=True)
class PrinterColumn:
    """One additionalPrinterColumns entry."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


READY_COLUMNS = (
    PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
    PrinterColumn("Status", '.status.conditions[?(@.type=="Ready")].message'),
)


@dataclass(frozen=True)
class ResourceInfo:
    """Where a kind lives in the API, and how kubectl shows it."""

    group: str
    version: str
    kind: str
    plural: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    printer_columns: tuple[PrinterColumn, ...] = field(default=())
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


class CustomResource(KubeModel):
    """Base of every weir kind. Subclasses set ``info`` and declare ``spec`` and ``status``."""

    info: ClassVar[ResourceInfo]

    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    status: ResourceStatus = Field(default_factory=ResourceStatus)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Self:
        return cls.model_validate(obj)

    @property
    def key(self) -> str:
        """``namespace/name``, the work queue key."""
        ns = self.metadata.namespace
        return f"{ns}/{self.metadata.name}" if ns else self.metadata.name

    @property
    def suspended(self) -> bool:
        """``spec.suspend``, for kinds that have it."""
        return bool(getattr(getattr(self, "spec", None), "suspend", False))


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``1m30s`` or ``750ms`` (Flux's allowed units)."""
    if not re.fullmatch(DURATION_PATTERN.strip("^$"), text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m or 750ms")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """``seconds`` as Go prints a ``time.Duration`` (``5m0s``, ``1h0m0s``, ``1.5s``, ``250ms``),
    to the millisecond, for messages that read like Flux's."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if abs(millis) < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs
