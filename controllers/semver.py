"""SemVer versions and range constraints as Flux evaluates them (Masterminds/semver v3).

Flux parses tags with Masterminds' lenient ``NewVersion`` (a ``v`` prefix, and a missing minor
or patch, are accepted) and checks them against ``NewConstraint`` ranges. Its rules differ from
npm's in ways users rely on, so they are reproduced here rather than approximated:

- ``,`` or whitespace means AND, ``||`` means OR; ``1.2 - 1.4.5`` is ``>= 1.2, <= 1.4.5``;
- ``x``, ``X`` and ``*`` are wildcards; a bare or ``=`` version with a wildcard means ``~``;
- operators ``=``, ``!=``, ``>``, ``<``, ``>=``, ``=>``, ``<=``, ``=<``, ``~``, ``~>``, ``^``;
- a prerelease version satisfies an AND group only when a comparator of the group has a
  prerelease: ``>= 6.1.x-0`` takes every prerelease from 6.1.0-0 up, ``>= 6.1.0`` none, and
  ``>=1.2.0-0 <2.0.0`` takes 1.2.0-rc.1 (Masterminds v3.2 and later, as Flux uses).

Versions order as SemVer 2.0 says (build metadata ignored); ``Version.original`` is the tag.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "Constraints",
    "InvalidConstraint",
    "Version",
    "highest",
    "parse_constraints",
    "parse_version",
]


class InvalidConstraint(ValueError):
    """A constraint string Masterminds would refuse."""


_VERSION = re.compile(
    r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$"
)
# Masterminds' expressions, kept as they are (the '|' inside the classes is literal there too).
_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"
_CONSTRAINT = re.compile(rf"^\s*({_OPS})\s*({_CV})\s*$")
_RANGE = re.compile(rf"\s*({_CV})\s+-\s+({_CV})\s*")
_FIND = re.compile(rf"({_OPS})\s*({_CV})")
_VALID = re.compile(rf"^(\s*({_OPS})\s*({_CV})\s*)((?:\s+|,\s*)({_OPS})\s*({_CV})\s*)*$")


@dataclass(frozen=True)
class Version:
    """A parsed version; ``original`` is the text it was parsed from."""

    major: int
    minor: int
    patch: int
    prerelease: str = ""
    build: str = ""
    original: str = ""

    def compare(self, other: Version) -> int:
        """-1, 0 or 1 as SemVer 2.0 orders ``self`` against ``other``."""
        for mine, theirs in (
            (self.major, other.major),
            (self.minor, other.minor),
            (self.patch, other.patch),
        ):
            if mine != theirs:
                return 1 if mine > theirs else -1
        if not self.prerelease or not other.prerelease:
            return (not self.prerelease) - (not other.prerelease)
        return _compare_prerelease(self.prerelease, other.prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        text += f"-{self.prerelease}" if self.prerelease else ""
        return text + (f"+{self.build}" if self.build else "")


def parse_version(text: str) -> Version | None:
    """``text`` as Masterminds' ``NewVersion`` reads it, or None if it is no version."""
    match = _VERSION.fullmatch(text)
    if match is None:
        return None
    return Version(
        major=int(match[1]),
        minor=int(match[2][1:]) if match[2] else 0,
        patch=int(match[3][1:]) if match[3] else 0,
        prerelease=match[5] or "",
        build=match[8] or "",
        original=text,
    )


def _compare_prerelease(mine: str, theirs: str) -> int:
    my_parts, their_parts = mine.split("."), theirs.split(".")
    for index in range(max(len(my_parts), len(their_parts))):
        a = my_parts[index] if index < len(my_parts) else ""
        b = their_parts[index] if index < len(their_parts) else ""
        if a == b:
            continue
        if not a or not b:
            return -1 if not a else 1
        if a.isdigit() and b.isdigit():
            return 1 if int(a) > int(b) else -1
        if a.isdigit() != b.isdigit():
            return -1 if a.isdigit() else 1  # numbers sort before names
        return 1 if a > b else -1
    return 0


@dataclass(frozen=True)
class _Comparator:
    operator: str
    version: Version
    text: str
    dirty: bool = False
    minor_dirty: bool = False
    patch_dirty: bool = False

    def check(self, version: Version, include_prerelease: bool) -> bool:
        if version.prerelease and not include_prerelease:
            return False
        return _OPERATORS[self.operator](self, version)


@dataclass(frozen=True)
class Constraints:
    """OR of ANDs of comparators; ``check`` tells whether a version satisfies them."""

    groups: tuple[tuple[_Comparator, ...], ...]
    text: str

    def check(self, version: Version) -> bool:
        # A prerelease satisfies an AND group only when one of its comparators asks for
        # prereleases (Masterminds v3.2+, which Flux uses: v3.5.0); then every comparator of
        # the group takes prereleases.
        return any(
            all(c.check(version, any(o.version.prerelease for o in group)) for c in group)
            for group in self.groups
        )

    def __contains__(self, version: object) -> bool:
        return isinstance(version, Version) and self.check(version)

    def __str__(self) -> str:
        return self.text


def parse_constraints(text: str) -> Constraints:
    """A constraint string as Masterminds' ``NewConstraint`` reads it."""
    rewritten = _RANGE.sub(lambda m: f">= {m[1]}, <= {m[11]}", text)
    groups = []
    for segment in rewritten.split("||"):
        if not _VALID.fullmatch(segment):
            raise InvalidConstraint(f"improper constraint: {segment.strip()}")
        groups.append(tuple(_parse_comparator(m[0]) for m in _FIND.finditer(segment)))
    return Constraints(tuple(groups), text)


def _parse_comparator(text: str) -> _Comparator:
    match = _CONSTRAINT.fullmatch(text)
    if match is None:
        raise InvalidConstraint(f"improper constraint: {text}")
    operator, version_text = match[1], match[2]
    major, minor, patch, prerelease = match[3], match[4] or "", match[5] or "", match[6] or ""
    dirty = minor_dirty = patch_dirty = False
    if _is_wildcard(major):
        version_text, dirty = f"0.0.0{prerelease}", True
    elif not minor or _is_wildcard(minor[1:]):
        version_text, dirty, minor_dirty = f"{major}.0.0{prerelease}", True, True
    elif not patch or _is_wildcard(patch[1:]):
        version_text, dirty, patch_dirty = f"{major}{minor}.0{prerelease}", True, True
    version = parse_version(version_text)
    if version is None:
        raise InvalidConstraint(f"improper constraint: {text}")
    return _Comparator(operator, version, match[2], dirty, minor_dirty, patch_dirty)


def _is_wildcard(part: str) -> bool:
    return part in ("x", "X", "*")


# The comparators, as Masterminds' constraint functions (the prerelease rule is in check).


def _not_equal(c: _Comparator, v: Version) -> bool:
    if c.dirty:
        if c.version.major != v.major:
            return True
        if c.version.minor != v.minor and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if c.version.patch != v.patch and not c.patch_dirty:
            return True
        if c.patch_dirty:
            if v.prerelease or c.version.prerelease:
                return _compare_prerelease(v.prerelease, c.version.prerelease) != 0
            return False
    return v.compare(c.version) != 0


def _greater(c: _Comparator, v: Version) -> bool:
    if not c.dirty:
        return v.compare(c.version) == 1
    if v.major != c.version.major:
        return v.major > c.version.major
    if c.minor_dirty:
        return False  # >11 needs 12 or higher
    if c.patch_dirty:
        return v.minor > c.version.minor  # >11.1 needs 11.2 or higher
    return v.compare(c.version) == 1


def _less(c: _Comparator, v: Version) -> bool:
    return v.compare(c.version) < 0


def _greater_equal(c: _Comparator, v: Version) -> bool:
    return v.compare(c.version) >= 0


def _less_equal(c: _Comparator, v: Version) -> bool:
    if not c.dirty:
        return v.compare(c.version) <= 0
    if v.major > c.version.major:
        return False
    return not (v.major == c.version.major and v.minor > c.version.minor and not c.minor_dirty)


def _tilde(c: _Comparator, v: Version) -> bool:
    if v.compare(c.version) < 0:
        return False
    con = c.version
    if (con.major, con.minor, con.patch) == (0, 0, 0) and not c.minor_dirty and not c.patch_dirty:
        return True  # ~0.0.0 accepts everything, like >=0.0.0
    if v.major != con.major:
        return False
    return not (v.minor != con.minor and not c.minor_dirty)


def _tilde_or_equal(c: _Comparator, v: Version) -> bool:
    return _tilde(c, v) if c.dirty else v.compare(c.version) == 0


def _caret(c: _Comparator, v: Version) -> bool:
    con = c.version
    if v.compare(con) < 0:
        return False
    if con.major > 0 or c.minor_dirty:
        return v.major == con.major
    if v.major > 0:
        return False
    if con.minor > 0 or c.patch_dirty:
        return v.minor == con.minor
    if v.minor > 0:
        return False
    return v.patch == con.patch


_OPERATORS: dict[str, Callable[[_Comparator, Version], bool]] = {
    "": _tilde_or_equal,
    "=": _tilde_or_equal,
    "!=": _not_equal,
    ">": _greater,
    "<": _less,
    ">=": _greater_equal,
    "=>": _greater_equal,
    "<=": _less_equal,
    "=<": _less_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


def highest(tags: Iterable[str], constraints: Constraints) -> str | None:
    """The tag with the highest version satisfying ``constraints``, or None. Equal versions
    (``v1.0.0`` and ``1.0.0``, or other build metadata): the greatest tag text wins."""
    versions = [v for tag in tags if (v := parse_version(tag)) is not None]
    matching = [v for v in versions if constraints.check(v)]
    if not matching:
        return None
    return max(matching, key=functools.cmp_to_key(_by_version_then_tag)).original


def _by_version_then_tag(a: Version, b: Version) -> int:
    return a.compare(b) or (a.original > b.original) - (a.original < b.original)
