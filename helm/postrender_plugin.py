"""The program Helm runs as weir's post-renderer plugin: kustomize builds over Helm's output.

Helm v4 (in the helm controller's process) starts it for an install or upgrade whose options
name the plugin (see :mod:`helm.postrender`, which writes the plugin and the spec), with the
rendered manifests on stdin and two arguments: the spec file and the file to write an error to.
The spec lists kustomize builds, each a ``kustomization.yaml`` and the files it names; each
build takes the previous one's output (the first, Helm's) as ``helm-output.yaml``, and the last
one's output goes to stdout as it came from kustomize.

Why an error file: Helm keeps a failed plugin's stderr to itself and reports only that the
plugin "exited with error", so the reason is written where :mod:`helm.postrender` reads it.

Only the standard library is imported: this runs once per Helm action, with ``python -I``,
apart from weir's installed packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["INPUT_FILE", "MAX_ERROR_CHARS", "PostRenderFailure", "main", "run_builds"]

INPUT_FILE = "helm-output.yaml"
"""The name each build's input has in its kustomization (Flux's)."""

MAX_ERROR_CHARS = 2000
"""How much of kustomize's error is kept: it ends up in a condition."""

_KUSTOMIZE_TIMEOUT = 300.0
# Helm's own check on a post-renderer refuses blank output; a chart that renders no object
# gives blank output, which Flux (post-rendering in process) accepts. An empty YAML document
# is no object to Helm and not blank.
_NO_OBJECTS = b"---\n"


class PostRenderFailure(Exception):
    """A build failed; the message says why, in kustomize's words."""


def run_builds(
    kustomize: str, builds: Sequence[dict[str, Any]], manifests: bytes, work: Path
) -> bytes:
    """``manifests`` through each build in turn, in directories under ``work``."""
    current = manifests
    for index, build in enumerate(builds):
        if not current.strip():
            return current  # kustomize has nothing to patch, and no object to label
        directory = work / f"build-{index}"
        directory.mkdir()
        (directory / INPUT_FILE).write_bytes(current)
        for name, content in build.get("files", {}).items():
            # Names come from weir's own spec; still, keep them inside the directory.
            if Path(name).name != name:
                raise PostRenderFailure(f"spec names a file outside the build: {name!r}")
            (directory / name).write_text(content)
        (directory / "kustomization.yaml").write_text(json.dumps(build["kustomization"]))
        current = _kustomize_build(kustomize, directory)
    return current


def _kustomize_build(kustomize: str, directory: Path) -> bytes:
    try:
        done = subprocess.run(  # a fixed binary, no shell
            [kustomize, "build", str(directory)],
            capture_output=True,
            timeout=_KUSTOMIZE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PostRenderFailure(
            f"kustomize build timed out after {_KUSTOMIZE_TIMEOUT:g}s"
        ) from None
    except OSError as err:
        raise PostRenderFailure(f"kustomize could not run: {err.strerror}") from None
    if done.returncode != 0:
        raise PostRenderFailure(_kustomize_error(done.stderr.decode(errors="replace"), directory))
    return done.stdout


def _kustomize_error(stderr: str, directory: Path) -> str:
    # kustomize prints "Error: <why>" last; the temporary path says nothing to a user.
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else "kustomize build failed"
    message = (
        message.removeprefix("Error: ").replace(f"{directory}/", "").replace(str(directory), ".")
    )
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return f"kustomize: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Read the manifests from stdin, write the result to stdout; 1 on a failed build (the
    reason in the error file), 2 on a misuse."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 2:
        print("usage: postrender_plugin.py SPEC_FILE ERROR_FILE", file=sys.stderr)
        return 2
    spec_file, error_file = Path(args[0]), Path(args[1])
    try:
        spec = json.loads(spec_file.read_text())
        manifests = sys.stdin.buffer.read()
        work = Path(tempfile.mkdtemp(prefix="run-", dir=spec.get("workDirectory") or None))
        try:
            output = run_builds(spec["kustomize"], spec["builds"], manifests, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except PostRenderFailure as err:
        return _fail(error_file, str(err))
    except (OSError, ValueError, KeyError, TypeError) as err:
        return _fail(error_file, f"post-renderer could not run: {type(err).__name__}: {err}")
    sys.stdout.buffer.write(output if output.strip() else _NO_OBJECTS)
    sys.stdout.buffer.flush()
    return 0


def _fail(error_file: Path, message: str) -> int:
    # Written whole or not at all: the reader may look at it after any exit.
    partial = error_file.with_name(error_file.name + ".partial")
    try:
        partial.write_text(message)
        os.replace(partial, error_file)
    except OSError:
        pass
    print(message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
