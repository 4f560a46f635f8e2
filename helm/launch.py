"""How the helm controller's process must start: as ``helm-controller``, with Helm's homes set.

Helm runs inside the process (``helm_python``'s native library holds a Go runtime), and that Go
runtime reads two things once, when the library is loaded, from the memory the kernel laid out
at ``exec`` time, not from Python's ``os.environ`` or ``sys.argv``:

- **the environment**: Go copies the environment block that follows ``argv`` on the initial
  stack, so a variable Python sets later (``os.environ[...] = ...``) is never seen by Helm
  (checked: a ``KUBECONFIG`` set before ``import helm_python`` is ignored, one present at
  ``exec`` is used). Helm's ``HELM_CACHE_HOME``, ``HELM_CONFIG_HOME``, ``HELM_DATA_HOME`` and
  ``HELM_PLUGINS`` (where post-renderer plugins are found) must therefore be there at ``exec``.
- **the program name**: Helm v4's server-side apply field manager is
  ``filepath.Base(os.Args[0])`` (``helm.sh/helm/v4/pkg/kube.getManagedFieldsManager``), and
  ``os.Args`` is the process's C ``argv`` (Python's ``sys.orig_argv``). Run as ``python -m helm``
  it would be ``python``; Flux's is ``helm-controller``, and a different manager name means field
  conflicts between the controller and a ``helm upgrade`` Flux users run by hand.

So ``python -m helm`` calls :func:`exec_as_helm_controller` before anything else: when the
process is not yet right, it replaces itself (``os.execve``, never a fork without exec: a
forked Go runtime is broken) with the same interpreter and arguments, ``argv[0]`` set to
``<directory of the interpreter>/helm-controller`` and the missing Helm variables set. The
interpreter finds its prefix and virtual environment from ``argv[0]``'s directory, so the path
need not exist; ``sys.executable`` (computed from it) is put back to the real interpreter.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "HELM_HOME_VARIABLES",
    "PROGRAM_NAME",
    "exec_as_helm_controller",
    "helm_environment",
    "needs_exec",
]

PROGRAM_NAME = "helm-controller"
"""The process's ``argv[0]`` base name, and so Helm's server-side apply field manager."""

HELM_HOME_VARIABLES = ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME", "HELM_PLUGINS")

# The interpreter's real path, handed to the new process image (its own sys.executable is
# computed from the argv[0] given above, a path that does not exist).
_INTERPRETER_VARIABLE = "WEIR_HELM_INTERPRETER"


def helm_environment(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """``environ`` with each Helm home variable that is unset placed under ``home`` (one
    directory the controller owns, never the user's ``~/.cache/helm``)."""
    defaults = {
        "HELM_CACHE_HOME": home / "cache",
        "HELM_CONFIG_HOME": home / "config",
        "HELM_DATA_HOME": home / "data",
        "HELM_PLUGINS": home / "data" / "plugins",
    }
    merged = dict(environ)
    for name, path in defaults.items():
        if not merged.get(name):
            merged[name] = str(path)
    return merged


def needs_exec(orig_argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the process must be started again: wrong program name, or a Helm home unset."""
    if not orig_argv or Path(orig_argv[0]).name != PROGRAM_NAME:
        return True
    return any(not environ.get(name) for name in HELM_HOME_VARIABLES)


def exec_as_helm_controller(home: Path | None = None) -> None:
    """Make this process ``helm-controller`` with Helm's homes set, replacing it if need be.

    Returns when the process already is (the usual case after the ``exec``); otherwise it does
    not return. Call it first in ``python -m helm``, before ``helm_python`` is imported.
    ``home`` defaults to ``$TMPDIR/helm-controller``.
    """
    interpreter = os.environ.get(_INTERPRETER_VARIABLE)
    if not needs_exec(sys.orig_argv, os.environ):
        if interpreter:
            sys.executable = interpreter
        return
    if interpreter:
        # This image was made by the exec below and still is not right: stop, do not loop.
        raise RuntimeError(f"{PROGRAM_NAME}: exec did not set the program name or Helm's homes")
    interpreter = sys.executable
    environ = helm_environment(os.environ, home or Path(tempfile.gettempdir()) / PROGRAM_NAME)
    environ[_INTERPRETER_VARIABLE] = interpreter
    argv0 = str(Path(interpreter).parent / PROGRAM_NAME)
    os.execve(interpreter, [argv0, *sys.orig_argv[1:]], environ)  # noqa: S606 (no shell wanted)
