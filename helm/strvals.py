"""Helm's ``--set`` parser (``helm.sh/helm/v4/pkg/strvals``), the part ``valuesFrom[].targetPath``
goes through.

Flux sets a referenced value at ``targetPath`` by handing ``<targetPath>=<value>`` to strvals'
``ParseInto`` (typed values: ``true``, ``null``, ``12``) or ``ParseIntoString`` (strings only),
so the value itself is read with ``--set`` syntax too: ``,`` separates further assignments,
``{a,b}`` is a list and ``\\`` escapes the next character. This module reads one such line into
an existing map the way strvals does, including how it writes into the maps and lists it finds
there (in place, which Flux's merge order relies on). The tests check it against the real helm.

Errors are :class:`StrvalsError`; their messages never quote the line, which holds a value.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_INDEX", "MAX_NESTED_NAME_LEVEL", "StrvalsError", "parse_into"]

MAX_INDEX = 65536
MAX_NESTED_NAME_LEVEL = 30

_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class StrvalsError(ValueError):
    """A ``--set`` line strvals refuses (a key without a value, an index out of range, a path
    through a value that is not a map or a list, ...)."""


class _EndOfLine(Exception):
    """strvals' ``io.EOF``: the line ended; at the top level that is success."""


class _NotAList(Exception):
    """strvals' ``ErrNotList``: the value does not start with ``{``."""


class _Parser:
    def __init__(self, line: str, *, strings_only: bool) -> None:
        self._line = line
        self._at = 0
        self._strings_only = strings_only

    def parse(self, data: dict[str, Any]) -> None:
        while True:
            try:
                self._key(data, 0)
            except _EndOfLine:
                return

    # Scanning

    def _read(self) -> str | None:
        if self._at >= len(self._line):
            return None
        char = self._line[self._at]
        self._at += 1
        return char

    def _unread(self) -> None:
        self._at -= 1

    def _until(self, stop: str) -> tuple[str, str | None]:
        """The characters before one of ``stop`` (with ``\\`` escapes resolved) and the stop
        character, None at the end of the line."""
        taken: list[str] = []
        while True:
            char = self._read()
            if char is None:
                return "".join(taken), None
            if char in stop:
                return "".join(taken), char
            if char == "\\":
                escaped = self._read()
                if escaped is None:
                    return "".join(taken), None
                taken.append(escaped)
            else:
                taken.append(char)

    # Grammar

    def _key(self, data: dict[str, Any], level: int) -> None:
        key, last = self._until("=[,.")
        if last is None:
            if not key:
                raise _EndOfLine
            raise StrvalsError("a key has no value")
        if last == "[":
            index = self._index()
            existing = data.get(key, [])
            if key in data and not isinstance(existing, list):
                raise StrvalsError("a path indexes a value that is not a list")
            try:
                items = self._list_item(existing, index, level)
            except _EndOfLine:
                _set(data, key, existing)
                raise
            _set(data, key, items)
        elif last == "=":
            try:
                _set(data, key, self._value_list())
            except _EndOfLine:
                _set(data, key, "")
                raise
            except _NotAList:
                _set(data, key, self._typed(self._value()))
        elif last == ",":
            raise StrvalsError("a key has no value (cannot end with ,)")
        else:
            level += 1
            if level > MAX_NESTED_NAME_LEVEL:
                raise StrvalsError(
                    f"value name nested level is greater than maximum supported nested level "
                    f"of {MAX_NESTED_NAME_LEVEL}"
                )
            inner = data.get(key, {})
            if key in data and not isinstance(inner, dict):
                raise StrvalsError("a path goes through a value that is not a map")
            try:
                self._key(inner, level)
            finally:
                if inner:
                    _set(data, key, inner)
            if not inner:
                raise StrvalsError("a key map has no value")

    def _index(self) -> int:
        text, last = self._until("]")
        if last is None:
            raise _EndOfLine
        if not _INT.fullmatch(text):
            raise StrvalsError("error parsing index: not a number")
        return int(text)

    def _list_item(self, items: list[Any], index: int, level: int) -> list[Any]:
        if index < 0:
            raise StrvalsError(f"negative {index} index not allowed")
        rest, last = self._until("[.=")
        if rest:
            raise StrvalsError("unexpected data at end of array index")
        if last is None:
            raise _EndOfLine
        if last == "=":
            try:
                value: Any = self._value_list()
            except _EndOfLine:
                value = ""
            except _NotAList:
                value = self._typed(self._value())
            return _set_index(items, index, value)
        if last == "[":
            nested_index = self._index()
            nested: list[Any] = []
            if len(items) > index and items[index] is not None:
                if not isinstance(items[index], list):
                    raise StrvalsError("a path indexes a value that is not a list")
                nested = items[index]
            return _set_index(items, index, self._list_item(nested, nested_index, level))
        inner: dict[str, Any] = {}
        if len(items) > index:
            if not isinstance(items[index], dict):
                # strvals replaces what is there when indices come out of order
                items[index] = {}
            inner = items[index]
        self._key(inner, level)
        return _set_index(items, index, inner)

    def _value(self) -> str:
        value, _ = self._until(",")
        return value

    def _value_list(self) -> list[Any]:
        first = self._read()
        if first is None:
            raise _EndOfLine
        if first != "{":
            self._unread()
            raise _NotAList
        items: list[Any] = []
        while True:
            item, last = self._until(",}")
            if last is None:
                raise StrvalsError("list must terminate with '}'")
            items.append(self._typed(item))
            if last == "}":
                after = self._read()
                if after is not None and after != ",":
                    self._unread()
                return items

    def _typed(self, text: str) -> Any:
        if self._strings_only:
            return text
        folded = text.lower() if text.isascii() else text
        if folded == "true":
            return True
        if folded == "false":
            return False
        if folded == "null":
            return None
        if text == "0":
            return 0
        if text and text[0] != "0" and _INT.fullmatch(text):
            number = int(text)
            if _INT64_MIN <= number <= _INT64_MAX:
                return number
        return text


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    if key:
        data[key] = value


def _set_index(items: list[Any], index: int, value: Any) -> list[Any]:
    if index < 0:
        raise StrvalsError(f"negative {index} index not allowed")
    if index > MAX_INDEX:
        raise StrvalsError(
            f"index of {index} is greater than maximum supported index of {MAX_INDEX}"
        )
    if len(items) <= index:
        # A new list, as Go's make+copy: the one that was there is left as it was.
        items = [*items, *([None] * (index + 1 - len(items)))]
    items[index] = value
    return items


def parse_into(line: str, data: dict[str, Any], *, strings_only: bool = False) -> None:
    """Read ``--set`` line ``line`` into ``data`` in place, as strvals' ``ParseInto`` or, with
    ``strings_only``, ``ParseIntoString``. Raises :class:`StrvalsError`."""
    _Parser(line, strings_only=strings_only).parse(data)
