"""Types shared by every weir API: object metadata, conditions and the custom resource base.

Field names are Python snake_case with the Kubernetes camelCase names as aliases; objects are
read with ``model_validate`` and written with ``model_dump(by_alias=True, exclude_none=True)``.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "MAX_DURATION_NS",
    "Artifact",
    "Condition",
    "CustomResource",
    "Duration",
    "KubeModel",
    "LocalObjectReference",
    "ObjectMeta",
    "OptionalDuration",
    "PrinterColumn",
    "ResourceInfo",
    "ResourceStatus",
    "format_duration",
    "micro_time_now",
    "object_key",
    "parse_duration",
    "parse_go_duration",
    "parse_time",
    "time_now",
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
        """``namespace/name`` (``name`` when cluster-scoped), the work queue key."""
        return object_key(
            {"metadata": {"namespace": self.metadata.namespace, "name": self.metadata.name}}
        )

    # What the runtime reads of every kind; a kind with the spec field overrides its accessor.

    @property
    def interval_seconds(self) -> float | None:
        """``spec.interval`` in seconds: how often a reconciled object is looked at again;
        None for a kind without one (the runtime's default interval applies)."""
        return None

    @property
    def retry_interval_seconds(self) -> float | None:
        """How soon a failed run is retried (Kustomization's ``spec.retryInterval``); None
        for a kind without one, which backs off per key."""
        return None

    @property
    def suspended(self) -> bool:
        """``spec.suspend``: the runtime runs no step while it is true; False for a kind
        without it."""
        return False

    @property
    def static(self) -> bool:
        """A data container the controller leaves alone (Flux's OCI HelmRepository): no
        finalizer, no status, no steps; False for every kind by default."""
        return False


# Go's time.ParseDuration, which Flux reads every duration with. Values are integer
# nanoseconds held in Go's uint64 accumulator, so the bounds and the wrap-around are Go's.
MAX_DURATION_NS = 2**63 - 1
"""The longest ``time.Duration``, 2562047h47m16.854775807s (about 292 years)."""

_UINT64 = 2**64
_LIMIT = 2**63  # Go's accumulator may reach it: -2^63ns is a valid (negative) duration
_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_FLUX_DURATION = re.compile(DURATION_PATTERN.strip("^$"))
_EXAMPLES = "use e.g. 30s, 5m, 1h30m or 750ms"
_UNITS = "units are ns, us (or \u00b5s), ms, s, m and h"
_TOO_LONG = "durations are at most 2562047h47m16.854775807s (about 292 years)"
# Values quoted in messages are cut to this many characters: a condition message has a limit.
_SHOWN_HEAD, _SHOWN_TAIL = 40, 16


def parse_go_duration(text: str) -> int:
    """Nanoseconds in ``text``, read exactly as Go's ``time.ParseDuration`` reads it: an
    optional sign, then numbers with optional fractions, each with a unit (ns, us, \u00b5s,
    ms, s, m, h), or a lone ``0``. Raises ValueError with Go's message and a hint; anything
    past 9223372036854775807ns (or below -9223372036854775808ns) is an error, as in Go."""
    negative = text[:1] == "-"
    pos = 1 if text[:1] in ("-", "+") else 0
    if text[pos:] == "0":
        return 0
    if pos == len(text):
        raise _duration_error("invalid duration", text, _EXAMPLES)
    total = 0
    while pos < len(text):
        value, pos = _component(text, pos)
        total = (total + value) % _UINT64  # Go sums in a uint64, which wraps
        if total > _LIMIT:
            raise _duration_error("invalid duration", text, _TOO_LONG)
    if negative:
        return -total
    if total > MAX_DURATION_NS:
        raise _duration_error("invalid duration", text, _TOO_LONG)
    return total


def _component(text: str, pos: int) -> tuple[int, int]:
    """The nanoseconds of the number and unit at ``pos`` (Go's loop body), and where the next
    one starts."""
    if not (text[pos] == "." or "0" <= text[pos] <= "9"):
        raise _duration_error("invalid duration", text, _EXAMPLES)
    whole, end = _leading_int(text, pos)
    if whole is None:
        raise _duration_error("invalid duration", text, _TOO_LONG)
    has_whole, pos = end != pos, end
    fraction, scale, has_fraction = 0, 1.0, False
    if pos < len(text) and text[pos] == ".":
        fraction, scale, end = _leading_fraction(text, pos + 1)
        has_fraction, pos = end != pos + 1, end
    if not has_whole and not has_fraction:
        raise _duration_error("invalid duration", text, _EXAMPLES)
    end = pos
    while end < len(text) and not (text[end] == "." or "0" <= text[end] <= "9"):
        end += 1
    if end == pos:
        raise _duration_error("missing unit in duration", text, _UNITS)
    unit = text[pos:end]
    per_unit = _NS_PER_UNIT.get(unit)
    if per_unit is None:
        raise _duration_error(f"unknown unit {_go_quote(unit)} in duration", text, _UNITS)
    if whole > _LIMIT // per_unit:
        raise _duration_error("invalid duration", text, _TOO_LONG)
    value = whole * per_unit
    if fraction > 0:
        # Go computes this in float64, so the rounding is Go's too.
        value += int(float(fraction) * (float(per_unit) / scale))
        if value > _LIMIT:
            raise _duration_error("invalid duration", text, _TOO_LONG)
    return value, end


def _leading_int(text: str, pos: int) -> tuple[int | None, int]:
    """Go's leadingInt: the digits at ``pos`` and where they end; None past 2^63."""
    value = 0
    while pos < len(text) and "0" <= text[pos] <= "9":
        if value > _LIMIT // 10:
            return None, pos
        value = value * 10 + ord(text[pos]) - ord("0")
        if value > _LIMIT:
            return None, pos
        pos += 1
    return value, pos


def _leading_fraction(text: str, pos: int) -> tuple[int, float, int]:
    """Go's leadingFraction: the digits at ``pos`` as a numerator and a float64 scale; digits
    past what a uint64 holds are consumed but no longer counted."""
    value, scale, overflow = 0, 1.0, False
    while pos < len(text) and "0" <= text[pos] <= "9":
        if not overflow:
            bigger = value * 10 + ord(text[pos]) - ord("0")
            if value > (_LIMIT - 1) // 10 or bigger > _LIMIT:
                overflow = True
            else:
                value, scale = bigger, scale * 10
        pos += 1
    return value, scale, pos


def _duration_error(problem: str, text: str, hint: str) -> ValueError:
    return ValueError(f"time: {problem} {_shown(text)}: {hint}")


def _shown(text: str) -> str:
    """``text`` quoted as Go quotes it; a long value is cut in the middle at an unescaped
    ellipsis (Go escapes every non-ASCII character, so it cannot be part of the value)."""
    if len(text) <= _SHOWN_HEAD + _SHOWN_TAIL:
        return _go_quote(text)
    head, tail = _go_quote(text[:_SHOWN_HEAD]), _go_quote(text[-_SHOWN_TAIL:])
    return f"{head[:-1]}\u2026{tail[1:]} ({len(text)} characters)"


def _go_quote(text: str) -> str:
    """Go's time.quote: ASCII as is (quote and backslash escaped), any other byte as \\xNN."""
    out = ['"']
    for char in text:
        if " " <= char < "\x80":
            out.append("\\" + char if char in '"\\' else char)
        else:
            encoded = char.encode("utf-8", "surrogatepass")
            out.extend(f"\\x{byte:02x}" for byte in encoded)
    out.append('"')
    return "".join(out)


def _check_go_duration(text: str | None) -> str | None:
    if text is not None:
        parse_go_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_check_go_duration)]
"""A duration field of an API model. The field's ``pattern`` (the CRD's, as in Flux) is checked
first; then Go's bounds, which the pattern cannot express: a value Go rejects, such as
``1000000000h``, fails validation when the object is read."""

# Not ``Duration | None``: pydantic would drop the field's pattern from that union's schema.
OptionalDuration = Annotated[str | None, AfterValidator(_check_go_duration)]
"""A ``Duration`` field that may be unset."""


def parse_duration(text: str) -> float:
    """Seconds in a duration of Flux's API such as ``1m30s`` or ``750ms``: the form the CRD
    pattern allows (no sign, units ms, s, m and h), read as Go reads it, so that what Go
    rejects (anything past 2562047h47m16.854775807s) raises ValueError here too."""
    if not _FLUX_DURATION.fullmatch(text):
        shown = repr(text) if len(text) <= _SHOWN_HEAD + _SHOWN_TAIL else _shown(text)
        raise ValueError(f"invalid duration {shown}: {_EXAMPLES}")
    return parse_go_duration(text) / 1_000_000_000


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


def object_key(obj: dict[str, Any]) -> str:
    """The work queue and cache key of a Kubernetes object: ``namespace/name``, or ``name``
    for a cluster-scoped one."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


# Times, as metav1.Time (seconds) and metav1.MicroTime (microseconds) serialise.

_TIME = "%Y-%m-%dT%H:%M:%SZ"
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def time_now() -> str:
    """Now as a metav1.Time: RFC 3339 in UTC, to the second (conditions, artifacts)."""
    return datetime.datetime.now(datetime.UTC).strftime(_TIME)


def micro_time_now() -> str:
    """Now as a metav1.MicroTime: RFC 3339 in UTC, to the microsecond (events, Leases)."""
    return datetime.datetime.now(datetime.UTC).strftime(_MICRO_TIME)


def parse_time(text: str) -> datetime.datetime | None:
    """A metav1.Time or MicroTime as an aware datetime; None if it is not one."""
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
