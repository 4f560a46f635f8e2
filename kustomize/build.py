"""Render a Kustomization: kustomize's own build over a source artifact.

What Flux does (fluxcd/pkg ``kustomize.Generator`` and ``SecureBuild``), reproduced here:

- a directory without a kustomization file gets one listing its manifests: every ``.yaml`` and
  ``.yml`` file below it, and every subdirectory that has a kustomization file of its own (not
  descended into); other files are ignored;
- ``targetNamespace``, ``namePrefix``, ``nameSuffix`` and ``buildMetadata`` replace the
  kustomization's own, ``patches`` and ``components`` are appended, ``images`` are merged by
  name; ``commonMetadata`` is set on every object after the build;
- files may be loaded from anywhere in the artifact (``LoadRestrictionsNone``) but never from
  outside it.

The overlay is written here, in Python, into a copy of the artifact (the source is never
modified; symlinks leaving it are refused). The build itself runs in a kustomize build worker
(``kustomize/buildworker.py``): what confines it to the artifact is the worker's filesystem,
which refuses every path that resolves outside, however a kustomization names it, and its
refusal of remote bases under ``--no-remote-bases``. Every YAML document read here goes
through ``controllers.safeyaml``, which bounds its size and alias expansion.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controllers.safeyaml import Limits, YAMLLoadError, load_all
from kustomize.api_v1 import KustomizationSpec
from kustomize.buildworker import MAX_OUTPUT_BYTES, BuildTimeout, BuildWorkers, WorkerError

__all__ = ["KUSTOMIZATION_FILES", "BuildError", "build", "set_common_metadata"]

# The names kustomize recognises, in its order of preference.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# The fields of kustomize's Kustomization type (sigs.k8s.io/kustomize/api/types): Flux reads a
# kustomization into that type and writes it back, so unknown top-level fields are dropped.
_KUSTOMIZATION_FIELD_NAMES = (
    "apiVersion kind metadata openapi namePrefix nameSuffix namespace commonLabels labels "
    "commonAnnotations patchesStrategicMerge patchesJson6902 patches images imageTags "
    "replacements replicas vars sortOptions resources components crds bases configMapGenerator "
    "secretGenerator helmGlobals helmCharts helmChartInflationGenerator generatorOptions "
    "configurations generators transformers validators buildMetadata"
)
# Go's JSON decoding matches field names case-insensitively, so Flux keeps 'Resources:' as
# 'resources'; so does weir.
_KUSTOMIZATION_FIELDS = {name.lower(): name for name in _KUSTOMIZATION_FIELD_NAMES.split()}
# What kustomize takes for a remote base rather than a local path (api/internal/git/repospec.go):
# spec.components must be local.
_REMOTE = re.compile(
    r"^(?:git::|gh:|(?:https?|ssh|file)://|github\.com[/:]|[A-Za-z][A-Za-z0-9-]*@[^/:]+[/:])",
    re.IGNORECASE,
)
# The largest file of the artifact read here (kustomization files and, for a generated
# kustomization, manifests); kustomize's output is bounded by the worker.
_MAX_FILE_BYTES = 16 * 1024 * 1024
_FILE_LIMITS = Limits(max_bytes=_MAX_FILE_BYTES)
# kustomize's output is as large as the objects it builds (10,000 Deployments are about
# 500,000 nodes); 2 million nodes take about 600 MiB to parse, the most one build may cost
# the controller.
_OUTPUT_LIMITS = Limits(max_bytes=MAX_OUTPUT_BYTES, max_nodes=2_000_000)
_MAX_MESSAGE_CHARS = 4000


class BuildError(Exception):
    """The manifests could not be built; ``reason`` is the Flux condition reason
    (``BuildFailed``, or ``ArtifactFailed`` when the path is not in the artifact) and the
    message says what to fix."""

    def __init__(self, message: str, *, reason: str = "BuildFailed") -> None:
        super().__init__(message)
        self.reason = reason


async def build(
    root: Path,
    path: str,
    spec: KustomizationSpec,
    *,
    workers: BuildWorkers,
    timeout: float,
    skip_dirs: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The objects kustomize builds of directory ``path`` of the artifact unpacked at ``root``,
    with the spec's overlay fields merged in as Flux does; ``root`` is not modified.
    Directories named in ``skip_dirs`` are left out of the copy (a local checkout's ``.git``).

    Raises ``BuildError`` for a path outside the artifact or missing, a link or reference
    leaving the artifact, a remote base when ``workers`` refuse them, a kustomize failure, a
    build that runs out of memory, or a run longer than ``timeout`` seconds.
    """
    workdir = Path(tempfile.mkdtemp(prefix="weir-kustomize-"))
    tree = workdir / "source"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            entry = await asyncio.to_thread(_prepare, root, path, spec, tree, skip_dirs)
        output = await workers.build(tree.resolve(), entry, timeout=deadline - loop.time())
    except (TimeoutError, BuildTimeout):
        raise BuildError(f"kustomize build timed out after {timeout:g}s") from None
    except WorkerError as err:
        raise BuildError(_summary(str(err), workdir)) from None
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
    # commonMetadata is not applied here: Flux sets it after decryption and substitution
    # (set_common_metadata), so ${var} in it stays literal and its annotations do not turn
    # substitution off.
    return await asyncio.to_thread(_parse_objects, output)


def set_common_metadata(
    objects: list[dict[str, Any]], labels: dict[str, str], annotations: dict[str, str]
) -> None:
    """Set ``labels`` and ``annotations`` on every object's metadata, overriding the keys it
    has (Flux's ``ssautil.SetCommonMetadata``; selectors and templates are left alone)."""
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        for key, extra in (("labels", labels), ("annotations", annotations)):
            merged = {**(metadata.get(key) or {}), **extra}
            if merged:
                metadata[key] = merged


# Preparing the tree


def _prepare(
    root: Path,
    path: str,
    spec: KustomizationSpec,
    tree: Path,
    skip_dirs: frozenset[str] = frozenset(),
) -> Path:
    """Copy the artifact to ``tree`` and write the overlay; returns the entry directory."""
    # Flux joins the path under the root, so '/apps' means 'apps'.
    relative = posixpath.normpath(posixpath.join(".", (path or ".").lstrip("/")))
    if relative == ".." or relative.startswith("../"):
        raise BuildError(
            f"path '{path}' leaves the source artifact; use a path inside it",
            reason="ArtifactFailed",
        )
    _copy_tree(root.resolve(strict=True), tree, skip_dirs)
    tree = tree.resolve()
    entry = tree / relative
    if not entry.is_dir() or not _inside(entry.resolve(), tree):
        raise BuildError(
            f"kustomization path not found: '{path}' is not a directory in the source artifact",
            reason="ArtifactFailed",
        )
    _write_overlay(entry, spec, tree)
    return entry


def _copy_tree(source: Path, target: Path, skip_dirs: frozenset[str] = frozenset()) -> None:
    """Copy regular files and directories but ``skip_dirs``; recreate symlinks that stay inside
    ``source`` as relative links, and refuse the others."""
    target.mkdir()
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = [name for name in dirnames if name not in skip_dirs]
        here = Path(directory)
        copy = target / here.relative_to(source)
        for name in sorted(dirnames) + sorted(filenames):
            item, destination = here / name, copy / name
            if item.is_symlink():
                resolved = Path(os.path.realpath(item))
                if not _inside(resolved, source):
                    raise BuildError(
                        f"symlink '{item.relative_to(source)}' points outside the source "
                        "artifact; remove it or point it inside"
                    )
                link = os.path.relpath(target / resolved.relative_to(source), copy)
                destination.symlink_to(link)
            elif item.is_dir():
                destination.mkdir()
            elif item.is_file():
                shutil.copyfile(item, destination)


def _write_overlay(entry: Path, spec: KustomizationSpec, tree: Path) -> None:
    """Write the kustomization file of ``entry`` as Flux's generator leaves it."""
    existing = next((entry / n for n in KUSTOMIZATION_FILES if (entry / n).is_file()), None)
    if existing is None:
        kfile = entry / KUSTOMIZATION_FILES[0]
        kustomization = _generated_kustomization(entry, tree)
    else:
        kfile = existing
        documents = _load_all(existing, tree)
        loaded = documents[0] if documents else {}
        if not isinstance(loaded, dict):
            raise BuildError(f"{_shown(existing, tree)} is not a kustomization (not a mapping)")
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            **_known_fields(loaded),
        }
        if not kustomization.get("resources"):
            # Flux's guard against kustomize's "kustomization.yaml is empty" error.
            kustomization["buildMetadata"] = ["originAnnotations"]
    _merge_spec(kustomization, spec, entry, _shown(kfile, tree))
    # Replace rather than write through: the file may be a link to one other builds share.
    kfile.unlink(missing_ok=True)
    kfile.write_text(yaml.safe_dump(kustomization, sort_keys=False, allow_unicode=True))


def _known_fields(loaded: dict[Any, Any]) -> dict[str, Any]:
    """The fields of kustomize's type, named as it names them; as with Go's decoder, an exact
    match wins over one that differs in case, and a later key over an earlier one."""
    known: dict[str, Any] = {}
    for exact in (False, True):
        for key, value in loaded.items():
            name = _KUSTOMIZATION_FIELDS.get(str(key).lower())
            if name is not None and (key == name) == exact:
                known[name] = value
    return known


def _merge_spec(
    kustomization: dict[str, Any], spec: KustomizationSpec, entry: Path, shown: str
) -> None:
    """Lay the spec's overlay fields over ``kustomization`` as Flux's generator does."""

    def listed(key: str) -> list[Any]:
        items = kustomization.setdefault(key, [])
        if not isinstance(items, list):
            raise BuildError(f"{shown}: '{key}' must be a list")
        return items

    if spec.target_namespace:
        kustomization["namespace"] = spec.target_namespace
    if spec.name_prefix:
        kustomization["namePrefix"] = spec.name_prefix
    if spec.name_suffix:
        kustomization["nameSuffix"] = spec.name_suffix
    for patch in spec.patches or []:
        entry_patch: dict[str, Any] = {"patch": patch.patch}
        if patch.target is not None:
            entry_patch["target"] = patch.target.to_dict()
        listed("patches").append(entry_patch)
    for component in spec.components or []:
        if _REMOTE.match(component) or posixpath.isabs(component):
            raise BuildError(f"component path '{component}' must be local and relative")
        if spec.ignore_missing_components and not (entry / component).exists():
            continue
        listed("components").append(component)
    for image in spec.images or []:
        images = listed("images")
        current = next(
            (i for i in images if isinstance(i, dict) and i.get("name") == image.name), None
        )
        if current is None:
            images.append(image.to_dict())
            continue
        if image.new_name:
            current["newName"] = image.new_name
        # Tag and digest select the version together: setting one clears the other.
        if image.new_tag or image.digest:
            for key, value in (("newTag", image.new_tag), ("digest", image.digest)):
                if value:
                    current[key] = value
                else:
                    current.pop(key, None)
    if spec.build_metadata:
        kustomization["buildMetadata"] = list(spec.build_metadata)


def _generated_kustomization(entry: Path, tree: Path) -> dict[str, Any]:
    """Flux's generated kustomization: every manifest below ``entry`` (``./<path>``), in the
    order Go's ``filepath.Walk`` visits them."""
    resources: list[str] = []

    def walk(directory: Path) -> None:
        for item in sorted(directory.iterdir(), key=lambda p: p.name):
            if item.is_dir() and not item.is_symlink():
                if any((item / name).is_file() for name in KUSTOMIZATION_FILES):
                    resources.append(_dot_relative(item, entry))
                else:
                    walk(item)
            elif item.suffix in (".yaml", ".yml"):
                _check_manifest(item, tree)
                resources.append(_dot_relative(item, entry))

    walk(entry)
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
    }
    if resources:
        kustomization["resources"] = resources
    else:
        # Flux's placeholder: kustomize refuses an empty kustomization.
        kustomization["namespace"] = "_placeholder"
    return kustomization


def _check_manifest(path: Path, tree: Path) -> None:
    try:
        documents = load_all(_read(path), what=_shown(path, tree), limits=_FILE_LIMITS)
    except (OSError, YAMLLoadError) as err:
        raise BuildError(
            f"failed to decode Kubernetes YAML from {_shown(path, tree)}: {_one_line(str(err))}"
        ) from None
    if any(doc is not None and not isinstance(doc, dict) for doc in documents):
        raise BuildError(
            f"failed to decode Kubernetes YAML from {_shown(path, tree)}: a document is not "
            "an object"
        )


def _load_all(path: Path, tree: Path) -> list[Any]:
    try:
        documents = load_all(_read(path), what=_shown(path, tree), limits=_FILE_LIMITS)
    except (OSError, YAMLLoadError) as err:
        raise BuildError(f"cannot read {_shown(path, tree)}: {_one_line(str(err))}") from None
    return [doc for doc in documents if doc is not None]


def _read(path: Path) -> bytes:
    """At most one byte more than the bound, so that a larger file is refused unread."""
    with path.open("rb") as file:
        return file.read(_MAX_FILE_BYTES + 1)


# Reading the output


def _summary(error: str, workdir: Path) -> str:
    """The worker's error on one line, with paths relative to the artifact root."""
    tree = workdir / "source"
    for prefix in {tree.resolve(), tree}:
        error = error.replace(f"{prefix}/", "").replace(str(prefix), ".")
    message = _one_line(error) or "no error output"
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return message


def _parse_objects(output: bytes) -> list[dict[str, Any]]:
    try:
        documents = load_all(output, what="kustomize build output", limits=_OUTPUT_LIMITS)
    except YAMLLoadError as err:
        raise BuildError(f"kustomize build output is not YAML: {_one_line(str(err))}") from None
    objects = []
    for doc in documents:
        if doc is None:
            continue
        metadata = doc.get("metadata") if isinstance(doc, dict) else None
        if not (
            isinstance(doc, dict)
            and doc.get("apiVersion")
            and doc.get("kind")
            and isinstance(metadata, dict)
            and metadata.get("name")
        ):
            raise BuildError(
                "failed to decode Kubernetes apiVersion, kind and name from: "
                + _one_line(yaml.safe_dump(doc, default_flow_style=True))[:300]
            )
        objects.append(doc)
    return objects


# Paths


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _dot_relative(path: Path, base: Path) -> str:
    return "./" + path.relative_to(base).as_posix()


def _shown(path: Path, tree: Path) -> str:
    """``path`` as the user knows it: relative to the artifact root."""
    try:
        return f"'{path.relative_to(tree).as_posix()}'"
    except ValueError:
        return f"'{path.name}'"


def _one_line(text: str) -> str:
    return " ".join(text.split())
