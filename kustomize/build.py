"""Render a Kustomization: run the real ``kustomize build`` over a source artifact.

What Flux does (fluxcd/pkg ``kustomize.Generator`` and ``SecureBuild``), reproduced with the
kustomize binary:

- a directory without a kustomization file gets one listing its manifests: every ``.yaml`` and
  ``.yml`` file below it, and every subdirectory that has a kustomization file of its own (not
  descended into); other files are ignored;
- ``targetNamespace``, ``namePrefix``, ``nameSuffix`` and ``buildMetadata`` replace the
  kustomization's own, ``patches`` and ``components`` are appended, ``images`` are merged by
  name; ``commonMetadata`` is set on every object after the build;
- files may be loaded from anywhere in the artifact (``LoadRestrictionsNone``) but never from
  outside it.

Flux confines kustomize to the artifact with a filesystem that refuses paths outside it. A
separate binary cannot be given one, so the tree is copied to a temporary directory (the
source is never modified), symlinks out of it are refused, and every path a kustomization can
load from is checked before kustomize runs (``_check_tree``). kustomize itself keeps remote
bases inside their clones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from controllers.envtest import cache_dir, find_binary
from kustomize.api_v1 import KustomizationSpec

__all__ = ["KUSTOMIZATION_FILES", "BuildError", "build", "find_kustomize", "set_common_metadata"]

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
_KUSTOMIZATION_FIELDS = frozenset(_KUSTOMIZATION_FIELD_NAMES.split())
# Lists whose entries are loaded as kustomizations (directories) or files, and may be remote.
_RESOURCE_LISTS = ("resources", "bases", "components")
_PLUGIN_LISTS = ("generators", "transformers", "validators")
# Keys, at any depth of a kustomization or builtin plugin configuration, naming files to load.
_FILE_KEYS = frozenset(
    {
        "path",
        "paths",
        "files",
        "envs",
        "env",
        "crds",
        "configurations",
        "patchesStrategicMerge",
        "valuesFile",
        "additionalValuesFiles",
        "chartHome",
    }
)
# Keys holding user data (label and annotation values may well look like paths): not searched.
_USER_DATA_KEYS = frozenset(
    {"metadata", "commonLabels", "commonAnnotations", "labels", "annotations", "pairs", "literals"}
)
# What kustomize takes for a remote base rather than a local path (api/internal/git/repospec.go),
# besides http(s) files: a scheme, go-getter's git:: prefix, github.com shorthands, scp-like
# user@host:path.
_REMOTE = re.compile(
    r"^(?:git::|gh:|(?:https?|ssh|file)://|github\.com[/:]|[A-Za-z][A-Za-z0-9-]*@[^/:]+[/:])",
    re.IGNORECASE,
)

# libyaml's parser when PyYAML has it: outputs of thousands of objects parse ten times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_OUTPUT_BYTES = 256 * 1024 * 1024
_MAX_ERROR_BYTES = 64 * 1024
_MAX_MESSAGE_CHARS = 4000
# Passed on to kustomize (git needs PATH, remote bases may need a proxy); nothing else.
_ENV_PASSED = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY")


class BuildError(Exception):
    """The manifests could not be built; ``reason`` is the Flux condition reason
    (``BuildFailed``, or ``ArtifactFailed`` when the path is not in the artifact) and the
    message says what to fix."""

    def __init__(self, message: str, *, reason: str = "BuildFailed") -> None:
        super().__init__(message)
        self.reason = reason


def find_kustomize(explicit: str | None = None) -> Path:
    """The kustomize binary: ``explicit`` (a flag's value), else ``$WEIR_KUSTOMIZE``, else the
    one ``python -m controllers.envtest build`` put in the cache, else ``kustomize`` on PATH.

    Raises ``FileNotFoundError`` naming what was tried; a path given explicitly or in the
    environment must be an executable file (no fallback past a wrong setting).
    """
    for what, candidate in (
        ("given", explicit),
        ("from WEIR_KUSTOMIZE", os.environ.get("WEIR_KUSTOMIZE")),
    ):
        if candidate:
            if Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return Path(candidate)
            raise FileNotFoundError(
                f"kustomize binary {candidate} ({what}) is not an executable file"
            )
    if (cached := find_binary("kustomize")) is not None:
        return cached
    if on_path := shutil.which("kustomize"):
        return Path(on_path)
    raise FileNotFoundError(
        "kustomize binary not found: no path given, WEIR_KUSTOMIZE not set, not in the build "
        f"cache ({cache_dir()}) nor on PATH; build it with 'python -m controllers.envtest "
        "build' (run by hack/setup.sh) or set WEIR_KUSTOMIZE"
    )


async def build(
    root: Path,
    path: str,
    spec: KustomizationSpec,
    *,
    kustomize: Path,
    allow_remote_bases: bool,
    timeout: float,
) -> list[dict[str, Any]]:
    """The objects ``kustomize build`` makes of directory ``path`` of the artifact unpacked at
    ``root``, with the spec's overlay fields merged in as Flux does; ``root`` is not modified.

    Raises ``BuildError`` for a path outside the artifact or missing, a link or reference
    leaving the artifact, a remote base when ``allow_remote_bases`` is false, a kustomize
    failure, or a run longer than ``timeout`` seconds.
    """
    workdir = Path(tempfile.mkdtemp(prefix="weir-kustomize-"))
    tree = workdir / "source"
    try:
        entry = await asyncio.to_thread(_prepare, root, path, spec, tree, allow_remote_bases)
        output = await _run_kustomize(kustomize, entry, workdir, tree, timeout)
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
    root: Path, path: str, spec: KustomizationSpec, tree: Path, allow_remote_bases: bool
) -> Path:
    """Copy the artifact to ``tree``, write the overlay, check it; returns the entry directory."""
    # Flux joins the path under the root, so '/apps' means 'apps'.
    relative = posixpath.normpath(posixpath.join(".", (path or ".").lstrip("/")))
    if relative == ".." or relative.startswith("../"):
        raise BuildError(
            f"path '{path}' leaves the source artifact; use a path inside it",
            reason="ArtifactFailed",
        )
    _copy_tree(root.resolve(strict=True), tree)
    tree = tree.resolve()
    entry = tree / relative
    if not entry.is_dir() or not _inside(entry.resolve(), tree):
        raise BuildError(
            f"kustomization path not found: '{path}' is not a directory in the source artifact",
            reason="ArtifactFailed",
        )
    _write_overlay(entry, spec, tree)
    _check_tree(entry, tree, allow_remote_bases)
    return entry


def _copy_tree(source: Path, target: Path) -> None:
    """Copy regular files and directories; recreate symlinks that stay inside ``source`` as
    relative links, and refuse the others."""
    target.mkdir()
    for directory, dirnames, filenames in os.walk(source):
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
        loaded = _load_yaml(existing, tree)
        if not isinstance(loaded, dict):
            raise BuildError(f"{_shown(existing, tree)} is not a kustomization (not a mapping)")
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            **{key: value for key, value in loaded.items() if key in _KUSTOMIZATION_FIELDS},
        }
        if not kustomization.get("resources"):
            # Flux's guard against kustomize's "kustomization.yaml is empty" error.
            kustomization["buildMetadata"] = ["originAnnotations"]
    _merge_spec(kustomization, spec, entry, _shown(kfile, tree))
    # Replace rather than write through: the file may be a link to one other builds share.
    kfile.unlink(missing_ok=True)
    kfile.write_text(yaml.safe_dump(kustomization, sort_keys=False, allow_unicode=True))


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
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BuildError(
            f"failed to decode Kubernetes YAML from {_shown(path, tree)}: {_one_line(str(err))}"
        ) from None
    if any(doc is not None and not isinstance(doc, dict) for doc in documents):
        raise BuildError(
            f"failed to decode Kubernetes YAML from {_shown(path, tree)}: a document is not "
            "an object"
        )


# Checking what the kustomizations load


def _check_tree(entry: Path, tree: Path, allow_remote_bases: bool) -> None:
    """Refuse any path a kustomization reachable from ``entry`` would load from outside
    ``tree``, and any remote base when they are not allowed."""
    seen: set[Path] = set()

    def check_path(value: str, base: Path, source: Path) -> Path | None:
        if _REMOTE.match(value):
            if "file://" in value.lower():
                raise BuildError(
                    f"{_shown(source, tree)} refers to the local repository '{value}', which is "
                    "outside the source artifact; files can only be loaded from inside it"
                )
            if not allow_remote_bases:
                raise BuildError(
                    f"{_shown(source, tree)} refers to the remote base '{value}', which is not "
                    "allowed (--no-remote-bases): resources must be files of the source artifact"
                )
            return None
        target = Path(posixpath.normpath(base / value))
        if not _inside(target, tree) or not _inside(Path(os.path.realpath(target)), tree):
            raise BuildError(
                f"{_shown(source, tree)} refers to '{value}', which is outside the source "
                "artifact; files can only be loaded from inside it"
            )
        return target

    def check_kustomization(directory: Path, *, plugin: bool) -> None:
        if directory in seen:
            return
        seen.add(directory)
        kfile = next(directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file())
        document = _load_yaml(kfile, tree)
        if not isinstance(document, dict):
            return  # not a kustomization: kustomize says so
        for value in _file_references(document):
            check_path(value, directory, kfile)
        for key in (*_RESOURCE_LISTS, *_PLUGIN_LISTS):
            for value in _strings(document.get(key)):
                is_plugin = plugin or key in _PLUGIN_LISTS
                if "\n" in value:  # an inline plugin configuration
                    for config in _load_inline(value, kfile, tree):
                        for reference in _file_references(config):
                            check_path(reference, directory, kfile)
                    continue
                target = check_path(value, directory, kfile)
                if target is None:
                    continue
                if any((target / name).is_file() for name in KUSTOMIZATION_FILES):
                    check_kustomization(target, plugin=is_plugin)
                elif is_plugin and target.is_file():
                    for config in _load_all(target, tree):
                        for reference in _file_references(config):
                            check_path(reference, directory, target)

    check_kustomization(entry, plugin=False)


def _file_references(document: Any) -> Iterator[str]:
    """The values of file-naming keys anywhere in ``document``, without ``key=`` prefixes and
    inline patches."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key in _USER_DATA_KEYS:
                continue
            if key in _FILE_KEYS:
                for item in _strings(value):
                    if "\n" not in item:
                        yield item.split("=", 1)[1] if key == "files" and "=" in item else item
            else:
                yield from _file_references(value)
    elif isinstance(document, list):
        for item in document:
            yield from _file_references(item)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _load_yaml(path: Path, tree: Path) -> Any:
    documents = _load_all(path, tree)
    return documents[0] if documents else {}


def _load_all(path: Path, tree: Path) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BuildError(f"cannot read {_shown(path, tree)}: {_one_line(str(err))}") from None


def _load_inline(text: str, source: Path, tree: Path) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        raise BuildError(
            f"invalid inline configuration in {_shown(source, tree)}: {_one_line(str(err))}"
        ) from None


# Running kustomize


async def _run_kustomize(
    kustomize: Path, entry: Path, workdir: Path, tree: Path, timeout: float
) -> bytes:
    env = {name: os.environ[name] for name in _ENV_PASSED if name in os.environ}
    env |= {"HOME": str(workdir), "GIT_TERMINAL_PROMPT": "0", "LANG": "C"}
    process = await asyncio.create_subprocess_exec(
        str(kustomize),
        "build",
        "--load-restrictor",
        "LoadRestrictionsNone",
        str(entry),
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Its own process group, so a timeout also stops the git clones it started.
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        async with asyncio.timeout(timeout):
            output, errors = await asyncio.gather(
                _read_all(process.stdout, _MAX_OUTPUT_BYTES),
                _read_head(process.stderr, _MAX_ERROR_BYTES),
            )
            code = await process.wait()
    except TimeoutError:
        raise BuildError(f"kustomize build timed out after {timeout:g}s") from None
    except _TooLarge:
        raise BuildError(
            f"kustomize build output is larger than {_MAX_OUTPUT_BYTES // (1024 * 1024)} MiB"
        ) from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if code != 0:
        raise BuildError(f"kustomize build failed: {_summary(errors, tree)}")
    return output


class _TooLarge(Exception):
    pass


async def _read_all(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Everything ``stream`` yields; raises ``_TooLarge`` past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_head(stream: asyncio.StreamReader, limit: int) -> bytes:
    """The first ``limit`` bytes of ``stream``; the rest is read and dropped."""
    head = b""
    while chunk := await stream.read(64 * 1024):
        head = (head + chunk)[:limit]
    return head


def _summary(stderr: bytes, tree: Path) -> str:
    """kustomize's error on one line, with paths relative to the artifact root."""
    text = stderr.decode(errors="replace").replace(f"{tree}/", "").replace(str(tree), ".")
    # The error comes after any warnings, on a line of its own, and may span lines.
    error = re.search(r"^Error: (.*)", text, re.MULTILINE | re.DOTALL)
    message = _one_line(error[1] if error else text) or "no error output"
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return message


def _parse_objects(output: bytes) -> list[dict[str, Any]]:
    try:
        documents = [doc for doc in yaml.load_all(output, Loader=_LOADER) if doc is not None]
    except yaml.YAMLError as err:
        raise BuildError(f"kustomize build output is not YAML: {_one_line(str(err))}") from None
    objects = []
    for doc in documents:
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
