"""CustomResourceDefinitions generated from the pydantic API models.

The API server accepts only *structural* OpenAPI v3 schemas: no ``$ref``, no unions, a ``type`` on
every node, and no ``properties`` next to ``additionalProperties``. ``structural_schema`` turns a
model's JSON schema into one; ``render_crd`` wraps it into an ``apiextensions.k8s.io/v1`` CRD the
way controller-gen does for Flux.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel

from controllers.api import CustomResource, PrinterColumn, ResourceInfo

__all__ = ["AGE_COLUMN", "render_crd", "render_yaml", "structural_schema"]

AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")

# Validation keywords that mean the same in JSON Schema and in the API server's OpenAPI v3 subset.
_KEPT_KEYWORDS = (
    "description",
    "format",
    "pattern",
    "enum",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
_SCALAR_TYPES = ("string", "integer", "number", "boolean")
_NULL = {"type": "null"}

# Flux annotates its CRDs so that a Kustomization applying them never runs ${var} substitution
# over their descriptions.
_CRD_ANNOTATIONS = {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's validation schema (camelCase names) as a structural OpenAPI v3 schema.

    Raises ``ValueError`` naming the field when the model uses something a structural schema
    cannot express: unions other than ``X | None``, untyped (``Any``) fields, recursive models.
    """
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(schema, schema.get("$defs", {}), model.__name__, ())


def render_crd(models: Sequence[type[CustomResource]]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind; ``models`` are its versions, oldest first.

    Every version is served; the last one is the storage version.
    """
    if not models:
        raise ValueError("render_crd needs at least one model")
    info = models[0].info
    for model in models[1:]:
        other = model.info
        if (other.group, other.kind, other.plural, other.namespaced) != (
            info.group,
            info.kind,
            info.plural,
            info.namespaced,
        ):
            raise ValueError(f"{model.__name__} is not a version of {info.kind}.{info.group}")
    version_names = [model.info.version for model in models]
    if len(set(version_names)) != len(version_names):
        raise ValueError(f"{info.kind}.{info.group} has a version twice: {version_names}")
    if not info.group:
        raise ValueError(f"{info.kind}: custom resources need an API group")

    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{info.group}",
            "annotations": dict(_CRD_ANNOTATIONS),
        },
        "spec": {
            "group": info.group,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [
                _version(model, storage=index == len(models) - 1)
                for index, model in enumerate(models)
            ],
        },
    }


def render_yaml(models: Sequence[type[CustomResource]]) -> str:
    """``render_crd`` as a YAML document with sorted keys, so the output is byte-stable."""
    crd = render_crd(models)
    return "---\n" + yaml.safe_dump(crd, sort_keys=True, default_flow_style=False)


def _version(model: type[CustomResource], *, storage: bool) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    properties: dict[str, Any] = {
        "apiVersion": {
            "description": "The versioned schema of this representation of an object.",
            "type": "string",
        },
        "kind": {
            "description": "The REST resource this object represents, in CamelCase.",
            "type": "string",
        },
        # The API server validates metadata itself; a CRD may restrict only name and generateName.
        "metadata": {"type": "object"},
    }
    for name, node in schema["properties"].items():
        if name not in properties:
            properties[name] = _convert(node, defs, f"{model.__name__}.{name}", ())
    status = properties.get("status", {})
    if "observedGeneration" in status.get("properties", {}):
        # As in Flux: a new object reads observedGeneration -1, so kstatus sees it in progress
        # until the controller has looked at it.
        status["default"] = {"observedGeneration": -1}

    root: dict[str, Any] = {"type": "object", "properties": properties}
    if "description" in schema:
        root["description"] = schema["description"]
    if "spec" in schema.get("required", []):
        root["required"] = ["spec"]

    version: dict[str, Any] = {
        "name": model.info.version,
        "served": True,
        "storage": storage,
        "schema": {"openAPIV3Schema": root},
        "additionalPrinterColumns": _printer_columns(model.info),
    }
    if "status" in properties:
        version["subresources"] = {"status": {}}
    return version


def _printer_columns(info: ResourceInfo) -> list[dict[str, Any]]:
    columns = list(info.printer_columns)
    if not any(column.json_path == AGE_COLUMN.json_path for column in columns):
        # Flux lists Age right before Ready unless a kind places it explicitly.
        names = [column.name for column in columns]
        columns.insert(names.index("Ready") if "Ready" in names else len(columns), AGE_COLUMN)
    rendered = []
    for column in columns:
        entry: dict[str, Any] = {
            "name": column.name,
            "type": column.type,
            "jsonPath": column.json_path,
        }
        if column.description:
            entry["description"] = column.description
        if column.priority:
            entry["priority"] = column.priority
        rendered.append(entry)
    return rendered


def _convert(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> dict[str, Any]:
    node, refs = _inline(node, defs, path, refs)
    for keyword in ("anyOf", "oneOf", "allOf", "not", "prefixItems"):
        if keyword in node:
            raise ValueError(f"{path}: '{keyword}' has no structural equivalent; use one type")

    # Copies: a definition used twice must not share lists, or the YAML gets anchors.
    out: dict[str, Any] = {key: copy.deepcopy(node[key]) for key in _KEPT_KEYWORDS if key in node}
    out.update({key: value for key, value in node.items() if key.startswith("x-kubernetes-")})
    if "const" in node:
        out["enum"] = [node["const"]]
    if node.get("default") is not None:
        out["default"] = _without_nulls(node["default"])
    # JSON Schema 2020-12 spells exclusive bounds as numbers, OpenAPI v3.0 as flags on the bound.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node:
            out[bound] = node[exclusive]
            out[exclusive] = True

    kind = node.get("type")
    if kind == "object" or "properties" in node or "additionalProperties" in node:
        out.update(_convert_object(node, defs, path, refs))
    elif kind == "array":
        if "items" not in node:
            raise ValueError(f"{path}: a list needs an item type")
        items = _convert(node["items"], defs, f"{path}[]", refs)
        out["type"] = "array"
        out["items"] = items
        if node.get("uniqueItems"):
            # The API server refuses uniqueItems (quadratic); a set list type says the same.
            if items["type"] not in _SCALAR_TYPES:
                raise ValueError(f"{path}: sets of objects are not supported")
            out["x-kubernetes-list-type"] = "set"
    elif kind in _SCALAR_TYPES:
        out["type"] = kind
    else:
        raise ValueError(f"{path}: type {kind!r} is not supported; give the field a concrete type")
    return out


def _convert_object(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    properties = node.get("properties")
    extra = node.get("additionalProperties")
    free_form = extra is True or extra == {}
    if properties is not None:
        out["properties"] = {
            name: _convert(child, defs, f"{path}.{name}", refs)
            for name, child in properties.items()
        }
        if node.get("required"):
            out["required"] = sorted(node["required"])
        # Known fields plus arbitrary others (extra="allow"): keep the others instead of pruning.
        if free_form:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, Mapping):
            raise ValueError(f"{path}: typed additionalProperties next to properties")
    elif isinstance(extra, Mapping) and extra:
        out["additionalProperties"] = _convert(extra, defs, f"{path}.*", refs)
    elif extra is not False:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _inline(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Resolve ``$ref`` and unwrap ``X | None``; the outer node's keywords win."""
    merged = dict(node)
    while True:
        if "$ref" in merged:
            name = merged.pop("$ref").removeprefix("#/$defs/")
            if name in refs:
                raise ValueError(f"{path}: {name} refers to itself; CRD schemas cannot recurse")
            refs = (*refs, name)
            merged = {**defs[name], **merged}
        elif "anyOf" in merged or "allOf" in merged:
            keyword = "anyOf" if "anyOf" in merged else "allOf"
            options = [option for option in merged[keyword] if option != _NULL]
            if len(options) != 1:
                return merged, refs
            del merged[keyword]
            merged = {**options[0], **merged}
        else:
            return merged, refs


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value
