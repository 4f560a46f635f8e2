"""Commit messages from ``spec.git.commit.messageTemplate``, rendered as Flux renders them.

Flux executes the template with Go's ``text/template`` and Sprig's hermetic functions (no
dates, random values, environment or DNS) on its ``TemplateData``; weir runs the same Go code,
``hack/tools/gotemplate`` (found as ``controllers.binaries`` says, ``WEIR_GOTEMPLATE`` in the
image), so a template written for Flux renders to the same bytes. The data is described by
:class:`TemplateData`, with the Go field names a template reads:

- ``.AutomationObject``: the automation's namespace and name; printed, ``<namespace>/<name>``;
- ``.Changed.FileChanges``: file -> object -> changes, and the methods ``.Changed.Objects``
  (object -> changes over all files) and ``.Changed.Changes`` (each distinct change once); an
  object has ``.APIVersion``, ``.Kind``, ``.Name``, ``.Namespace``, a change ``.OldValue``,
  ``.NewValue`` and ``.Setter``;
- ``.Values``: ``spec.git.commit.messageTemplateValues``.

The fields of older API versions that Flux removed (``.Updated``, ``.Changed.ImageResult``) are
errors that say what to use instead, as in Flux.

Errors, all :class:`CommitMessageError`:

- :class:`MessageTemplateError`: the template is at fault: it does not parse, fails when
  executed (Go's own message, e.g. ``template: commit message:1: unclosed action``), renders more
  than ``MAX_MESSAGE_BYTES``, uses more than ``MAX_MEMORY_BYTES`` or runs past the timeout;
- :class:`RendererError`: the renderer could not run (binary missing, crashed).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from controllers import child
from controllers.binaries import find_binary

__all__ = [
    "DEFAULT_MESSAGE",
    "MAX_MEMORY_BYTES",
    "MAX_MESSAGE_BYTES",
    "AutomationObject",
    "Change",
    "Changed",
    "CommitMessageError",
    "MessageTemplateError",
    "ObjectChanges",
    "ObjectIdentifier",
    "RendererError",
    "TemplateData",
    "render_message",
]

DEFAULT_MESSAGE = "Update from image update automation"
"""The message of an automation without a template (Flux's)."""
MAX_MESSAGE_BYTES = 1024 * 1024
"""A longer message is refused: a commit message is read by people."""
MAX_MEMORY_BYTES = 256 * 1024 * 1024
"""What rendering may use; ``{{ repeat 1000000000 "x" }}`` builds its string before writing it."""
DEFAULT_TIMEOUT_SECONDS = 10.0

_BINARY = "gotemplate"
# The renderer's exit codes (hack/tools/gotemplate/main.go): the template's fault.
_EXIT_TEMPLATE = 1
_EXIT_OUT_OF_MEMORY = 4
_STDERR_TAIL = 8 * 1024


class CommitMessageError(Exception):
    """The commit message could not be rendered; the message says why."""


class MessageTemplateError(CommitMessageError):
    """The template cannot be rendered: fix the template."""


class RendererError(CommitMessageError):
    """The renderer could not run; nothing the template can fix."""


class _GoData(BaseModel):
    # Go's field names, as the templates read them; a field the renderer has no place for
    # would be refused there, so it is refused here first.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutomationObject(_GoData):
    """The ImageUpdateAutomation's namespace and name."""

    Namespace: str
    Name: str


class ObjectIdentifier(_GoData):
    """A changed object; a kustomization.yaml, for one, has no name or namespace."""

    APIVersion: str = ""
    Kind: str = ""
    Name: str = ""
    Namespace: str = ""


class Change(_GoData):
    """One setter's edit: the value before and after it, and the setter (``<ns>:<policy>``,
    with a ``:tag``, ``:name`` or ``:digest`` suffix when the marker has one)."""

    OldValue: str
    NewValue: str
    Setter: str


class ObjectChanges(_GoData):
    """The changes made to one object of a file."""

    Object: ObjectIdentifier
    Changes: list[Change]


class Changed(_GoData):
    """Every change of one update: file path (relative to ``spec.update.path``, ``/``
    separated, as Flux's) -> the changed objects in it. Two entries for one object in a file
    are merged. ``.Changed.Objects`` and ``.Changed.Changes`` are Go methods computed from this."""

    FileChanges: dict[str, list[ObjectChanges]]


class TemplateData(_GoData):
    """What the template is executed on (Flux's ``TemplateData``)."""

    AutomationObject: AutomationObject
    Changed: Changed
    Values: dict[str, str] = {}


async def render_message(
    template: str,
    data: TemplateData | Mapping[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> str:
    """The commit message ``template`` renders on ``data``; :data:`DEFAULT_MESSAGE` when the
    template is empty. Raises :class:`MessageTemplateError` or :class:`RendererError`."""
    if not template:
        return DEFAULT_MESSAGE
    validated = data if isinstance(data, TemplateData) else TemplateData.model_validate(data)
    request = json.dumps({"template": template, "data": validated.model_dump(mode="json")})
    argv = [
        str(_renderer()),
        f"-max-output-bytes={MAX_MESSAGE_BYTES}",
        f"-max-memory-bytes={MAX_MEMORY_BYTES}",
    ]
    try:
        done = await child.run(
            argv,
            stdin=request.encode(),
            timeout=timeout,
            env={},
            max_output=MAX_MESSAGE_BYTES,
            stderr_tail=_STDERR_TAIL,
        )
    except child.ChildTimedOut:
        raise MessageTemplateError(
            f"the message template did not finish rendering within {timeout:g}s"
        ) from None
    except child.ChildError as err:
        raise RendererError(str(err)) from None
    if done.returncode in (_EXIT_TEMPLATE, _EXIT_OUT_OF_MEMORY):
        raise MessageTemplateError(done.stderr.decode(errors="replace").strip())
    if done.returncode:
        # A Go panic or fatal error says what it was on its first line, then dumps stacks.
        first = next(iter(done.stderr.decode(errors="replace").strip().splitlines()), "")
        raise RendererError(f"{_BINARY} failed with exit code {done.returncode}: {first}")
    # Go strings are bytes; a template can make invalid UTF-8 (b64dec), which no commit takes.
    return done.stdout.decode(errors="replace")


def _renderer() -> Path:
    found = find_binary(_BINARY) or shutil.which(_BINARY)
    if not found:
        raise RendererError(
            f"the {_BINARY} binary is missing: build it with `python -m controllers.envtest "
            "build` or set WEIR_GOTEMPLATE"
        )
    return Path(found)
