"""Where the binaries weir builds from pinned Go modules are found (lookup only, no building).

The kustomize controller runs two of them (the kustomize build worker and sops), the image
automation controller one (gotemplate, which renders commit messages as Flux does); the tests
and the local control plane run the rest (helm, for one, lints and renders ``charts/weir``). For a
binary ``name`` the lookup order is:

1. ``WEIR_<NAME>`` (e.g. ``WEIR_SOPS``, ``WEIR_KUBE_APISERVER``), a path;
2. ``$KUBEBUILDER_ASSETS/<name>``;
3. the cache (``$WEIR_CACHE_DIR``, default ``~/.cache/weir``), at
   ``<name>-<hash of its Go module's pins>/<name>``.

The pins are a module directory's ``go.mod``, or, for a module that no wrapper module can
require (Gitea's go.mod names another path than the one it is served under), its
``module.txt``: one line ``<module path> <version> <h1: hash>``.

``controllers.envtest`` (test and development support) builds into the cache what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

__all__ = ["BUILT", "DOWNLOADED_MODULE_PIN", "cache_dir", "cached_path", "find_binary"]

_REPO_ROOT = Path(__file__).resolve().parent.parent
_CONTROL_PLANE_MODULE = _REPO_ROOT / "tests" / "controlplane"
_KUSTOMIZE_MODULE = _REPO_ROOT / "hack" / "tools" / "kustomize"
_SOPS_MODULE = _REPO_ROOT / "hack" / "tools" / "sops"
_HELM_MODULE = _REPO_ROOT / "hack" / "tools" / "helm"
_GITEA_MODULE = _REPO_ROOT / "hack" / "tools" / "gitea"
_GOTEMPLATE_MODULE = _REPO_ROOT / "hack" / "tools" / "gotemplate"
BUILT = {
    "etcd": (_CONTROL_PLANE_MODULE / "etcd", "go.etcd.io/etcd/server/v3"),
    "kube-apiserver": (_CONTROL_PLANE_MODULE, "k8s.io/kubernetes/cmd/kube-apiserver"),
    "kube-controller-manager": (
        _CONTROL_PLANE_MODULE,
        "k8s.io/kubernetes/cmd/kube-controller-manager",
    ),
    "kube-scheduler": (_CONTROL_PLANE_MODULE, "k8s.io/kubernetes/cmd/kube-scheduler"),
    "kwok": (_CONTROL_PLANE_MODULE / "kwok", "sigs.k8s.io/kwok/cmd/kwok"),
    "minio": (_REPO_ROOT / "tests" / "s3", "github.com/minio/minio"),
    "kustomize": (_KUSTOMIZE_MODULE, "sigs.k8s.io/kustomize/kustomize/v5"),
    # The kustomize controller's build worker: weir's own Go code on the same kustomize pins.
    "kustomize-build-worker": (
        _KUSTOMIZE_MODULE,
        "github.com/weir/hack/tools/kustomize/buildworker",
    ),
    "sops": (_SOPS_MODULE, "github.com/getsops/sops/v3/cmd/sops"),
    "age-keygen": (_SOPS_MODULE, "filippo.io/age/cmd/age-keygen"),
    "helm": (_HELM_MODULE, "helm.sh/helm/v4/cmd/helm"),
    # The image automation controller's commit message renderer: weir's own Go code on Go's
    # text/template and Sprig, as Flux renders messageTemplate.
    "gotemplate": (_GOTEMPLATE_MODULE, "github.com/weir/hack/tools/gotemplate"),
    # The tests' Git host; built from its own downloaded module directory (see module.txt).
    "gitea": (_GITEA_MODULE, "code.gitea.io/gitea"),
}
"""Binaries with a place in the cache: name -> (Go module directory, package)."""

_OWN_GO_PACKAGES = "github.com/weir/"
DOWNLOADED_MODULE_PIN = "module.txt"
"""The pin file of a module built in its own downloaded directory instead of through go.mod."""


def cache_dir() -> Path:
    """The build cache: ``$WEIR_CACHE_DIR``, else ``$XDG_CACHE_HOME/weir`` or ``~/.cache/weir``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weir"
    return Path(os.environ.get("WEIR_CACHE_DIR", default))


def cached_path(name: str) -> Path:
    """Where the cache keeps ``name`` (one of ``BUILT``): keyed by its own module's pins and Go
    sources, so changing one go.mod (or weir's own Go code) rebuilds what it pins and nothing
    else."""
    module, package = BUILT[name]
    pins = hashlib.sha256()
    for pin_file in ("go.mod", DOWNLOADED_MODULE_PIN):
        with contextlib.suppress(OSError):
            pins.update((module / pin_file).read_bytes())
    own = package.startswith(_OWN_GO_PACKAGES)
    for source in sorted(module.rglob("*.go")) if own else ():
        pins.update(str(source.relative_to(module)).encode() + b"\0" + source.read_bytes())
    return cache_dir() / f"{name}-{pins.hexdigest()[:12]}" / name


def find_binary(name: str) -> Path | None:
    """Where ``name`` is, by the lookup order in the module docstring; None if nowhere."""
    explicit = os.environ.get("WEIR_" + name.upper().replace("-", "_"))
    if explicit:
        return Path(explicit)
    candidates = []
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(assets) / name)
    if name in BUILT:
        candidates.append(cached_path(name))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
