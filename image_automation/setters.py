"""Rewrite the image values that setter markers point at, changing no other byte.

A marker is a comment on the line of a scalar value, as image-automation-controller reads it
(kyaml's setters with the ``$imagepolicy`` shorthand)::

    image: ghcr.io/org/app:1.0.0 # {"$imagepolicy": "flux-system:app"}
    newName: ghcr.io/org/app # {"$imagepolicy": "flux-system:app:name"}
    newTag: 1.0.0 # {"$imagepolicy": "flux-system:app:tag"}
    digest: sha256:... # {"$imagepolicy": "flux-system:app:digest"}

The whole-image setter writes ``name:tag``, or ``name:tag@digest`` when the policy has a digest
(Flux's ``ImageRef.String()``). The comment, once its leading ``#`` are cut, must be a JSON
object of strings; other comments are not markers. Only values are set, never mapping keys,
and only plain or quoted scalars: a block scalar (``|``, ``>``) is text, whatever it holds.

Which files, as Flux's ``ScreeningLocalReader``: under the update path, files named ``*.yaml``,
``*.yml`` or ``Kustomization`` whose bytes hold ``"$imagepolicy"``; hidden directories are
visited. Unlike Flux, no symbolic link is followed, to a file or a directory, so nothing outside
the tree is read (a link inside the tree points at a file that is visited on its own), and
``.git`` is not walked. A file that does not parse (or is not UTF-8, or crosses
:mod:`controllers.safeyaml`'s limits) is left alone and listed in ``problem_files``.

How the edit keeps every other byte: the text is decoded from UTF-8 as it is (a BOM, CRLF and
tabs stay characters of the text), the YAML scanner (libyaml through PyYAML, as
:mod:`controllers.safeyaml` uses it; it takes a tab before a comment, as go-yaml does) gives
each scalar token's exact character span, each span is checked against the parsed value, and
only those spans are replaced before encoding back. A replaced value keeps
its quoting style; a plain value that YAML would read as something other than a string (``1.10``
as a float, ``true``, ``null``, ``1e3``) is double-quoted, as kyaml does.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controllers import safeyaml
from image_automation.update_result import Change, ObjectIdentifier, Result

__all__ = [
    "ImageRefLike",
    "Update",
    "rewrite_text",
    "update_with_setters",
]

SCREENING_TOKEN = b'"$imagepolicy"'
SHORTHAND = "$imagepolicy"
SUFFIXES = ("tag", "name", "digest")


class ImageRefLike(Protocol):
    """An ImagePolicy's ``status.latestRef`` (``api_v1.ImageRef``)."""

    @property
    def name(self) -> str: ...

    @property
    def tag(self) -> str: ...

    @property
    def digest(self) -> str | None: ...


@dataclass
class Update:
    """What an update would write: the new bytes of each changed file (relative path,
    ``/``-separated), the changes, and the files skipped because they do not parse."""

    files: dict[str, bytes] = field(default_factory=dict)
    result: Result = field(default_factory=Result)
    problem_files: list[str] = field(default_factory=list)


def update_with_setters(
    root: Path,
    latest_refs: Mapping[str, ImageRefLike],
    *,
    limits: safeyaml.Limits = safeyaml.DEFAULT_LIMITS,
) -> Update:
    """Set every marker under ``root`` (a directory, or one file) to the latest ref of the
    policy it names (``latest_refs`` keyed ``"<namespace>:<name>"``). Only files with a change
    are in :attr:`Update.files`; nothing is written. A marker naming a policy without a latest
    ref is left as it is.
    """
    if root.is_symlink():
        raise ValueError("the update path is a symbolic link")
    base = root if root.is_dir() else root.parent
    update = Update()
    for path in _candidate_files(root):
        relative = path.relative_to(base).as_posix()
        content = _read_screened(path, limits.max_bytes)
        if content is None:
            continue
        try:
            text = content.decode("utf-8")
            new_text, changes = rewrite_text(text, latest_refs, what=repr(relative), limits=limits)
        except (UnicodeDecodeError, safeyaml.YAMLLoadError, yaml.YAMLError):
            update.problem_files.append(relative)
            continue
        if new_text == text:
            continue
        update.files[relative] = new_text.encode("utf-8")
        for obj, change in changes:
            update.result.add_change(relative, obj, change)
    return update


def _candidate_files(root: Path) -> Iterator[Path]:
    """Regular files Flux would consider, in a stable order, without following links."""
    if not root.is_dir():
        if _is_yaml_name(root.name) and stat.S_ISREG(root.lstat().st_mode):
            yield root
        return
    for directory, dirnames, filenames in os.walk(root, onerror=_raise, followlinks=False):
        # os.walk lists a link to a directory among dirnames but, as told, does not enter it.
        dirnames[:] = sorted(name for name in dirnames if name != ".git")
        for name in sorted(filenames):
            path = Path(directory, name)
            if _is_yaml_name(name) and stat.S_ISREG(path.lstat().st_mode):
                yield path


def _raise(error: OSError) -> None:
    # A directory that cannot be read is an error, as in Flux, not a part left out.
    raise error


def _is_yaml_name(name: str) -> bool:
    # As Go's filepath.Ext: the last extension, case as written.
    return name.endswith((".yaml", ".yml")) or name == "Kustomization"


def _read_screened(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes when they hold the marker token; a file over the size limit is read
    only far enough to refuse it later."""
    # O_NOFOLLOW: a file swapped for a link since it was listed is not read through.
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
        content = file.read(max_bytes + 1)
    return content if SCREENING_TOKEN in content else None


def rewrite_text(
    text: str,
    latest_refs: Mapping[str, ImageRefLike],
    *,
    what: str = "'<text>'",
    limits: safeyaml.Limits = safeyaml.DEFAULT_LIMITS,
) -> tuple[str, list[tuple[ObjectIdentifier, Change]]]:
    """``text`` with its markers set, and each change with the object it is in, in the order
    of the text. Raises :class:`controllers.safeyaml.YAMLLoadError` when ``text`` is not YAML
    within ``limits``."""
    # libyaml's marks count characters but not a leading BOM: the BOM is set aside.
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom) :]
    # The limits hold before anything is composed.
    safeyaml.load_all(body, what=what, limits=limits)
    # libyaml, as go-yaml, takes a tab before a comment; PyYAML's pure scanner does not.
    token_starts = {
        token.end_mark.index: token.start_mark.index
        for token in yaml.scan(body, Loader=safeyaml.Loader)
        if isinstance(token, yaml.ScalarToken)
    }
    documents = list(yaml.compose_all(body, Loader=safeyaml.Loader))
    edits: list[tuple[int, int, str, ObjectIdentifier, Change]] = []
    seen: set[int] = set()
    for obj, node in _objects(documents):
        for scalar in _value_scalars(node, seen):
            found = _marked_edit(body, scalar, token_starts, latest_refs)
            if found is None:
                continue
            start, end, replacement, change = found
            if not _span_holds(body[start:end], scalar):
                raise safeyaml.YAMLLoadError(what, "a marked value not where the parser put it")
            edits.append((start, end, replacement, obj, change))
    # Spans of distinct tokens never overlap; the changes are reported in the text's order.
    edits.sort(key=lambda edit: edit[0])
    parts, position = [bom], 0
    for start, end, replacement, _, _ in edits:
        parts += [body[position:start], replacement]
        position = end
    parts.append(body[position:])
    return "".join(parts), [(obj, change) for _, _, _, obj, change in edits]


def _span_holds(span: str, scalar: ScalarNode) -> bool:
    """Whether ``span`` is the scalar's text: a guard against marks that do not count
    characters of the text, which would make an edit land elsewhere."""
    if scalar.style in ("'", '"'):
        return len(span) >= 2 and span[0] == span[-1] == scalar.style
    return span.split() == str(scalar.value).split()


# Documents and the objects they hold


def _objects(documents: list[Node]) -> Iterator[tuple[ObjectIdentifier, Node]]:
    """Each document with its identifier; a lone ``List`` document stands for its items, as
    kyaml's reader unwraps it."""
    if len(documents) == 1 and _field(documents[0], "kind") in ("List", "ResourceList"):
        items = _child(documents[0], "items")
        if isinstance(items, SequenceNode):
            for item in items.value:
                yield _identify(item), item
            return
    for document in documents:
        yield _identify(document), document


def _child(node: Node, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                return value_node  # type: ignore[no-any-return]
    return None


def _field(node: Node, *path: str) -> str:
    for key in path:
        found = _child(node, key)
        if found is None:
            return ""
        node = found
    return node.value if isinstance(node, ScalarNode) else ""


def _identify(node: Node) -> ObjectIdentifier:
    return ObjectIdentifier(
        api_version=_field(node, "apiVersion"),
        kind=_field(node, "kind"),
        name=_field(node, "metadata", "name"),
        namespace=_field(node, "metadata", "namespace"),
    )


def _value_scalars(node: Node, seen: set[int]) -> Iterator[ScalarNode]:
    """Scalars that are values or sequence items (never keys), each node once: an alias is the
    node it names, whose marks are where the anchor is."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        yield node
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _value_scalars(item, seen)
    elif isinstance(node, MappingNode):
        for _, value in node.value:
            yield from _value_scalars(value, seen)


# Markers


_LINE_BREAKS = "\r\n\x85\u2028\u2029"  # what PyYAML ends a line at


def _marked_edit(
    text: str,
    scalar: ScalarNode,
    token_starts: dict[int, int],
    latest_refs: Mapping[str, ImageRefLike],
) -> tuple[int, int, str, Change] | None:
    # Plain is style None in PyYAML's pure composer and "" in libyaml's.
    style = scalar.style or None
    if style not in (None, "'", '"'):
        return None
    end = scalar.end_mark.index
    # An empty value (``image:`` then a comment) has no token: nothing to replace.
    start = token_starts.get(end)
    if start is None:
        return None
    setter = _setter_after(text, end)
    if setter is None:
        return None
    new_value = _setter_value(setter, latest_refs)
    if new_value is None or new_value == scalar.value:
        return None
    replacement = _formatted(new_value, style)
    return start, end, replacement, Change(scalar.value, new_value, setter)


def _setter_after(text: str, end: int) -> str | None:
    """The setter a comment right after ``end`` on the same line names, if it is a marker."""
    position = end
    while position < len(text) and text[position] in " \t":
        position += 1
    if position == end or position >= len(text) or text[position] != "#":
        return None
    line_end = position
    while line_end < len(text) and text[line_end] not in _LINE_BREAKS:
        line_end += 1
    try:
        marker = json.loads(text[position:line_end].lstrip("#"))
    except ValueError:
        return None
    # kyaml reads the comment as map[string]string: any other value, and it is no marker.
    if not isinstance(marker, dict) or not all(isinstance(v, str) for v in marker.values()):
        return None
    setter = marker.get(SHORTHAND)
    return setter or None


def _setter_value(setter: str, latest_refs: Mapping[str, ImageRefLike]) -> str | None:
    """The value ``setter`` sets, None when its policy has no latest ref (or, for ``:digest``,
    no digest: Flux would blank the field)."""
    if (ref := latest_refs.get(setter)) is not None:
        return f"{ref.name}:{ref.tag}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
    policy, _, suffix = setter.rpartition(":")
    if suffix not in SUFFIXES or (ref := latest_refs.get(policy)) is None:
        return None
    value: str | None = getattr(ref, suffix)
    return value or None


# Writing a value in the style of the one it replaces

# Characters a plain value may be made of here: those of image names, tags and digests. A value
# with any other character is double-quoted rather than reasoned about.
_PLAIN = re.compile(r"[A-Za-z0-9_/](?:[A-Za-z0-9_./@:+-]*[A-Za-z0-9_./@+-])?")
# What YAML 1.2's core schema (and go-yaml v3, which allows "_" in numbers) reads as a number,
# a bool or null; YAML 1.1's forms are PyYAML's resolver's.
_YAML12_NOT_STRING = re.compile(
    r"[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+"
    r"|[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    r"|~|null|Null|NULL|true|True|TRUE|false|False|FALSE"
)
_RESOLVER = yaml.resolver.Resolver()
_STRING_TAG = "tag:yaml.org,2002:str"


def _reads_as_plain_string(value: str) -> bool:
    return (
        _PLAIN.fullmatch(value) is not None
        and _YAML12_NOT_STRING.fullmatch(value) is None
        and _RESOLVER.resolve(ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        == _STRING_TAG
    )


def _formatted(value: str, style: str | None) -> str:
    if style is None and _reads_as_plain_string(value):
        return value
    if style == "'" and value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    return '"' + "".join(_escaped(character) for character in value) + '"'


def _escaped(character: str) -> str:
    if character in '"\\':
        return "\\" + character
    if " " <= character <= "~":
        return character
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
