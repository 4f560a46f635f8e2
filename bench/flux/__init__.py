"""Flux's source-controller, kustomize-controller, helm-controller, image-reflector-controller
and image-automation-controller as released, for the benchmarks to run beside weir's
controllers.

Each is built once from its pinned Go module (``bench/flux/<name>/go.mod``: the controller's own
requirements and replace lines) into weir's cache, ``<cache>/flux-<name>-<hash of go.mod>/``:
the binary ``<name>``, and ``crds/``, the CRDs of the controller's module zip
(``config/crd/bases/``), so a run needs neither Go nor the module cache once built. Changing a
go.mod builds that controller again; nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from controllers.binaries import cache_dir

__all__ = ["FLUX_CONTROLLERS", "VERSION", "FluxBuildError", "FluxController", "ensure_flux"]

# The source-controller's and kustomize-controller's release; each controller names its own.
VERSION = "v1.9.6"
_MODULES = Path(__file__).resolve().parent


class FluxBuildError(RuntimeError):
    """A Flux controller could not be built; the message says why."""


@dataclass(frozen=True)
class FluxController:
    """One Flux controller: its Go module under bench/flux/, its main package and its release
    (as pinned in that go.mod)."""

    name: str
    package: str
    version: str = VERSION

    @property
    def module(self) -> Path:
        return _MODULES / self.name

    @property
    def cache_entry(self) -> Path:
        """``<cache>/flux-<name>-<hash of go.mod>``: the binary and ``crds/``."""
        pins = hashlib.sha256((self.module / "go.mod").read_bytes()).hexdigest()[:12]
        return cache_dir() / f"flux-{self.name}-{pins}"

    @property
    def binary(self) -> Path:
        return self.cache_entry / self.name

    @property
    def crd_dir(self) -> Path:
        return self.cache_entry / "crds"

    def is_built(self) -> bool:
        return self.binary.is_file() and self.crd_dir.is_dir()


FLUX_CONTROLLERS = (
    FluxController("source-controller", "github.com/fluxcd/source-controller"),
    FluxController("kustomize-controller", "github.com/fluxcd/kustomize-controller"),
    # v1.6.2, not v1.6.3: see bench/flux/helm-controller/go.mod.
    FluxController("helm-controller", "github.com/fluxcd/helm-controller", "v1.6.2"),
    FluxController(
        "image-reflector-controller", "github.com/fluxcd/image-reflector-controller", "v1.2.0"
    ),
    # v1.2.0, not v1.2.1: see bench/flux/image-automation-controller/go.mod.
    FluxController(
        "image-automation-controller", "github.com/fluxcd/image-automation-controller", "v1.2.0"
    ),
)


def ensure_flux(
    names: tuple[str, ...] = ("source-controller", "kustomize-controller"),
) -> dict[str, FluxController]:
    """The Flux controllers ``names``, each built first if its cache entry is missing (the first
    time: about 5 minutes for the source and kustomize controllers on 2 cores, about as long
    for the helm-controller, more with a cold Go build cache)."""
    chosen = [controller for controller in FLUX_CONTROLLERS if controller.name in names]
    for controller in chosen:
        if not controller.is_built():
            _build(controller)
    return {controller.name: controller for controller in chosen}


def _build(controller: FluxController) -> None:
    if not shutil.which("go"):
        raise FluxBuildError(f"cannot build Flux's {controller.name}: no Go toolchain on PATH")
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Built in a staging directory and renamed, so an interrupted build leaves no entry behind.
    staging = Path(tempfile.mkdtemp(prefix="weir-build-", dir=cache_dir()))
    staging.chmod(0o755)
    started = time.monotonic()
    print(
        f"building Flux's {controller.name} {controller.version} into {cache_dir()}"
        " (first time only)",
        flush=True,
    )
    try:
        output = staging / controller.name
        subprocess.run(
            [
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                str(output),
                controller.package,
            ],
            cwd=controller.module,
            check=True,
        )
        listed = subprocess.run(
            ["go", "list", "-m", "-json", controller.package],
            cwd=controller.module,
            check=True,
            capture_output=True,
            text=True,
        )
        source = Path(json.loads(listed.stdout)["Dir"]) / "config" / "crd" / "bases"
        shutil.copytree(source, staging / "crds")
        (staging / "crds").chmod(0o755)
        for crd in (staging / "crds").iterdir():
            crd.chmod(0o644)  # the module cache's files are read-only
        shutil.rmtree(controller.cache_entry, ignore_errors=True)
        staging.rename(controller.cache_entry)
    except subprocess.CalledProcessError as err:
        raise FluxBuildError(
            f"building Flux's {controller.name} failed with exit code {err.returncode}"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"built Flux's {controller.name} in {time.monotonic() - started:.0f}s", flush=True)
