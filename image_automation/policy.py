"""Which tag an ImagePolicy picks from an ImageRepository's tags, as image-reflector-controller
picks it (``internal/policy``).

- ``semver``: the highest tag that is a version with three dot-separated parts (``1.2.3``,
  ``v1.2.3-rc.1``; ``1.2`` is not one, as fluxcd/pkg ``version.ParseVersion`` says) inside the
  Masterminds range, with the source controller's rules (``controllers.semver``): a prerelease
  only when the range asks for prereleases.
- ``alphabetical``: byte order; ``asc`` (the default) takes the last tag, ``desc`` the first.
- ``numerical``: every tag parsed as a float (one that is not fails the policy, as in Flux);
  ``asc`` takes the largest, ``desc`` the smallest; on a tie the later tag wins.
- ``filterTags``: only tags that ``pattern`` matches (searched, Go's RE2 syntax), each judged
  by what ``extract`` makes of it (``$name``, ``${name}``, ``$1`` as Go's
  ``Regexp.ExpandString``); the original tag is the result. Two tags extracting to the same
  value: the later one stands for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controllers import goregexp, semver

__all__ = [
    "InvalidPolicy",
    "NoMatch",
    "Policy",
    "TagFilter",
    "latest_tag",
    "parse_policy",
]


class InvalidPolicy(ValueError):
    """The policy cannot be used as written (Flux stalls with ``InvalidPolicy``)."""


class NoMatch(LookupError):
    """No tag satisfies the policy."""


Order = Literal["ASC", "DESC"]


@dataclass(frozen=True)
class Policy:
    """One of Flux's policy choices: ``kind`` with its ``order`` or semver ``constraints``."""

    kind: Literal["semver", "alphabetical", "numerical"]
    order: Order = "ASC"
    constraints: semver.Constraints | None = None
    range: str = ""


def _order(value: str | None) -> Order:
    order = (value or "ASC").upper()
    if order not in ("ASC", "DESC"):
        raise InvalidPolicy(
            f"invalid policy: invalid order argument provided: '{order}', must be one of: ASC, DESC"
        )
    return "ASC" if order == "ASC" else "DESC"


def parse_policy(choice: dict[str, Any]) -> Policy:
    """The policy of ``spec.policy`` (its JSON form: ``{"semver": {"range": ...}}``, ...)."""
    if (found := choice.get("semver")) is not None:
        range_ = str(found.get("range") or "")
        try:
            constraints = semver.parse_constraints(range_)
        except semver.InvalidConstraint as err:
            raise InvalidPolicy(f"invalid policy: {err}") from None
        return Policy("semver", constraints=constraints, range=range_)
    if (found := choice.get("alphabetical")) is not None:
        return Policy("alphabetical", _order(found.get("order")))
    if (found := choice.get("numerical")) is not None:
        return Policy("numerical", _order(found.get("order")))
    raise InvalidPolicy("invalid policy: given ImagePolicyChoice object is invalid")


class TagFilter:
    """``spec.filterTags``: a pattern every tag must match, and what of it is compared."""

    def __init__(self, pattern: str, extract: str = "") -> None:
        try:
            self._regex = goregexp.compile_pattern(pattern)
        except ValueError as err:
            raise InvalidPolicy(
                f"failed to filter tags: invalid regular expression pattern '{pattern}': {err}"
            ) from None
        self._extract = extract
        self._names = {name: index for name, index in self._regex.groupindex.items()}

    def apply(self, tags: Iterable[str]) -> dict[str, str]:
        """The compared value of each matching tag, mapped to the tag."""
        kept: dict[str, str] = {}
        for tag in tags:
            match = self._regex.search(tag)
            if match is None:
                continue
            value = self._expand(match) if self._extract else tag
            kept[value] = tag
        return kept

    def _expand(self, match: Any) -> str:
        return _GO_TEMPLATE.sub(lambda ref: self._group(match, ref), self._extract)

    def _group(self, match: Any, ref: re.Match[str]) -> str:
        if ref.group(0) == "$$":
            return "$"
        name = ref.group("braced") or ref.group("bare")
        if name is None:  # a "$" that starts no name: Go keeps it as it is
            return "$"
        index = int(name) if name.isdigit() else self._names.get(name)
        if index is None or index > self._regex.groups:
            return ""
        value = match.group(index)
        return value or ""


# Go's template references: $$, ${name}, or $name (the longest run of letters, digits and _),
# and a lone $ (which Go keeps).
_GO_TEMPLATE = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z0-9_]+)\}|\$(?P<bare>[A-Za-z0-9_]+)|\$")


def _three_part_version(tag: str) -> semver.Version | None:
    if len(tag.split(".", 2)) != 3:
        return None
    return semver.parse_version(tag)


def _latest(policy: Policy, values: Sequence[str]) -> str:
    if not values:
        raise NoMatch("version list argument cannot be empty")
    if policy.kind == "semver":
        assert policy.constraints is not None
        best: tuple[semver.Version, str] | None = None
        for value in values:
            version = _three_part_version(value)
            if version is None or not policy.constraints.check(version):
                continue
            if best is None or version.compare(best[0]) > 0:
                best = (version, value)
        if best is None:
            raise NoMatch("unable to determine latest version from provided list")
        return best[1]
    if policy.kind == "alphabetical":
        # Go compares strings byte by byte: UTF-8 bytes order as code points do.
        return max(values) if policy.order == "ASC" else min(values)
    latest, latest_value = values[0], _float(values[0])
    for value in values[1:]:
        number = _float(value)
        if policy.order == "ASC" and number < latest_value:
            continue
        if policy.order == "DESC" and number > latest_value:
            continue
        latest, latest_value = value, number
    return latest


def _float(value: str) -> float:
    try:
        # Go's ParseFloat takes what Python's float takes, apart from Python's "_" separators.
        if "_" in value:
            raise ValueError(value)
        return float(value)
    except ValueError:
        raise NoMatch(f"failed to parse invalid numeric value '{value}'") from None


def latest_tag(policy: Policy, tags: Sequence[str], tag_filter: TagFilter | None = None) -> str:
    """The tag ``policy`` picks from ``tags``; raises ``NoMatch`` when none qualifies."""
    if tag_filter is None:
        return _latest(policy, list(tags))
    kept = tag_filter.apply(tags)
    return kept[_latest(policy, list(kept))]
