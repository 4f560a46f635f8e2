"""What an image update changed, in the shape of image-automation-controller's
``internal/update`` ``Result`` and the commit message template data built from it.

Flux's template data (``internal/source`` ``TemplateData``)::

    .AutomationObject            {Name, Namespace}  (prints as "namespace/name" in Go)
    .Changed.FileChanges         file -> object -> [Change]
    .Changed.Objects             object -> [Change], whatever the file
    .Changed.Changes             [Change], each distinct change once
    .Values                      spec.git.commit.messageTemplateValues

with an object ``{APIVersion, Kind, Name, Namespace}`` and a change ``{OldValue, NewValue,
Setter}``. :meth:`Result.template_data` gives ``.Changed`` as the JSON the Go renderer reads
(``image_automation.message``): ``FileChanges`` only, each file's objects as a list of
``{"Object", "Changes"}`` entries sorted as Go ranges over a map keyed by an object (by
APIVersion, Kind, Name, Namespace). ``Objects`` and ``Changes`` are Go methods in Flux, so the
renderer computes them there, printing exactly as Flux's do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Change", "ObjectIdentifier", "Result", "template_data"]


@dataclass(frozen=True, order=True)
class ObjectIdentifier:
    """The YAML document (or ``List`` item) a change was made in; empty fields when the
    document has none (a kustomization.yaml often has no name)."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""

    def template_data(self) -> dict[str, str]:
        return {
            "APIVersion": self.api_version,
            "Kind": self.kind,
            "Name": self.name,
            "Namespace": self.namespace,
        }


@dataclass(frozen=True)
class Change:
    """One marked value rewritten: ``setter`` is the marker's name as written
    (``ns:policy`` or ``ns:policy:tag``, ``:name``, ``:digest``)."""

    old_value: str
    new_value: str
    setter: str

    def template_data(self) -> dict[str, str]:
        return {"OldValue": self.old_value, "NewValue": self.new_value, "Setter": self.setter}


ObjectChanges = dict[ObjectIdentifier, list[Change]]


@dataclass
class Result:
    """The changes of one update: file (relative to the update path, ``/``-separated) ->
    object -> changes in the order they appear in the file."""

    file_changes: dict[str, ObjectChanges] = field(default_factory=dict)

    def add_change(self, file: str, obj: ObjectIdentifier, change: Change) -> None:
        self.file_changes.setdefault(file, {}).setdefault(obj, []).append(change)

    def objects(self) -> ObjectChanges:
        """Every changed object with its changes, whatever file it is in (Flux's
        ``Objects()``)."""
        merged: ObjectChanges = {}
        for file in sorted(self.file_changes):
            for obj, changes in sorted(self.file_changes[file].items()):
                merged.setdefault(obj, []).extend(changes)
        return dict(sorted(merged.items()))

    def changes(self) -> list[Change]:
        """Each distinct change once, in file and object order (Flux's ``Changes()``)."""
        seen: dict[Change, None] = {}
        for file in sorted(self.file_changes):
            for _, changes in sorted(self.file_changes[file].items()):
                seen.update(dict.fromkeys(changes))
        return list(seen)

    def template_data(self) -> dict[str, Any]:
        """``.Changed`` as the renderer's JSON data (see the module docstring)."""
        return {
            "FileChanges": {
                file: _entries(self.file_changes[file]) for file in sorted(self.file_changes)
            }
        }


def _entries(objects: ObjectChanges) -> list[dict[str, Any]]:
    return [
        {"Object": obj.template_data(), "Changes": [c.template_data() for c in changes]}
        for obj, changes in sorted(objects.items())
    ]


def template_data(
    result: Result, *, namespace: str, name: str, values: dict[str, str] | None = None
) -> dict[str, Any]:
    """The data a commit message template of the automation ``namespace``/``name`` sees
    (Flux's ``TemplateData``), as plain JSON data."""
    return {
        "AutomationObject": {"Name": name, "Namespace": namespace},
        "Changed": result.template_data(),
        "Values": dict(sorted((values or {}).items())),
    }
