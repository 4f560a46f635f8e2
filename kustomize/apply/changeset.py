"""What an apply or a prune did to each object, in Flux's words."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from controllers.inventory import ObjectRef

__all__ = ["Action", "ChangeSet", "ChangeSetEntry"]


class Action(StrEnum):
    """What happened to one object, in Flux's words."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ChangeSetEntry:
    """One object and what was done to it; ``str()`` is Flux's ``Kind/namespace/name action``."""

    ref: ObjectRef
    action: Action

    def __str__(self) -> str:
        return f"{self.ref.subject} {self.action}"


@dataclass
class ChangeSet:
    """The entries of one apply or prune, in the order they were processed."""

    entries: list[ChangeSetEntry] = field(default_factory=list)

    def __iter__(self) -> Iterator[ChangeSetEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __str__(self) -> str:
        """Every entry, one ``Kind/namespace/name action`` line each."""
        return "\n".join(str(entry) for entry in self.entries)

    def changes(self) -> str:
        """Only the lines that changed something (not unchanged, not skipped): event text."""
        quiet = (Action.UNCHANGED, Action.SKIPPED)
        return "\n".join(str(entry) for entry in self.entries if entry.action not in quiet)

    def refs(self) -> list[ObjectRef]:
        """The objects of every entry; the new inventory after an apply."""
        return [entry.ref for entry in self.entries]
