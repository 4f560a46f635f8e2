"""A HelmRelease's post-rendering, as Flux's helm-controller does it, through a Helm v4 plugin.

What Flux 2.8+ (helm-controller ``internal/postrender``) applies to the rendered objects of an
install or upgrade, in this order:

1. each ``spec.postRenderers[].kustomize``: a kustomize build of Helm's output with the
   renderer's ``patches`` (strategic merge or JSON 6902, with ``target``) and ``images``;
2. ``spec.commonMetadata``: its labels and annotations set on every object's own metadata (not
   on selectors or pod templates);
3. the origin labels ``helm.toolkit.fluxcd.io/name`` and ``/namespace`` on every object, last,
   so they win over a common label of the same key.

Step 3 always applies, so every install and upgrade is post-rendered. Which objects the
post-renderer sees (hooks too, by default) is ``spec.postRenderStrategy``, passed to Helm.

How: Helm v4 takes a post-renderer only as a plugin (``plugin.yaml`` of type
``postrenderer/v1``, ``runtime: subprocess``) found under ``HELM_PLUGINS``. The first use
writes the plugin ``weir-postrender`` into the first ``HELM_PLUGINS`` directory (the launcher
sets it at ``exec``: :mod:`helm.launch`); it is written, not shipped, because its command is
this process's own interpreter, running :mod:`helm.postrender_plugin` with ``python -I``. For
one Helm action, :func:`post_render_options` writes the builds (kustomizations: the same
kustomize binary the kustomize controller uses, builtin transformers only) to a temporary spec
file named in the plugin's arguments, and turns the plugin's failure into kustomize's reason.

Between the builds, kustomize orders objects as Flux's in-process kustomize does (its legacy
order; no reordering when there is no kustomize renderer); Helm then sorts them for install.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from controllers.binaries import find_binary
from helm import postrender_plugin
from helm.api_v2 import GROUP, HelmRelease, Kustomize, PostRenderStrategy
from helm.client import HelmError, InstallOptions, UpgradeOptions

__all__ = [
    "PLUGIN_NAME",
    "PostRenderError",
    "PostRenderOptions",
    "install_plugin",
    "kustomize_builds",
    "origin_labels",
    "post_render_options",
]

PLUGIN_NAME = "weir-postrender"
PLUGIN_VERSION = "1.0.0"

_KUSTOMIZATION_HEADER = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": [postrender_plugin.INPUT_FILE],
}
# Flux's common-metadata and origin-label transformers set only each object's own metadata.
_LABEL_FIELDS = [{"path": "metadata/labels", "create": True}]
_ANNOTATION_FIELDS = [{"path": "metadata/annotations", "create": True}]

Options = TypeVar("Options", InstallOptions, UpgradeOptions)


class PostRenderError(HelmError):
    """Post-rendering failed (a patch kustomize refused, a target it did not find, ...): the
    message is Helm's, with kustomize's reason in place of Helm's "plugin exited"."""


@dataclasses.dataclass(frozen=True, slots=True)
class PostRenderOptions:
    """The install/upgrade options that make Helm run weir's post-renderer."""

    post_renderer: str
    post_renderer_args: tuple[str, ...]
    post_render_strategy: PostRenderStrategy

    def apply(self, options: Options) -> Options:
        """``options`` with this post-renderer."""
        return dataclasses.replace(
            options,
            post_renderer=self.post_renderer,
            post_renderer_args=self.post_renderer_args,
            post_render_strategy=self.post_render_strategy,
        )


def origin_labels(obj: HelmRelease) -> dict[str, str]:
    """The labels naming the HelmRelease on every object it releases (Flux's)."""
    return {f"{GROUP}/name": obj.metadata.name, f"{GROUP}/namespace": obj.metadata.namespace or ""}


def kustomize_builds(obj: HelmRelease) -> list[dict[str, Any]]:
    """The kustomize builds post-rendering ``obj``'s objects, in order: one per kustomize
    post-renderer, the last one also setting common metadata and origin labels (kustomize runs
    a kustomization's ``transformers`` after its patches and images, Flux's order)."""
    renderers = [r.kustomize for r in obj.spec.post_renderers or () if r.kustomize is not None]
    builds = [{"kustomization": _kustomization(renderer), "files": {}} for renderer in renderers]
    if not builds:
        # Flux labels the objects without a kustomize build: keep Helm's order.
        kustomization = {**_KUSTOMIZATION_HEADER, "sortOptions": {"order": "fifo"}}
        builds.append({"kustomization": kustomization, "files": {}})
    files = _metadata_transformers(obj)
    last = builds[-1]
    last["files"] = files
    last["kustomization"]["transformers"] = list(files)
    return builds


def _kustomization(renderer: Kustomize) -> dict[str, Any]:
    kustomization: dict[str, Any] = dict(_KUSTOMIZATION_HEADER)
    if renderer.patches:
        kustomization["patches"] = [
            {"patch": patch.patch}
            | (
                {"target": patch.target.model_dump(by_alias=True, exclude_none=True)}
                if patch.target is not None
                else {}
            )
            for patch in renderer.patches
        ]
    if renderer.images:
        kustomization["images"] = [
            image.model_dump(by_alias=True, exclude_none=True) for image in renderer.images
        ]
    return kustomization


def _metadata_transformers(obj: HelmRelease) -> dict[str, str]:
    """Builtin transformer configs, file name -> content, applied in this order."""
    transformers: dict[str, dict[str, Any]] = {}
    common = obj.spec.common_metadata
    if common is not None and common.labels:
        transformers["common-labels.yaml"] = _labels("common-labels", common.labels)
    if common is not None and common.annotations:
        transformers["common-annotations.yaml"] = {
            "apiVersion": "builtin",
            "kind": "AnnotationsTransformer",
            "metadata": {"name": "common-annotations"},
            "annotations": common.annotations,
            "fieldSpecs": _ANNOTATION_FIELDS,
        }
    transformers["origin-labels.yaml"] = _labels("origin-labels", origin_labels(obj))
    return {name: json.dumps(config) for name, config in transformers.items()}


def _labels(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "builtin",
        "kind": "LabelTransformer",
        "metadata": {"name": name},
        "labels": labels,
        "fieldSpecs": _LABEL_FIELDS,
    }


# The plugin


def plugin_manifest(interpreter: str) -> dict[str, Any]:
    """``plugin.yaml`` of the plugin (Helm v4's plugin API v1)."""
    return {
        "apiVersion": "v1",
        "name": PLUGIN_NAME,
        "type": "postrenderer/v1",
        "runtime": "subprocess",
        "version": PLUGIN_VERSION,
        "runtimeConfig": {
            # Helm splits the command at spaces and appends the action's arguments to args.
            "platformCommand": [
                {"command": interpreter, "args": ["-I", postrender_plugin.__file__]}
            ]
        },
    }


def install_plugin(plugins_directory: Path) -> Path:
    """Write the plugin into ``plugins_directory`` (where Helm finds plugins: the first
    ``HELM_PLUGINS`` entry) unless it is there already; returns its directory."""
    interpreter = sys.executable
    if not interpreter or " " in interpreter:
        # Helm splits a plugin's command at spaces.
        raise PostRenderError(f"the post-renderer cannot run {interpreter!r}: a path with spaces")
    directory = plugins_directory / PLUGIN_NAME
    manifest = json.dumps(plugin_manifest(interpreter), indent=2) + "\n"  # YAML: JSON is YAML
    target = directory / "plugin.yaml"
    with contextlib.suppress(OSError):
        if target.read_text() == manifest:
            return directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: Helm may read the directory during another action.
        partial = directory / "plugin.yaml.partial"
        partial.write_text(manifest)
        os.replace(partial, target)
    except OSError as err:
        raise PostRenderError(f"the post-renderer plugin cannot be written: {err}") from None
    return directory


def _plugins_directory() -> Path:
    # Helm's Go runtime saw the environment at exec; os.environ is that environment unless
    # Python changed it, which the helm controller does not.
    entries = [entry for entry in os.environ.get("HELM_PLUGINS", "").split(os.pathsep) if entry]
    if not entries:
        raise PostRenderError(
            "HELM_PLUGINS is not set: start the helm controller through helm.launch"
        )
    return Path(entries[0])


@contextlib.contextmanager
def post_render_options(obj: HelmRelease) -> Iterator[PostRenderOptions]:
    """Post-render ``obj``'s next install or upgrade, run inside the ``with`` block:

        with post_render_options(obj) as post_render:
            await client.upgrade(..., options=post_render.apply(options))

    A post-rendering failure raised by the block comes out as :class:`PostRenderError` with
    kustomize's reason; the spec's temporary directory is removed on leaving the block (Helm has
    returned by then: the client waits for it even when cancelled)."""
    kustomize = find_binary("kustomize")
    if kustomize is None:
        raise PostRenderError("the kustomize binary for post-rendering is not found")
    install_plugin(_plugins_directory())
    directory = Path(tempfile.mkdtemp(prefix="weir-postrender-"))
    try:
        spec_file = directory / "spec.json"
        error_file = directory / "error"
        spec = {
            "kustomize": str(kustomize),
            "builds": kustomize_builds(obj),
            "workDirectory": str(directory),
        }
        spec_file.write_text(json.dumps(spec))
        options = PostRenderOptions(
            post_renderer=PLUGIN_NAME,
            post_renderer_args=(str(spec_file), str(error_file)),
            post_render_strategy=obj.spec.post_render_strategy or "combined",
        )
        try:
            yield options
        except HelmError as err:
            reason = _read_reason(error_file)
            if reason is None:
                raise
            raise PostRenderError(_explain(str(err), reason)) from err
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _read_reason(error_file: Path) -> str | None:
    try:
        with error_file.open(errors="replace") as file:
            return file.read(postrender_plugin.MAX_ERROR_CHARS + 200).strip() or None
    except OSError:
        return None


def _explain(helm_message: str, reason: str) -> str:
    # Helm says: `failed to invoke post-renderer plugin "X": plugin "X" exited with error`.
    said = f'failed to invoke post-renderer plugin "{PLUGIN_NAME}": plugin "{PLUGIN_NAME}" '
    start = helm_message.find(said)
    if start < 0:
        return f"{helm_message}: {reason}"
    end = helm_message.find("exited with error", start)
    end = end + len("exited with error") if end >= 0 else len(helm_message)
    return helm_message[:start] + reason + helm_message[end:]
