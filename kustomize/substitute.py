"""Flux's post-build variable substitution (``spec.postBuild``) on built objects.

:func:`load_variables` gathers the variables of a Kustomization: the data of the ConfigMaps and
Secrets in ``postBuild.substituteFrom``, in order (a later one wins), then the inline
``postBuild.substitute`` map, which wins over all of them. As in Flux, newlines are removed from
every value.

:func:`substitute_objects` runs the substitution on each object the way Flux does: the object
is written out as YAML, the text is expanded, and the result is read back, so a value can change
the type of what it lands in (``replicas: ${count}`` becomes a number). Objects labelled or
annotated ``kustomize.toolkit.fluxcd.io/substitute: disabled`` are left alone, and nothing at
all is substituted when there are no variables (Flux's default ``substituteStrategy``).

:func:`expand` is the expansion itself, with the syntax of Flux's envsubst (a fork of
drone/envsubst): ``${var}``; the defaults ``${var:=word}``, ``${var:-word}``, ``${var=word}``,
``${var:+word}`` and ``${var:?word}``, which all mean "``word`` when ``var`` is empty or unset"
(envsubst gives ``:+`` and ``:?`` no bash meaning of their own); ``${#var}``; ``${var^}``,
``${var^^}``, ``${var,}``, ``${var,,}``; ``${var:offset}``, ``${var:offset:length}``;
``${var#glob}``, ``${var##glob}``, ``${var%glob}``, ``${var%%glob}``; ``${var/from/to}``,
``${var//from/to}``, ``${var/#from/to}``, ``${var/%from/to}``. ``$var`` without braces is left
as it is, and ``$$`` is a literal ``$``, so ``$${var}`` writes ``${var}``. An unset variable
expands to the empty string, or with ``strict`` (Flux's ``StrictPostBuildSubstitutions`` feature
gate) is an error unless a default operator handles it.

The substituted text is bounded (:data:`MAX_EXPANDED_CHARS`) and read back with
:mod:`controllers.safeyaml`, within its default limits: a value holding YAML aliases cannot make
an object expand past them, here or in anything that reads the object later.

Every error is a :class:`SubstitutionError` naming the object, the variable or the ConfigMap or
Secret at fault; never a variable's value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from controllers import safeyaml
from controllers.kinds import CONFIG_MAP
from controllers.kube import ApiError, KubeClient
from controllers.secrets import SecretError, SecretNotFound, read_secret
from kustomize.api_v1 import PostBuild, SubstituteReference

__all__ = [
    "MAX_EXPANDED_CHARS",
    "MAX_NESTING",
    "SUBSTITUTE_KEY",
    "VARIABLE_NAME_PATTERN",
    "SubstitutionError",
    "expand",
    "load_variables",
    "substitute_objects",
]

# Flux's pattern, as its error messages show it; POSIX classes in Go's regexp are ASCII only.
VARIABLE_NAME_PATTERN = "^[_[:alpha:]][_[:alpha:][:digit:]]*$"
_VARIABLE_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
SUBSTITUTE_KEY = "kustomize.toolkit.fluxcd.io/substitute"
DISABLED = "disabled"
# Flux has no limit; this one keeps a hostile manifest from exhausting the Python stack.
MAX_NESTING = 32
# Flux has no limit either: without one, many references to a long value, or a replacement
# pattern that matches everywhere, grow an object without bound. Substituted text is read back
# as YAML, whose own limit it matches.
MAX_EXPANDED_CHARS = safeyaml.DEFAULT_LIMITS.max_bytes


class SubstitutionError(Exception):
    """Variables could not be loaded, or an object could not be substituted; the message says
    which object, variable or source, never a value."""


# Loading variables


async def load_variables(
    client: KubeClient, namespace: str, post_build: PostBuild | None
) -> dict[str, str]:
    """The variables ``post_build`` defines for a Kustomization in ``namespace``.

    ``substituteFrom`` sources are read in order, later ones overwriting earlier ones; the inline
    ``substitute`` map overwrites them all. A missing source is an error unless it is
    ``optional``. Secret values are base64-decoded; newlines are removed from every value.
    """
    variables: dict[str, str] = {}
    if post_build is None:
        return variables
    for reference in post_build.substitute_from or ():
        variables.update(await _read_source(client, namespace, reference))
    for name, value in (post_build.substitute or {}).items():
        variables[name] = value.replace("\n", "")
    return variables


async def _read_source(
    client: KubeClient, namespace: str, reference: SubstituteReference
) -> dict[str, str]:
    where = f"{reference.kind} '{namespace}/{reference.name}'"
    if reference.kind == "Secret":
        try:
            secret = await read_secret(client, namespace, reference.name)
            # Decoded leniently: a Secret may hold binary values beside its variables, and
            # Flux takes every value as it is.
            return {
                key: secret.binary(key).decode(errors="replace").replace("\n", "") for key in secret
            }
        except SecretNotFound:
            if reference.optional:
                return {}
            raise SubstitutionError(f"substituteFrom {where} not found") from None
        except SecretError as err:
            raise SubstitutionError(f"substituteFrom {where}: {err.detail}") from None
    if reference.kind != "ConfigMap":
        raise SubstitutionError(f"substituteFrom {where}: kind must be ConfigMap or Secret")
    try:
        obj = await client.get_or_none(CONFIG_MAP, namespace, reference.name)
    except ApiError as err:
        raise SubstitutionError(f"substituteFrom {where}: cannot be read: {err}") from None
    if obj is None:
        if reference.optional:
            return {}
        raise SubstitutionError(f"substituteFrom {where} not found")
    data: Mapping[str, str] = obj.get("data") or {}
    return {key: value.replace("\n", "") for key, value in data.items()}


# Substituting objects


def substitute_objects(
    objects: Iterable[Mapping[str, Any]],
    variables: Mapping[str, str],
    *,
    strict: bool = False,
    always: bool = False,
) -> list[dict[str, Any]]:
    """``objects`` with ``variables`` substituted, in the same order.

    Nothing is substituted when ``variables`` is empty unless ``always`` (Flux's
    ``substituteStrategy: Always``). Objects opted out with the ``substitute: disabled`` label
    or annotation, and objects with no ``$`` in them, are returned as they are; the others are
    new objects. ``strict`` makes an unset variable without a default an error.
    """
    active = bool(variables) or always
    checked = False
    result = []
    for obj in objects:
        if not active or _opted_out(obj):
            result.append(dict(obj))
            continue
        if not checked:
            _check_names(variables)
            checked = True
        result.append(_substitute_object(obj, variables, strict))
    return result


def _opted_out(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata") or {}
    return any(
        (metadata.get(field) or {}).get(SUBSTITUTE_KEY) == DISABLED
        for field in ("labels", "annotations")
    )


def _check_names(variables: Mapping[str, str]) -> None:
    invalid = sorted(name for name in variables if not _VARIABLE_NAME.fullmatch(name))
    if invalid:
        names = ", ".join(repr(name) for name in invalid)
        raise SubstitutionError(
            f"invalid variable name {names}: names must match '{VARIABLE_NAME_PATTERN}'"
        )


def _object_id(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    kind, name = obj.get("kind") or "?", metadata.get("name") or "?"
    namespace = metadata.get("namespace")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _substitute_object(
    obj: Mapping[str, Any], variables: Mapping[str, str], strict: bool
) -> dict[str, Any]:
    text = yaml.dump(
        dict(obj),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=_NO_WRAP,
    )
    if "$" not in text:
        return dict(obj)
    where = _object_id(obj)
    try:
        expanded = expand(text, variables, strict=strict)
    except SubstitutionError as err:
        raise SubstitutionError(f"{where}: {err}") from None
    try:
        loaded = safeyaml.load(expanded, what=where, loader=_Loader)
    except safeyaml.YAMLLoadError as err:
        raise SubstitutionError(_not_loaded(where, err)) from None
    if not isinstance(loaded, dict):
        raise SubstitutionError(f"{where}: not an object after substitution")
    try:
        # As Flux's YAML-to-JSON step: string keys, and only what JSON can hold. It expands
        # what aliases share, which safeyaml has bounded, and leaves no object shared.
        converted: dict[str, Any] = json.loads(json.dumps(loaded, allow_nan=False))
    except (TypeError, ValueError):
        raise SubstitutionError(
            f"{where}: holds a value JSON cannot represent after substitution"
        ) from None
    return converted


def _not_loaded(where: str, err: safeyaml.YAMLLoadError) -> str:
    # safeyaml's problem never quotes the text, which holds substituted values.
    line = f" (line {err.line} of the object)" if err.line else ""
    if err.limit is not None:
        return f"{where}: after substitution, {err.problem}{line}"
    return f"{where}: not valid YAML after substitution{line}: {err.problem}"


# YAML with the implicit types of go-yaml v2, which reads the substituted text in Flux:
# YAML 1.1 booleans including y/n, no base-60 numbers, and timestamps left as strings. Writing
# and reading share these rules, so a string that would read back as something else is quoted.

_NO_WRAP = 1 << 30


_IMPLICIT: list[tuple[str, re.Pattern[str], list[str]]] = [
    (
        "tag:yaml.org,2002:bool",
        re.compile(
            r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE"
            r"|on|On|ON|off|Off|OFF)$"
        ),
        list("yYnNtTfFoO"),
    ),
    (
        "tag:yaml.org,2002:int",
        re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|0[0-7_]*|[1-9][0-9_]*)$"),
        list("-+0123456789"),
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+0123456789."),
    ),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"]),
]


class _Loader(safeyaml.Loader):
    pass


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line strings as literal blocks, as go-yaml writes them: a substituted value lands in
    # them verbatim instead of inside a quoted string.
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


def _construct_bool(loader: _Loader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() in {"y", "yes", "true", "on"}  # type: ignore[arg-type]


def _construct_int(loader: _Loader, node: yaml.Node) -> int | str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    digits = text.replace("_", "").lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    bases = {"0b": 2, "0o": 8, "0x": 16}
    try:
        if digits[:2] in bases:
            return sign * int(digits[2:], bases[digits[:2]])
        if len(digits) > 1 and digits.startswith("0"):
            return sign * int(digits, 8)
        return sign * int(digits)
    except ValueError:
        return text  # go-yaml keeps what does not parse as a number ("0b_") a string


# Replaced, not added to: PyYAML's own YAML 1.1 rules must not apply.
_Loader.yaml_implicit_resolvers = {}
_Dumper.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in _IMPLICIT:
    _Loader.add_implicit_resolver(_tag, _regexp, _first)
    _Dumper.add_implicit_resolver(_tag, _regexp, _first)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Dumper.add_representer(str, _represent_str)


# Expansion: a parser and an evaluator with the grammar and quirks of Flux's envsubst.


@dataclass(frozen=True)
class _Text:
    value: str


@dataclass(frozen=True)
class _Expression:
    operator: str  # "" for a plain ${var}
    variable: str
    arguments: tuple[_Text | _Expression, ...]


_Node = _Text | _Expression
# Operators that handle an unset variable themselves, so strict mode lets them be.
_DEFAULT_OPERATORS = frozenset({"=", ":=", ":-", ":+", ":?", "-", "+", "?"})


def expand(text: str, variables: Mapping[str, str], *, strict: bool = False) -> str:
    """``text`` with every ``${...}`` expression expanded from ``variables`` and ``$$`` made
    ``$``; with ``strict`` an unset variable outside a default operator is an error. Text
    that would grow past :data:`MAX_EXPANDED_CHARS` is an error."""
    nodes = _Parser(text).parse()
    return "".join(_bounded(_evaluate(node, variables, strict) for node in nodes))


class _Parser:
    """Flux's envsubst grammar. Plain text: ``${`` opens an expression, ``$$`` is ``$``. Inside
    an expression: a name of letters, digits and ``_``, then an operator; default values and
    substring bounds may hold nested expressions; only replacement patterns know escapes
    (``$$``, ``\\/``, ``\\\\``)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._at = 0
        self._depth = 0

    def parse(self) -> list[_Node]:
        text = self._text
        nodes: list[_Node] = []
        plain: list[str] = []
        start = 0
        while (dollar := text.find("$", start)) >= 0:
            plain.append(text[start:dollar])
            following = text[dollar + 1 : dollar + 2]
            if following == "{":
                if plain:
                    nodes.append(_Text("".join(plain)))
                    plain = []
                self._at = dollar + 2
                nodes.append(self._expression())
                start = self._at
            elif following == "$":
                plain.append("$")
                start = dollar + 2
            else:
                plain.append("$")
                start = dollar + 1
        plain.append(text[start:])
        if "".join(plain):
            nodes.append(_Text("".join(plain)))
        return nodes

    def _peek(self, offset: int = 0) -> str:
        return self._text[self._at + offset : self._at + offset + 1]

    def _expression(self) -> _Expression:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise SubstitutionError(f"expressions nested more than {MAX_NESTING} deep")
        try:
            return self._expression_body()
        finally:
            self._depth -= 1

    def _expression_body(self) -> _Expression:
        if self._peek() == "#":
            self._at += 1
            variable = self._name()
            if not variable:
                raise SubstitutionError("bad substitution")
            self._close()
            return _Expression("#", variable, ())
        variable = self._name()
        if not variable:
            raise SubstitutionError("unable to parse variable name")
        following = self._peek()
        if following == ":":
            if self._peek(1) in ("=", "-", "?", "+"):
                return self._default(variable, 2)
            return self._substring(variable)
        if following == "=":
            return self._default(variable, 1)
        if following in (",", "^"):
            return _Expression(self._operator(",^", 2), variable, self._closed(()))
        if following == "/":
            return self._replace(variable)
        if following in ("#", "%"):
            operator = self._operator(following, 2)
            return _Expression(operator, variable, self._closed((self._argument("}"),)))
        if following == "}":
            self._at += 1
            return _Expression("", variable, ())
        raise SubstitutionError("missing closing brace")

    def _name(self) -> str:
        start = self._at
        text = self._text
        while self._at < len(text) and (
            text[self._at].isalpha() or text[self._at].isdecimal() or text[self._at] == "_"
        ):
            self._at += 1
        return text[start : self._at]

    def _operator(self, characters: str, longest: int) -> str:
        start = self._at
        while self._at - start < longest and self._peek() and self._peek() in characters:
            self._at += 1
        return self._text[start : self._at]

    def _close(self) -> None:
        if self._peek() != "}":
            raise SubstitutionError("bad substitution")
        self._at += 1

    def _closed(self, arguments: tuple[_Node, ...]) -> tuple[_Node, ...]:
        self._close()
        return arguments

    def _default(self, variable: str, length: int) -> _Expression:
        operator = self._text[self._at : self._at + length]
        self._at += length
        arguments: list[_Node] = []
        while self._peek() != "}":
            arguments.append(self._argument("}"))
        self._at += 1
        return _Expression(operator, variable, tuple(arguments))

    def _substring(self, variable: str) -> _Expression:
        self._at += 1
        offset = self._argument(":}")
        if self._peek() == "}":
            self._at += 1
            return _Expression(":", variable, (offset,))
        if self._peek() != ":":
            raise SubstitutionError("bad substitution")
        while self._peek() == ":":
            self._at += 1
        length = self._argument("}")
        return _Expression(":", variable, self._closed((offset, length)))

    def _replace(self, variable: str) -> _Expression:
        self._at += 1
        operator = "/" + self._operator("/#%", 1)
        pattern = _Text("") if self._peek() == "/" else self._argument("/", escapes=True)
        if self._peek() != "/":
            raise SubstitutionError("bad substitution")
        while self._peek() == "/":
            self._at += 1
        if self._peek() == "}":
            self._at += 1
            return _Expression(operator, variable, (pattern,))
        replacement = self._argument("}", escapes=True)
        return _Expression(operator, variable, self._closed((pattern, replacement)))

    def _argument(self, stops: str, *, escapes: bool = False) -> _Node:
        """A nested expression, or text up to one of ``stops``, a ``${`` or the end."""
        text = self._text
        if self._at >= len(text):
            raise SubstitutionError("unable to parse substitution within function")
        if text.startswith("${", self._at):
            self._at += 2
            return self._expression()
        parts: list[str] = []
        first = True
        while self._at < len(text):
            character = text[self._at]
            if not first and text.startswith("${", self._at):
                break
            pair = text[self._at : self._at + 2]
            if escapes and pair in ("$$", "\\/", "\\\\"):
                parts.append(pair[1])
                self._at += 2
            elif character in stops:
                if first:
                    raise SubstitutionError("unable to parse substitution within function")
                break
            else:
                parts.append(character)
                self._at += 1
            first = False
        return _Text("".join(parts))


def _evaluate(node: _Node, variables: Mapping[str, str], strict: bool) -> str:
    if isinstance(node, _Text):
        return node.value
    # Arguments first, as envsubst does: an unset variable in an unused default still fails.
    arguments = _bounded(_evaluate(argument, variables, strict) for argument in node.arguments)
    value = variables.get(node.variable)
    if value is None:
        if strict and node.operator not in _DEFAULT_OPERATORS:
            raise SubstitutionError(f"variable '{node.variable}' is not set (strict mode)")
        value = ""
    result = _apply(node.operator, value, arguments)
    if len(result) > MAX_EXPANDED_CHARS:
        raise _too_long()
    return result


def _bounded(parts: Iterable[str]) -> list[str]:
    """``parts``, as long as together they stay within :data:`MAX_EXPANDED_CHARS`."""
    collected, total = [], 0
    for part in parts:
        total += len(part)
        if total > MAX_EXPANDED_CHARS:
            raise _too_long()
        collected.append(part)
    return collected


def _too_long() -> SubstitutionError:
    return SubstitutionError(
        f"substitution makes the text longer than the limit of {MAX_EXPANDED_CHARS} characters"
    )


def _apply(operator: str, value: str, arguments: list[str]) -> str:
    match operator:
        case ",":
            return value[:1].lower() + value[1:]
        case ",,":
            return value.lower()
        case "^":
            return value[:1].upper() + value[1:]
        case "^^":
            return value.upper()
        case "#" if not arguments:
            return str(len(value.encode()))  # bytes, as Go's len()
        case "#":
            return _trim_prefix(value, arguments[0], longest=False)
        case "##":
            return _trim_prefix(value, arguments[0], longest=True)
        case "%":
            return _trim_prefix(value[::-1], arguments[0][::-1], longest=False)[::-1]
        case "%%":
            return _trim_prefix(value[::-1], arguments[0][::-1], longest=True)[::-1]
        case ":":
            return _substring(value, arguments)
        case "/":
            return value.replace(arguments[0], arguments[1] if len(arguments) > 1 else "", 1)
        case "//":
            return _replace_all(value, arguments[0], arguments[1] if len(arguments) > 1 else "")
        case "/#":
            if len(arguments) == 2 and value.startswith(arguments[0]):
                return arguments[1] + value[len(arguments[0]) :]
            return value
        case "/%":
            if len(arguments) == 2 and value.endswith(arguments[0]):
                return value[: len(value) - len(arguments[0])] + arguments[1]
            return value
        case _:
            # ${var} and every default operator: the value, or the arguments when it is empty.
            return value if value or not arguments else "".join(arguments)


def _replace_all(value: str, pattern: str, replacement: str) -> str:
    # Measured before it is built: a pattern that matches everywhere multiplies the value.
    grown = value.count(pattern) * (len(replacement) - len(pattern))
    if len(value) + grown > MAX_EXPANDED_CHARS:
        raise _too_long()
    return value.replace(pattern, replacement)


_INTEGER = re.compile(r"[-+]?[0-9]+")


def _go_int(text: str) -> int | None:
    """``text`` as Go's ``strconv.Atoi`` reads it: None unless it is an int64."""
    # Checked on the text first: Python refuses to convert more than 4300 digits.
    if not _INTEGER.fullmatch(text) or len(text.lstrip("+-").lstrip("0")) > 19:
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _substring(value: str, arguments: list[str]) -> str:
    # bash keeps the whole value when a bound is not a number.
    start = _go_int(arguments[0])
    if start is None:
        return value
    if start < 0:
        start = max(len(value) + start, 0)
    if len(arguments) == 1:
        return value[start:]
    length = _go_int(arguments[1])
    if length is None:
        return value
    if length < 0:
        end = len(value) + length
        return value[start:end] if end >= start else ""
    return value[start : start + length]


def _trim_prefix(value: str, pattern: str, *, longest: bool) -> str:
    matcher = _glob(pattern)
    if matcher is None:
        return value
    matched = 0
    # Never the empty prefix, as envsubst.
    for end in range(len(value), 0, -1):
        if matcher.fullmatch(value[:end]):
            matched = end
            if longest:
                break
    return value[matched:]


def _glob(pattern: str) -> re.Pattern[str] | None:
    """A shell pattern as envsubst's matcher reads it (``*`` also crosses ``/``); None when it
    is malformed, which leaves the value as it is."""
    parts, at = [], 0
    while at < len(pattern):
        character = pattern[at]
        if character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(".")
        elif character == "\\":
            at += 1
            if at >= len(pattern):
                return None
            parts.append(re.escape(pattern[at]))
        elif character == "[":
            end, members = _character_class(pattern, at + 1)
            if members is None:
                return None
            parts.append(members)
            at = end
            continue
        else:
            parts.append(re.escape(character))
        at += 1
    return re.compile("".join(parts), re.DOTALL)


def _character_class(pattern: str, at: int) -> tuple[int, str | None]:
    """``[...]`` from just after the ``[``: where it ends, and it as a regex (None if bad)."""
    negate = pattern[at : at + 1] == "^"
    at += negate
    members: list[str] = []
    while True:
        if at >= len(pattern):
            return at, None
        if pattern[at] == "]" and members:
            break
        low, at = _class_character(pattern, at)
        if low is None:
            return at, None
        if pattern[at : at + 1] != "-":
            members.append(re.escape(low))
            continue
        high, at = _class_character(pattern, at + 1)
        if high is None or high < low:
            return at, None
        members.append(f"{re.escape(low)}-{re.escape(high)}")
    return at + 1, "[" + ("^" if negate else "") + "".join(members) + "]"


def _class_character(pattern: str, at: int) -> tuple[str | None, int]:
    if at >= len(pattern) or pattern[at] in "-]":
        return None, at
    if pattern[at] == "\\":
        at += 1
        if at >= len(pattern):
            return None, at
    return pattern[at], at + 1
