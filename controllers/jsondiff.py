"""Comparing an object with what server-side apply would make of it (fluxcd/pkg
``ssa/jsondiff``): the JSON patch between the two, the fields ignore rules leave out, and the
selectors those rules target objects with.

- :func:`compare`: the JSON patch (RFC 6902) from a live object to its dry-run: its labels and
  annotations added or changed (never removed: Kubernetes' own controllers add labels), and
  anything outside ``metadata`` and ``status``;
- :class:`IgnoreRules`: JSON pointers (RFC 6901) per selector; :meth:`IgnoreRules.paths_for`
  the pointers that apply to one object; :func:`remove_pointers` takes them out of a copy;
  :func:`lookup_pointer` and :func:`replace_pointer` read and overwrite the field one names;
- :class:`ObjectSelector`: Flux's selector (anchored regular expressions for group, version,
  kind, name, namespace; label selector expressions for labels and annotations).

Invalid rules (a bad expression, a pointer that does not start with ``/``) raise
:class:`InvalidRule` when compiled, before anything is compared.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.apitypes import Selector

__all__ = [
    "IGNORE_ROOT",
    "IgnoreRules",
    "InvalidRule",
    "ObjectSelector",
    "Operation",
    "compare",
    "escape_pointer",
    "lookup_pointer",
    "parse_label_selector",
    "remove_pointers",
    "replace_pointer",
]

IGNORE_ROOT = ""
"""The pointer to the whole object: a rule with it leaves the object out entirely."""


class InvalidRule(ValueError):
    """An ignore rule or selector that cannot be compiled; the message says which part."""


@dataclass(frozen=True)
class Operation:
    """One JSON patch operation: ``add``, ``replace`` or ``remove`` at ``path``."""

    op: str
    path: str
    value: Any = None

    def as_json(self) -> dict[str, Any]:
        """The operation as a JSON patch document holds it."""
        if self.op == "remove":
            return {"op": "remove", "path": self.path}
        return {"op": self.op, "path": self.path, "value": self.value}


# JSON pointers


def escape_pointer(token: str) -> str:
    """One reference token of a JSON pointer (``~`` and ``/`` escaped)."""
    return token.replace("~", "~0").replace("/", "~1")


def _tokens(pointer: str) -> list[str]:
    if pointer == IGNORE_ROOT:
        return []
    if not pointer.startswith("/"):
        raise InvalidRule(f"invalid JSON pointer '{pointer}': must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def remove_pointers(obj: dict[str, Any], pointers: Iterable[str]) -> None:
    """Remove each field ``pointers`` name from ``obj``, in place; a pointer to nothing there is
    no error (as Flux's ``AllowMissingPathOnRemove``)."""
    for pointer in pointers:
        tokens = _tokens(pointer)
        if not tokens:
            continue
        parent: Any = obj
        for token in tokens[:-1]:
            parent = _child(parent, token)
            if parent is None:
                break
        else:
            last = tokens[-1]
            if isinstance(parent, dict):
                parent.pop(last, None)
            elif isinstance(parent, list):
                index = _index(last, len(parent))
                if index is not None:
                    del parent[index]


def lookup_pointer(obj: Any, pointer: str) -> tuple[bool, Any]:
    """``(True, value)`` for the field ``pointer`` names in ``obj``, ``(False, None)`` when any
    part of it is not there (a field whose value is null is there)."""
    node = obj
    for token in _tokens(pointer):
        if isinstance(node, dict):
            if token not in node:
                return False, None
            node = node[token]
        elif isinstance(node, list):
            index = _index(token, len(node))
            if index is None:
                return False, None
            node = node[index]
        else:
            return False, None
    return True, node


def replace_pointer(obj: dict[str, Any], pointer: str, value: Any) -> None:
    """Set the field ``pointer`` names in ``obj`` to a copy of ``value``, in place: a JSON
    patch ``replace``, so the field must be there. Raises ``KeyError`` when it is not, and
    :class:`InvalidRule` for the root or a malformed pointer."""
    tokens = _tokens(pointer)
    if not tokens:
        raise InvalidRule("cannot replace the whole document")
    found, parent = lookup_pointer(obj, "".join(f"/{escape_pointer(t)}" for t in tokens[:-1]))
    last = tokens[-1]
    if found and isinstance(parent, dict) and last in parent:
        parent[last] = copy.deepcopy(value)
        return
    if found and isinstance(parent, list):
        index = _index(last, len(parent))
        if index is not None:
            parent[index] = copy.deepcopy(value)
            return
    raise KeyError(f"replace operation does not apply: doc is missing path: {pointer}")


def _index(token: str, length: int) -> int | None:
    if not re.fullmatch(r"-?[0-9]+", token):
        return None
    index = int(token)
    if index < 0:  # Flux allows negative indices (from the end)
        index += length
    return index if 0 <= index < length else None


def _child(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return node.get(token)
    if isinstance(node, list):
        index = _index(token, len(node))
        return None if index is None else node[index]
    return None


# Selectors

# A label selector requirement: key, operator, values (Kubernetes' labels.Parse grammar).
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_REQUIREMENT = re.compile(
    rf"^\s*(?:(?P<not>!)\s*(?P<absent>{_KEY})"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _split_requirements(expression: str) -> list[str]:
    """The comma-separated requirements, commas inside ``( )`` kept."""
    parts, depth, current = [], 0, ""
    for char in expression:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_label_selector(expression: str) -> Callable[[Mapping[str, str]], bool]:
    """A label selector expression (``app=web,tier in (a,b),!legacy``) as a matcher of a
    label (or annotation) map. Raises :class:`InvalidRule`."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    if not expression.strip():
        return lambda labels: True
    for part in _split_requirements(expression):
        found = _REQUIREMENT.match(part)
        if found is None:
            raise InvalidRule(f"invalid label selector '{expression}': cannot parse '{part}'")
        checks.append(_requirement(found))
    return lambda labels: all(check(labels) for check in checks)


def _requirement(found: re.Match[str]) -> Callable[[Mapping[str, str]], bool]:
    if found["absent"]:
        absent = found["absent"]
        return lambda labels: absent not in labels
    key = found["key"]
    if found["op"]:
        value, negated = found["value"], found["op"] == "!="
        # As Kubernetes: != also matches objects without the key.
        return lambda labels: (labels.get(key) == value) != negated
    if found["setop"]:
        values = {v.strip() for v in found["values"].split(",") if v.strip()}
        if found["setop"] == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    return lambda labels: key in labels


def _anchored(pattern: str, field: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(f"^(?:{pattern})$")
    except re.error as err:
        raise InvalidRule(f"invalid {field} regex '{pattern}': {err}") from None


@dataclass(frozen=True)
class ObjectSelector:
    """A compiled :class:`controllers.apitypes.Selector`; an empty field matches anything."""

    group: re.Pattern[str] | None
    version: re.Pattern[str] | None
    kind: re.Pattern[str] | None
    name: re.Pattern[str] | None
    namespace: re.Pattern[str] | None
    labels: Callable[[Mapping[str, str]], bool]
    annotations: Callable[[Mapping[str, str]], bool]

    @classmethod
    def compile(cls, selector: Selector) -> ObjectSelector:
        """Raises :class:`InvalidRule`."""
        return cls(
            group=_anchored(selector.group or "", "group"),
            version=_anchored(selector.version or "", "version"),
            kind=_anchored(selector.kind or "", "kind"),
            name=_anchored(selector.name or "", "name"),
            namespace=_anchored(selector.namespace or "", "namespace"),
            labels=parse_label_selector(selector.label_selector or ""),
            annotations=parse_label_selector(selector.annotation_selector or ""),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` (a manifest, as applied) is one of the selected objects."""
        meta = obj.get("metadata") or {}
        api_version = str(obj.get("apiVersion") or "")
        group, _, version = api_version.rpartition("/")
        fields = (
            (self.group, group),
            (self.version, version),
            (self.kind, str(obj.get("kind") or "")),
            (self.name, str(meta.get("name") or "")),
            (self.namespace, str(meta.get("namespace") or "")),
        )
        if any(pattern is not None and not pattern.match(value) for pattern, value in fields):
            return False
        return self.labels(meta.get("labels") or {}) and self.annotations(
            meta.get("annotations") or {}
        )


@dataclass(frozen=True)
class IgnoreRules:
    """Ignore rules, compiled: pointers, and the selector (None: every object) they apply to."""

    rules: tuple[tuple[ObjectSelector | None, tuple[str, ...]], ...] = ()

    @classmethod
    def compile(cls, rules: Iterable[tuple[Sequence[str], Selector | None]]) -> IgnoreRules:
        """From ``(paths, target)`` pairs (a Kustomization's or HelmRelease's ``ignore``).
        Raises :class:`InvalidRule`."""
        compiled = []
        for paths, target in rules:
            for path in paths:
                _tokens(path)  # refuse a malformed pointer now, not at the first object
            selector = None if target is None else ObjectSelector.compile(target)
            compiled.append((selector, tuple(paths)))
        return cls(tuple(compiled))

    def paths_for(self, obj: Mapping[str, Any]) -> list[str]:
        """The pointers ignored in ``obj``; :data:`IGNORE_ROOT` among them leaves it out."""
        return [
            path
            for selector, paths in self.rules
            if selector is None or selector.matches(obj)
            for path in paths
        ]


# Comparing


def compare(live: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Operation]:
    """The JSON patch that turns ``live`` into ``wanted`` (Flux's jsondiff ``Unstructured``):
    labels and annotations added or changed, then everything outside ``metadata`` and
    ``status``. Lists of another length are replaced whole."""
    patch: list[Operation] = []
    live_meta, wanted_meta = live.get("metadata") or {}, wanted.get("metadata") or {}
    for key in ("labels", "annotations"):
        before, after = live_meta.get(key), wanted_meta.get(key)
        if not after:
            continue
        if before is None:
            patch.append(Operation("add", f"/metadata/{key}", copy.deepcopy(after)))
            continue
        ops = _compare(before, after, f"/metadata/{key}")
        patch.extend(op for op in ops if op.op != "remove")
    body = ("metadata", "status")
    _compare_into(
        {k: v for k, v in live.items() if k not in body},
        {k: v for k, v in wanted.items() if k not in body},
        "",
        patch,
    )
    return patch


def _compare(before: Any, after: Any, path: str) -> list[Operation]:
    patch: list[Operation] = []
    _compare_into(before, after, path, patch)
    return patch


def _compare_into(before: Any, after: Any, path: str, patch: list[Operation]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() - after.keys()):
            patch.append(Operation("remove", f"{path}/{escape_pointer(key)}"))
        for key in after:
            here = f"{path}/{escape_pointer(key)}"
            if key not in before:
                patch.append(Operation("add", here, copy.deepcopy(after[key])))
            else:
                _compare_into(before[key], after[key], here, patch)
        return
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            _compare_into(old, new, f"{path}/{index}", patch)
        return
    patch.append(Operation("replace", path, copy.deepcopy(after)))
