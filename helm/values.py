"""A HelmRelease's values: ``spec.valuesFrom`` and ``spec.values`` composed as Flux does, and
their digest.

:func:`compose_values` follows fluxcd/pkg ``chartutil.ChartValuesFromReferences``:

- references are read in order, each object once per composition (a second reference to an
  object that was missing is missing too, even if it has since been created);
- a missing object or key fails, unless the reference is ``optional`` (then it is skipped);
- without ``targetPath`` the key holds a YAML document (a map), merged over what came before
  with :func:`merge_maps` (maps recursively, anything else replaced, nulls kept);
- with ``targetPath``, ``spec.values`` is first merged over the result, then the value is set
  at the path with Helm's ``--set`` parser (:mod:`helm.strvals`): typed as ``--set`` types it,
  as a string when it is quoted (the quotes removed), verbatim with ``literal``;
- ``spec.values`` is merged over the result last.

Flux's ``--set`` writes in place into the maps and lists the earlier merge shares with
``spec.values``, so a value set at a path inside a map or list that ``spec.values`` brought in
survives the final merge, and one at the top level does not. This module shares the same way,
on a copy of ``spec.values``, so the outcome is Flux's.

:func:`values_digest` is ``chartutil.DigestValues(digest.Canonical, values)``: SHA-256 of the
values encoded as YAML by go-yaml v2 with keys sorted, ``sha256:<hex>``; empty values digest
the empty input. It is what Flux writes in ``status.lastAttemptedConfigDigest`` and
``status.history[].configDigest``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import structlog
import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from controllers import safeyaml
from controllers.kinds import CONFIG_MAP
from controllers.kube import ApiError, KubeClient
from controllers.secrets import SecretData, SecretError, SecretNotFound, read_secret
from helm.api_v2 import HelmRelease, ValuesReference
from helm.strvals import StrvalsError, parse_into

__all__ = [
    "VALUES_ERROR_REASON",
    "ValuesError",
    "compose_values",
    "encode_values",
    "merge_maps",
    "set_path_value",
    "values_digest",
]

log = structlog.get_logger(__name__)

VALUES_ERROR_REASON = "ValuesError"
"""Flux's ``Ready`` reason (and event reason) when the values cannot be composed."""

# Flux's ErrValuesRefReason texts.
RESOURCE_NOT_FOUND = "resource not found"
KEY_NOT_FOUND = "key not found"
VALUES_DATA_READ = "failed to read values data"
VALUE_MERGE = "failed to merge value"
UNKNOWN = "unknown error"


class ValuesError(Exception):
    """A values reference that cannot be resolved.

    ``kind``, ``name`` (``namespace/name``), ``key`` and ``optional`` say which reference;
    ``problem`` is Flux's reason text (``resource not found``, ``key not found``, ...);
    ``reason`` the condition reason. The message reads as Flux's and never holds a value.
    """

    reason = VALUES_ERROR_REASON

    def __init__(self, ref: ValuesReference, namespace: str, problem: str) -> None:
        self.kind = ref.kind
        self.name = f"{namespace}/{ref.name}"
        self.key = ref.key
        self.optional = bool(ref.optional)
        self.problem = problem
        optional = " optional" if self.optional else ""
        super().__init__(
            f"could not resolve{optional} {self.kind} chart values reference '{self.name}' "
            f"with key '{self.key}': {problem}"
        )


# Reading the references

_MISSING = object()


class _ValuesLoader(safeyaml.Loader):
    """The safe loader without YAML timestamps: Helm reads values through go-yaml v2 into
    JSON, where ``2024-01-01`` stays a string."""


_ValuesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in safeyaml.Loader.yaml_implicit_resolvers.items()
}


async def _read_object(client: KubeClient, ref: ValuesReference, namespace: str) -> Any:
    """The ConfigMap's data or the Secret's :class:`SecretData`; None when it does not exist."""
    if ref.kind == "Secret":
        try:
            return await read_secret(client, namespace, ref.name)
        except SecretNotFound:
            return None
        except SecretError as err:
            raise ValuesError(ref, namespace, err.problem) from None
    try:
        config_map = await client.get_or_none(CONFIG_MAP, namespace, ref.name)
    except ApiError as err:
        raise ValuesError(ref, namespace, f"cannot be read: {err}") from None
    return None if config_map is None else dict(config_map.get("data") or {})


def _read_key(data: Any, ref: ValuesReference, namespace: str) -> str:
    if ref.key not in data:
        raise ValuesError(ref, namespace, KEY_NOT_FOUND)
    if isinstance(data, SecretData):
        try:
            return data.text(ref.key)
        except SecretError:
            raise ValuesError(ref, namespace, VALUES_DATA_READ) from None
    return str(data[ref.key])


def _read_document(text: str, ref: ValuesReference, namespace: str) -> dict[str, Any]:
    """The YAML map in ``text`` as Helm's ReadValues reads it: the first document, empty when
    there is none; anything but a map is an error."""
    what = f"{ref.kind} '{namespace}/{ref.name}' key '{ref.key}'"
    try:
        documents = safeyaml.load_all(text, what=what, loader=_ValuesLoader)
    except safeyaml.YAMLLoadError as err:
        raise ValuesError(ref, namespace, f"{VALUES_DATA_READ}: {err}") from None
    document = documents[0] if documents else None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValuesError(ref, namespace, f"{VALUES_DATA_READ}: not a map")
    keyed: dict[str, Any] = _json_keys(document)
    return keyed


def _json_keys(value: Any) -> Any:
    """Keys as JSON has them (sigs.k8s.io/yaml turns ``1:`` or ``true:`` into strings)."""
    if isinstance(value, dict):
        return {_key_text(key): _json_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_keys(item) for item in value]
    return value


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        return _go_float(key)
    return str(key)


async def compose_values(client: KubeClient, obj: HelmRelease) -> dict[str, Any]:
    """The values of ``obj``'s release: ``spec.valuesFrom`` in order, then ``spec.values``.

    Raises :class:`ValuesError` for a reference that cannot be used.
    """
    namespace = obj.metadata.namespace or ""
    values = copy.deepcopy(obj.spec.values or {})
    result: dict[str, Any] = {}
    objects: dict[tuple[str, str], Any] = {}
    for ref in obj.spec.values_from or []:
        index = (ref.kind, ref.name)
        data = objects.get(index, _MISSING)
        if data is _MISSING:
            data = objects[index] = await _read_object(client, ref, namespace)
        if data is None or ref.key not in data:
            problem = RESOURCE_NOT_FOUND if data is None else KEY_NOT_FOUND
            if ref.optional:
                log.info(
                    "optional values reference skipped",
                    kind=ref.kind,
                    name=ref.name,
                    key=ref.key,
                    problem=problem,
                )
                continue
            raise ValuesError(ref, namespace, problem)
        text = _read_key(data, ref, namespace)
        if ref.target_path:
            result = merge_maps(result, values)
            try:
                set_path_value(result, ref.target_path, text, literal=bool(ref.literal))
            except StrvalsError as err:
                raise ValuesError(ref, namespace, f"{VALUE_MERGE}: {err}") from None
            continue
        result = merge_maps(result, _read_document(text, ref, namespace))
    return merge_maps(result, values)


# Merging


def merge_maps(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a new copy of ``base`` (Flux's MergeMaps): maps merged key by key,
    any other value of ``over`` (null included) replacing what ``base`` has. Values not merged
    are shared, not copied."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = merge_maps(below, value)
        else:
            merged[key] = value
    return merged


_LITERAL_ESCAPES = str.maketrans({char: "\\" + char for char in "\\,[]{}"})


def set_path_value(values: dict[str, Any], path: str, value: str, *, literal: bool) -> None:
    """Set ``value`` at ``path`` in ``values``, in place, as Flux's ReplacePathValue (``--set``;
    a value in single or double quotes is set unquoted, as a string) or, with ``literal``,
    ReplacePathLiteralValue (the value verbatim, ``\\.`` still escaping dots in the path).
    Raises :class:`StrvalsError`."""
    if literal:
        parse_into(f"{path}={value.translate(_LITERAL_ESCAPES)}", values, strings_only=True)
        return
    quoted = any(value.startswith(quote) and value.endswith(quote) for quote in "'\"")
    if quoted:
        parse_into(f"{path}={value.strip(chr(39) + chr(34))}", values, strings_only=True)
        return
    parse_into(f"{path}={value}", values)


# The digest


def values_digest(values: Mapping[str, Any] | None) -> str:
    """``sha256:<hex>`` of the values, as Flux's ``chartutil.DigestValues`` with
    ``digest.Canonical``."""
    return "sha256:" + hashlib.sha256(encode_values(values)).hexdigest()


def encode_values(values: Mapping[str, Any] | None) -> bytes:
    """The bytes Flux digests: empty for no values, else the values as go-yaml v2 encodes
    them, map keys sorted."""
    if not values:
        return b""
    events = [
        StreamStartEvent(encoding="utf-8"),
        DocumentStartEvent(explicit=False),
        *_value_events(values),
        DocumentEndEvent(explicit=False),
        StreamEndEvent(),
    ]
    # libyaml's emitter, which go-yaml's is a port of; go-yaml v2 wraps at 80 columns.
    text = yaml.emit(events, Dumper=_Dumper, width=80, indent=2, allow_unicode=True)
    return text.encode() if isinstance(text, str) else bytes(text)


try:
    from yaml import CDumper as _Dumper
except ImportError:  # PyYAML built without libyaml
    from yaml import Dumper as _Dumper  # type: ignore[assignment]


def _value_events(value: Any) -> Iterator[Event]:
    if isinstance(value, Mapping):
        yield MappingStartEvent(anchor=None, tag=None, implicit=True, flow_style=False)
        # Go compares keys as UTF-8 bytes, which orders as code points do.
        for key in sorted(value):
            yield _string_event(str(key))
            yield from _value_events(value[key])
        yield MappingEndEvent()
    elif isinstance(value, list | tuple):
        yield SequenceStartEvent(anchor=None, tag=None, implicit=True, flow_style=False)
        for item in value:
            yield from _value_events(item)
        yield SequenceEndEvent()
    elif isinstance(value, str):
        yield _string_event(value)
    else:
        yield _plain(_scalar_text(value))


def _plain(text: str) -> ScalarEvent:
    return ScalarEvent(anchor=None, tag=None, implicit=(True, True), value=text)


def _string_event(text: str) -> ScalarEvent:
    # go-yaml's stringv: multi-line as a literal block, plain when it reads back as a string,
    # else double-quoted; the emitter falls back from a style the text does not allow.
    if "\n" in text:
        style = "|"
    elif _reads_as_string(text):
        style = None
    else:
        style = '"'
    return ScalarEvent(anchor=None, tag=None, implicit=(True, True), value=text, style=style)


def _scalar_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # sigs.k8s.io/yaml's JSONObjectToYAMLObject makes whole floats integers.
        if math.isfinite(value) and value == int(value) and -(2**63) <= value < 2**64:
            return str(int(value))
        return _go_float(value)
    raise TypeError(f"values hold a {type(value).__name__}, which JSON has not")


def _go_float(value: float) -> str:
    """``strconv.FormatFloat(value, 'g', -1, 64)`` as go-yaml writes it."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    point = len(digit_tuple) + exponent  # where the decimal point sits after the digits' start
    if value == 0:
        point = 1
    negative = "-" if sign else ""
    shown_exponent = point - 1
    if shown_exponent < -4 or shown_exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp_sign = "-" if shown_exponent < 0 else "+"
        return f"{negative}{mantissa}e{exp_sign}{abs(shown_exponent):02d}"
    if point <= 0:
        return f"{negative}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{negative}{digits}{'0' * (point - len(digits))}"
    return f"{negative}{digits[:point]}.{digits[point:]}"


# go-yaml v2's resolve(): what a plain scalar would read back as.

_BOOLS_AND_NULLS = frozenset(
    {
        *("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"),
        *("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"),
        *("~", "null", "Null", "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF"),
        *("+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", "<<"),
    }
)
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_FLOAT = re.compile(
    r"[-+]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO]?[0-7]+|[1-9][0-9]*|0)")
_BINARY = re.compile(r"-?0b[01]+")
_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?: (\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d{1,9})?))?",
    re.ASCII,
)


def _reads_as_string(text: str) -> bool:
    if text == "" or text in _BOOLS_AND_NULLS:
        return False
    first = text[0]
    if first == ".":
        return not _GO_FLOAT.fullmatch(text)
    if first in "+-0123456789":
        if _is_timestamp(text) or _BASE60_FLOAT.fullmatch(text):
            return False
        plain = text.replace("_", "")
        if _go_int_fits(plain) or _YAML_FLOAT.fullmatch(plain):
            return False
        if _BINARY.fullmatch(plain):
            return False
    return True


def _go_int_fits(text: str) -> bool:
    """Whether ``strconv.ParseInt(text, 0, 64)`` or ``ParseUint`` accepts ``text``."""
    match = _GO_INT.fullmatch(text)
    if match is None:
        return False
    sign, digits = match.groups()
    lowered = digits.lower()
    if lowered.startswith("0x"):
        number = int(lowered[2:], 16)
    elif lowered.startswith("0b"):
        number = int(lowered[2:], 2)
    elif lowered.startswith("0o"):
        number = int(lowered[2:], 8)
    elif len(digits) > 1 and digits.startswith("0"):
        number = int(digits[1:], 8)
    else:
        number = int(digits)
    if sign == "-":
        return number <= 2**63
    return number < 2**63 or (sign == "" and number < 2**64)


def _is_timestamp(text: str) -> bool:
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return False
    _, month, day, *times = (int(part) if part else 0 for part in match.groups())
    hour, minute, second = times[0:3] if match.group(4) else times[3:6]
    return 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60
