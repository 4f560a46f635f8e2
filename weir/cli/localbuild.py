"""A Kustomization built from a local directory as the controller builds it from its source
artifact, for ``weir build`` and ``weir diff``.

It runs the controller's own code: the overlay of the spec (``targetNamespace``, ``namePrefix``,
``patches``, ``images``, ``components``...) and kustomize in a build worker
(``kustomize.build``), then ``postBuild`` substitution, reading ``substituteFrom`` from the
cluster, and ``commonMetadata`` (``kustomize.postbuild``). Where ``flux build`` differs from
the controller, so does this: SOPS-encrypted Secret values are masked, never decrypted, and the
owner labels the apply would add are set.

The build may read the Git checkout that holds the directory (everything but ``.git``), as the
controller reads the whole artifact: ``../base`` works as it does in the cluster.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from controllers import safeyaml
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from kustomize.apply.manager import owner_labels
from kustomize.build import BuildError, build
from kustomize.buildworker import BuildWorkers, find_build_worker
from kustomize.postbuild import post_build
from kustomize.substitute import SubstitutionError
from weir.cli.app import CliError, Exit

__all__ = [
    "ENCODED_SOPS_MASK",
    "SOPS_MASK",
    "LocalBuild",
    "build_locally",
    "build_options",
    "checkout_of",
    "mask_encrypted_values",
]

KS = Kustomization.info
# What flux build writes in place of SOPS-encrypted values.
SOPS_MASK = "**SOPS**"
ENCODED_SOPS_MASK = base64.b64encode(SOPS_MASK.encode()).decode()
_DOCKER_CONFIG = "kubernetes.io/dockerconfigjson"
_SKIPPED_DIRS = frozenset({".git"})
_MAX_FILE_BYTES = 16 * 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])


def build_options(command: F) -> F:
    """``--path``, ``--kustomization-file`` and ``--strict-substitute``."""
    command = click.option(
        "--strict-substitute",
        is_flag=True,
        help="an unset variable without a default is an error (the controller's "
        "StrictPostBuildSubstitutions feature gate).",
    )(command)
    command = click.option(
        "--kustomization-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="take the Kustomization from this YAML file instead of the cluster.",
    )(command)
    return click.option(
        "--path",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="the local directory that spec.path names.",
    )(command)


@dataclass
class LocalBuild:
    """The Kustomization built, the objects it gives, and the live object when there is one
    (its inventory says what was applied before)."""

    kustomization: Kustomization
    live: dict[str, Any] | None
    objects: list[dict[str, Any]]


def checkout_of(path: Path) -> tuple[Path, str]:
    """The directory a build of ``path`` may read (the Git checkout holding it, else ``path``
    itself) and ``path`` relative to it."""
    path = path.resolve()
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate, path.relative_to(candidate).as_posix()
    return path, "."


async def build_locally(
    client: KubeClient,
    name: str,
    namespace: str,
    path: Path,
    kustomization_file: Path | None,
    *,
    strict: bool,
    timeout: float,
    root: Path | None = None,
) -> LocalBuild:
    """Build ``path`` as Kustomization ``namespace/name`` (from the cluster, or from
    ``kustomization_file``) would be built; ``CliError`` when it cannot be. The build may read
    ``root`` (an unpacked artifact holding ``path``), by default the Git checkout holding it."""
    live = await client.get_or_none(KS, namespace, name)
    if kustomization_file is not None:
        manifest = _from_file(kustomization_file, name, namespace)
    elif live is None:
        raise CliError(f"Kustomization {namespace}/{name} not found", Exit.NOT_FOUND)
    else:
        manifest = live
    try:
        kustomization = Kustomization.from_dict(manifest)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"invalid Kustomization: {where}: {first['msg']}", Exit.USAGE) from None
    try:
        binary = find_build_worker()
    except FileNotFoundError as err:
        raise CliError(str(err), Exit.USAGE) from None
    root, relative = checkout_of(path) if root is None else _within(root, path)
    # One build: one worker; remote bases allowed, as the controller allows them by default.
    workers = BuildWorkers(binary, allow_remote_bases=True, max_workers=1)
    try:
        objects = await build(
            root,
            relative,
            kustomization.spec,
            workers=workers,
            timeout=timeout,
            skip_dirs=_SKIPPED_DIRS,
        )
        mask_encrypted_values(objects)
        objects = await post_build(client, kustomization, objects, strict=strict)
    except (BuildError, SubstitutionError) as err:
        raise CliError(str(err), Exit.USAGE) from None
    finally:
        await workers.close()
    labels = owner_labels(name, namespace)
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    return LocalBuild(kustomization, live, objects)


def _within(root: Path, path: Path) -> tuple[Path, str]:
    """``root`` and ``path`` relative to it (``path`` is inside ``root``)."""
    root = root.resolve()
    return root, path.resolve().relative_to(root).as_posix()


def _from_file(file: Path, name: str, namespace: str) -> dict[str, Any]:
    """The Kustomization ``name`` of ``file`` (in ``namespace``, or in none, given it)."""
    try:
        with file.open("rb") as opened:
            text = opened.read(_MAX_FILE_BYTES + 1)
        documents = safeyaml.load_all(text, what=f"'{file}'")
    except (OSError, safeyaml.YAMLLoadError) as err:
        raise CliError(f"cannot read the kustomization file: {err}", Exit.USAGE) from None
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != KS.kind:
            continue
        if not str(doc.get("apiVersion") or "").startswith(f"{KS.group}/"):
            continue
        meta = doc.get("metadata") or {}
        if meta.get("name") == name and meta.get("namespace") in (None, "", namespace):
            return {**doc, "metadata": {**meta, "namespace": namespace}}
    raise CliError(f"no Kustomization {namespace}/{name} in {file}", Exit.USAGE)


def _mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` when it is a mapping (changes reach ``obj``), else a new empty one."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def mask_encrypted_values(objects: list[dict[str, Any]]) -> None:
    """Flux's ``maskSopsData``, in place: a Secret encrypted as a whole loses its ``sops``
    metadata and every value; otherwise each value that is a SOPS document is masked."""
    for obj in objects:
        if obj.get("kind") != "Secret":
            continue
        data = _mapping(obj, "data")
        string_data = _mapping(obj, "stringData")
        sops = obj.get("sops")
        if isinstance(sops, dict) and "ENC[" in str(sops.get("mac") or ""):
            del obj["sops"]
            plain = SOPS_MASK
            if obj.get("type") == _DOCKER_CONFIG:
                plain = json.dumps({"mask": SOPS_MASK}, separators=(",", ":"))
            encoded = base64.b64encode(plain.encode()).decode()
            for key in data:
                data[key] = encoded
            for key in string_data:
                string_data[key] = plain
            continue
        for key, value in data.items():
            try:
                decoded = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                continue  # the API server refuses it on apply; nothing to hide
            if b"sops" in decoded and b"ENC[" in decoded:
                data[key] = ENCODED_SOPS_MASK
        for key, value in string_data.items():
            if "sops" in str(value) and "ENC[" in str(value):
                string_data[key] = SOPS_MASK
