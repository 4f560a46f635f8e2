"""Which files of a source tree go into an artifact: Flux's ``.sourceignore`` rules.

The rules mirror fluxcd/pkg ``sourceignore`` and source-controller's ``SourceIgnoreFilter``:

- the VCS patterns (:data:`EXCLUDE_VCS`) always apply;
- the other built-in patterns (:data:`EXCLUDE_EXT`, :data:`EXCLUDE_CI`,
  :data:`EXCLUDE_EXTRA`) apply only when the tree has no ``.sourceignore`` file and the object
  has no ``spec.ignore``: user rules replace them, as in Flux;
- a ``.sourceignore`` file applies to its own directory and below, with its patterns relative
  to that directory; files are read from the root down, parents before children, and
  directories named ``.git`` are not searched;
- ``spec.ignore`` is read last, relative to the root, so it can override everything else.

Patterns use gitignore syntax; as in go-git's matcher the last pattern that matches a path
decides, so a ``!pattern`` can re-include a file inside an excluded directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pathspec.patterns.gitignore import GitIgnorePatternError
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

__all__ = [
    "EXCLUDE_CI",
    "EXCLUDE_EXT",
    "EXCLUDE_EXTRA",
    "EXCLUDE_VCS",
    "IGNORE_FILE",
    "IgnoreRules",
    "InvalidIgnoreFile",
    "load_ignore_rules",
]

IGNORE_FILE = ".sourceignore"
# The same lists, in the same order, as fluxcd/pkg sourceignore/sourceignore.go.
EXCLUDE_VCS = (".git/", ".gitignore", ".gitmodules", ".gitattributes")
EXCLUDE_EXT = ("*.jpg", "*.jpeg", "*.gif", "*.png", "*.wmv", "*.flv", "*.tar.gz", "*.zip")
EXCLUDE_CI = (
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
)
EXCLUDE_EXTRA = ("**/.goreleaser.yml", "**/.sops.yaml", "**/.flux.yaml")

# A .sourceignore larger than this is not a list of patterns; refuse it rather than read it.
_MAX_IGNORE_FILE_SIZE = 1024 * 1024


class InvalidIgnoreFile(ValueError):
    """A ``.sourceignore`` file could not be used (too large, unreadable or a bad pattern)."""


@dataclass(frozen=True)
class _Rule:
    domain: tuple[str, ...]
    pattern: GitIgnoreSpecPattern


class IgnoreRules:
    """An ordered list of gitignore patterns, each scoped to a directory of the tree."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def __len__(self) -> int:
        return len(self._rules)

    def extend(self, other: IgnoreRules) -> None:
        """Append the rules of ``other``, after (so with priority over) these ones."""
        self._rules.extend(other._rules)

    def add(self, lines: str | tuple[str, ...], domain: tuple[str, ...] = ()) -> None:
        """Append the patterns in ``lines`` (gitignore syntax), relative to ``domain``."""
        for line in lines.splitlines() if isinstance(lines, str) else lines:
            # Flux skips comments and blank lines before parsing (sourceignore.ReadPatterns).
            if line.startswith("#") or not line.strip():
                continue
            try:
                pattern = GitIgnoreSpecPattern(line)
            except GitIgnorePatternError as err:
                where = "/".join(domain) or "the root"
                raise InvalidIgnoreFile(
                    f"invalid ignore pattern {line!r} in {where}: {err}"
                ) from None
            if pattern.include is not None:
                self._rules.append(_Rule(domain, pattern))

    def excludes(self, relative_path: str, is_dir: bool) -> bool:
        """Whether ``relative_path`` (``/``-separated, relative to the root) is left out."""
        parts = tuple(relative_path.split("/"))
        for rule in reversed(self._rules):
            depth = len(rule.domain)
            if len(parts) <= depth or parts[:depth] != rule.domain:
                continue
            candidate = "/".join(parts[depth:]) + ("/" if is_dir else "")
            if rule.pattern.match_file(candidate) is not None:
                return bool(rule.pattern.include)
        return False


def load_ignore_rules(
    root: Path, spec_ignore: str | None = None, exclude_defaults: bool = True
) -> IgnoreRules:
    """The rules for archiving ``root``: built-in patterns, ``.sourceignore`` files and
    ``spec_ignore``, combined as Flux does (see the module docstring).

    With ``exclude_defaults=False`` no built-in pattern applies, not even the VCS ones.
    Raises :class:`InvalidIgnoreFile` when a ``.sourceignore`` cannot be used.
    """
    user = IgnoreRules()
    for domain, text in _ignore_files(root):
        user.add(text, domain)
    if spec_ignore is not None:
        user.add(spec_ignore)

    rules = IgnoreRules()
    if exclude_defaults:
        rules.add(EXCLUDE_VCS)
        if not len(user):
            rules.add(EXCLUDE_EXT + EXCLUDE_CI + EXCLUDE_EXTRA)
    rules.extend(user)
    return rules


def _ignore_files(root: Path) -> list[tuple[tuple[str, ...], str]]:
    """Every ``.sourceignore`` under ``root`` with its directory, parents first, siblings in
    name order (as fluxcd/pkg LoadIgnorePatterns walks). Symlinks are never followed."""
    found: list[tuple[tuple[str, ...], str]] = []
    stack: list[tuple[str, ...]] = [()]
    while stack:
        domain = stack.pop()
        directory = root.joinpath(*domain)
        text = _read_ignore_file(directory / IGNORE_FILE, "/".join((*domain, IGNORE_FILE)))
        if text is not None:
            found.append((domain, text))
        with os.scandir(directory) as entries:
            subdirs = sorted(
                entry.name
                for entry in entries
                if entry.name != ".git" and entry.is_dir(follow_symlinks=False)
            )
        stack.extend((*domain, name) for name in reversed(subdirs))
    return found


def _read_ignore_file(path: Path, shown: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        # O_NOFOLLOW on a symlink (ELOOP): a link may point outside the tree, so skip it.
        if os.path.islink(path):
            return None
        raise InvalidIgnoreFile(f"cannot read {shown}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        data = file.read(_MAX_IGNORE_FILE_SIZE + 1)
    if len(data) > _MAX_IGNORE_FILE_SIZE:
        raise InvalidIgnoreFile(
            f"{shown} is larger than {_MAX_IGNORE_FILE_SIZE} bytes; keep ignore files small"
        )
    return data.decode("utf-8", errors="replace")
