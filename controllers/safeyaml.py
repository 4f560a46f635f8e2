"""Bounded YAML parsing: the one way weir reads YAML from Git, registries, webhooks or users.

:func:`load_all` and :func:`load` return plain Python data as PyYAML's safe loader builds it
(libyaml's ``CSafeLoader`` when PyYAML has it, else ``SafeLoader``; a caller with constructors
of its own passes a subclass of :data:`Loader`), once the input has passed :class:`Limits`:

- ``max_bytes``: the size of the input (UTF-8 bytes for text), 8 MiB by default;
- ``max_nodes``: scalars, sequences and mappings in the input, 500,000 by default;
- ``max_depth``: how deep nodes nest, aliases expanded, 200 by default;
- ``max_alias_nodes``: the nodes aliases add when expanded, summed over the input, 100,000
  by default.

The defaults pass every real manifest set we know by a wide margin: the Gateway API's
standard install (469 KB) has 7,300 nodes nested 25 deep and no alias, a Kubernetes object is
at most 1.5 MiB in etcd, and real manifests spend 10 to 60 bytes per node. What they bound:
building 500,000 nodes takes about 150 MiB at worst, and anything that later walks the data
(JSON, a digest, a copy) sees at most 100,000 nodes more than the input holds.

The limits are checked on the parser's events before any node is composed, so the check itself
holds only the open nesting levels and one size per anchor, whatever the input, and computes
the expanded size of each anchored node once: it is linear in the input. An alias to a node
that contains it (a recursive alias) is refused; an alias bomb is refused when its expansion
crosses ``max_alias_nodes``, before it is expanded.

Every failure, a limit or YAML that does not parse or construct, is a :class:`YAMLLoadError`
whose message names ``what`` and the limit crossed, on one line, and never quotes the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.reader import ReaderError

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "Loader",
    "YAMLLoadError",
    "load",
    "load_all",
]


@dataclass(frozen=True)
class Limits:
    """What one input may hold; see the module docstring for the defaults and why."""

    max_bytes: int = 8 * 1024 * 1024
    max_nodes: int = 500_000
    max_depth: int = 200
    max_alias_nodes: int = 100_000


DEFAULT_LIMITS = Limits()
"""The limits :func:`load_all` and :func:`load` apply unless told otherwise."""


class YAMLLoadError(ValueError):
    """The input is not YAML, cannot be constructed, or crosses a limit.

    ``what`` names the input, ``problem`` says what is wrong without quoting the input,
    ``line`` is where (1-based) when known, and ``limit`` is the limit crossed (None when the
    YAML itself is at fault).
    """

    def __init__(
        self, what: str, problem: str, *, line: int | None = None, limit: int | None = None
    ) -> None:
        self.what = what
        self.problem = problem
        self.line = line
        self.limit = limit
        # A file name may hold a line break; the message stays on one line.
        shown = what.replace("\r", "\\r").replace("\n", "\\n")
        where = f" (line {line})" if line else ""
        if limit is None:
            super().__init__(f"{shown}: not valid YAML{where}: {problem}")
        else:
            super().__init__(f"{shown}: {problem}{where}")


def load_all(
    data: str | bytes,
    *,
    what: str,
    loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = Loader,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Every document of ``data`` (None for an empty one), once ``data`` is within ``limits``.

    ``what`` names the input in errors, e.g. ``"'app/kustomization.yaml'"``. Raises
    :class:`YAMLLoadError` and nothing else for any input.
    """
    _check_size(data, what, limits)
    _check_events(loader, data, what, limits)
    return _construct_all(loader, data, what)


def load(
    data: str | bytes,
    *,
    what: str,
    loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = Loader,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """The one document of ``data`` (None when there is none), as :func:`load_all` reads it;
    more than one document is an error."""
    documents = load_all(data, what=what, loader=loader, limits=limits)
    if len(documents) > 1:
        raise YAMLLoadError(what, "more than one document where one is expected")
    return documents[0] if documents else None


# The size


def _check_size(data: str | bytes, what: str, limits: Limits) -> None:
    size = len(data)
    # A character is at most 4 bytes in UTF-8: only text near the limit needs encoding.
    if isinstance(data, str) and limits.max_bytes // 4 < size <= limits.max_bytes:
        size = len(data.encode(errors="surrogatepass"))
    if size > limits.max_bytes:
        raise YAMLLoadError(
            what, f"over the limit of {limits.max_bytes} bytes of YAML", limit=limits.max_bytes
        )


# Nodes, depth and aliases, from the parser's events


@dataclass
class _Collection:
    """A sequence or mapping whose end has not been read yet."""

    anchor: str | None
    nodes: int = 1  # its expanded size so far, itself included
    depth: int = 1  # its expanded depth so far


@dataclass(frozen=True)
class _Anchored:
    nodes: int
    depth: int


class _Counts:
    """The running counts of one input, each checked against its limit as it grows."""

    def __init__(self, what: str, limits: Limits) -> None:
        self.what = what
        self.limits = limits
        self.nodes = 0
        self.alias_nodes = 0
        self.open: list[_Collection] = []
        # Per document: an anchor's expanded size, or None while its node is still open.
        self.anchors: dict[str, _Anchored | None] = {}

    def read(self, event: object) -> None:
        # The most frequent events first: this runs once per event of the input.
        if isinstance(event, ScalarEvent):
            self._count_node(event)
            if event.anchor is not None:
                self.anchors[event.anchor] = _Anchored(1, 1)
            self._add(1, 1, event)
        elif isinstance(event, CollectionStartEvent):
            self._count_node(event)
            if len(self.open) + 1 > self.limits.max_depth:
                self._too_deep(event)
            if event.anchor is not None:
                self.anchors[event.anchor] = None
            self.open.append(_Collection(event.anchor))
        elif isinstance(event, CollectionEndEvent):
            done = self.open.pop()
            if done.anchor is not None:
                self.anchors[done.anchor] = _Anchored(done.nodes, done.depth)
            self._add(done.nodes, done.depth, event)
        elif isinstance(event, AliasEvent):
            self._alias(event)
        elif isinstance(event, DocumentStartEvent):
            self.anchors = {}

    def _count_node(self, event: NodeEvent) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise YAMLLoadError(
                self.what,
                f"over the limit of {self.limits.max_nodes} YAML nodes",
                line=_line(event),
                limit=self.limits.max_nodes,
            )

    def _alias(self, event: AliasEvent) -> None:
        name = event.anchor or ""
        if name not in self.anchors:
            return  # the composer reports an undefined alias
        anchored = self.anchors[name]
        if anchored is None:
            raise YAMLLoadError(
                self.what, "an alias inside the node it refers to", line=_line(event)
            )
        self.alias_nodes += anchored.nodes
        if self.alias_nodes > self.limits.max_alias_nodes:
            raise YAMLLoadError(
                self.what,
                f"YAML aliases expanding past the limit of {self.limits.max_alias_nodes} nodes",
                line=_line(event),
                limit=self.limits.max_alias_nodes,
            )
        self._add(anchored.nodes, anchored.depth, event)

    def _add(self, nodes: int, depth: int, event: yaml.Event) -> None:
        """A finished node of ``nodes`` and ``depth``, expanded, joins its parent."""
        if len(self.open) + depth > self.limits.max_depth:
            self._too_deep(event)
        if self.open:
            parent = self.open[-1]
            parent.nodes += nodes
            parent.depth = max(parent.depth, depth + 1)

    def _too_deep(self, event: yaml.Event) -> None:
        raise YAMLLoadError(
            self.what,
            f"YAML nested deeper than the limit of {self.limits.max_depth} levels",
            line=_line(event),
            limit=self.limits.max_depth,
        )


def _check_events(
    loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader],
    data: str | bytes,
    what: str,
    limits: Limits,
) -> None:
    counts = _Counts(what, limits)
    try:
        # The pure-Python reader decodes, and may fail, as it is made.
        parser = loader(data)
    except yaml.YAMLError as err:
        raise _parse_error(err, what) from None
    try:
        while parser.check_event():
            counts.read(parser.get_event())
    except yaml.YAMLError as err:
        raise _parse_error(err, what) from None
    finally:
        parser.dispose()


def _line(event: yaml.Event) -> int | None:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else None


# Composing and constructing, once the limits hold

# What PyYAML's constructors raise on values their tag cannot hold (``!!int x``, ``!!bool x``,
# ``!!timestamp x``, ``!!float ''``), besides its own errors.
_CONSTRUCTION_ERRORS = (ValueError, TypeError, AttributeError, LookupError, OverflowError)


def _construct_all(
    loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader], data: str | bytes, what: str
) -> list[Any]:
    documents = []
    # The events were read without error: the input decodes.
    composer = loader(data)
    try:
        while composer.check_node():
            node = composer.get_node()
            documents.append(composer.construct_document(node))
    except yaml.YAMLError as err:
        raise _parse_error(err, what) from None
    except RecursionError:
        # Only the pure-Python composer recurses, and the depth limit stops it first.
        raise YAMLLoadError(what, "nested too deeply to compose") from None
    except _CONSTRUCTION_ERRORS:
        raise YAMLLoadError(what, "a value that does not fit its tag") from None
    finally:
        composer.dispose()
    return documents


# PyYAML quotes the input in its problems (an alias, a tag, a character), as Python's repr
# does: quoted text is replaced, except its own vocabulary ('<block end>', ']', ',').
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_YAML_TOKEN = re.compile(r"'(<[a-z ]+>|[^\w\s]{1,2})'")


def _redact(quoted: re.Match[str]) -> str:
    return quoted[0] if _YAML_TOKEN.fullmatch(quoted[0]) else "'...'"


def _without_quotes(problem: str) -> str:
    redacted = _QUOTED.sub(_redact, problem)
    # A quote left unpaired may open a quotation of the input: nothing after it is shown.
    unpaired = min((redacted.find(q) for q in "'\"" if redacted.count(q) % 2), default=-1)
    return redacted if unpaired < 0 else redacted[:unpaired] + "'...'"


def _parse_error(err: yaml.YAMLError, what: str) -> YAMLLoadError:
    if isinstance(err, yaml.MarkedYAMLError):
        parts = [part for part in (err.context, err.problem) if part]
        problem = _without_quotes("; ".join(parts) or "syntax error")
        mark = err.problem_mark or err.context_mark
        return YAMLLoadError(
            what, " ".join(problem.split()), line=mark.line + 1 if mark is not None else None
        )
    if isinstance(err, ReaderError):
        return YAMLLoadError(what, f"unacceptable character ({' '.join(str(err.reason).split())})")
    return YAMLLoadError(what, "syntax error")
