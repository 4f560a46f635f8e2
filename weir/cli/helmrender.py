"""A HelmRelease's next install or upgrade rendered by real Helm, in a child process, for
``weir diff helmrelease``.

Helm runs in process through ``helm_python``, whose Go runtime reads the environment once,
as it was at ``exec`` (:mod:`helm.launch`): Helm's homes (``HELM_CACHE_HOME``,
``HELM_CONFIG_HOME``, ``HELM_DATA_HOME``) and ``HELM_PLUGINS``, where the post-renderer plugin
must be, cannot be set by the ``weir`` process after it started. So ``weir`` never loads Helm:
:func:`render_release` starts a child Python (exec, never a bare fork) with those variables
pointing into a temporary directory of its own, so the user's Helm repositories and plugins
are neither read nor written, and with the request on its stdin. The child runs the
controller's own code: the options Flux derives from ``spec.install``/``spec.upgrade``
(``helm.helmrelease``), post-rendering as the controller does it (``helm.postrender``: origin
labels, ``commonMetadata``, ``postRenderers``), and ``HelmClient.render``, Helm's
``--dry-run=server`` upgrade (install when no release is stored). It writes its answer to a
file (stdout is left to whatever the libraries print).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helm.launch import HELM_HOME_VARIABLES, helm_environment

__all__ = ["RenderError", "Rendering", "render_release", "serve"]

# What the child may say on stderr, kept for the error message.
_MAX_STDERR = 4000
_CHILD = "import sys; from weir.cli.helmrender import serve; sys.exit(serve())"


class RenderError(Exception):
    """Helm could not render the release (its message), or the child failed."""


@dataclass(frozen=True)
class Rendering:
    """What Helm's dry run made: the action, the new manifest, and the stored release's
    manifest and revision (empty and 0 for an install)."""

    action: str
    manifest: str
    previous_manifest: str
    previous_version: int


async def render_release(
    helm_release: dict[str, Any],
    chart: Path,
    values: dict[str, Any],
    *,
    kubeconfig: str,
    workdir: Path,
) -> Rendering:
    """Render ``helm_release``'s next action from the packaged ``chart`` and the composed
    ``values`` in a child process; ``kubeconfig`` is a file ("" in a cluster: the pod's service
    account). ``workdir`` holds Helm's homes and the answer; the caller removes it. Cancelled,
    the child is killed."""
    home = workdir / "helm"
    answer = workdir / "rendered.json"
    kept = {k: v for k, v in os.environ.items() if k not in HELM_HOME_VARIABLES}
    request = {
        "helmRelease": helm_release,
        "chart": str(chart),
        "values": values,
        "kubeconfig": kubeconfig,
        "answer": str(answer),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        env=helm_environment(kept, home),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await child.communicate(json.dumps(request).encode())
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    try:
        result = json.loads(answer.read_text())
    except (OSError, ValueError):
        said = stderr.decode(errors="replace").strip()[-_MAX_STDERR:]
        raise RenderError(f"the Helm render exited with code {child.returncode}: {said}") from None
    if "error" in result:
        raise RenderError(str(result["error"]))
    return Rendering(
        action=str(result["action"]),
        manifest=str(result["manifest"]),
        previous_manifest=str(result.get("previousManifest") or ""),
        previous_version=int(result.get("previousVersion") or 0),
    )


def serve() -> int:
    """The child: read the request from stdin, render, write the answer file."""
    request = json.loads(sys.stdin.read())
    answer = Path(request["answer"])
    try:
        result = asyncio.run(_render(request))
    except Exception as err:  # every failure becomes the parent's message
        answer.write_text(json.dumps({"error": str(err) or type(err).__name__}))
        return 1
    answer.write_text(json.dumps(result))
    return 0


async def _render(request: dict[str, Any]) -> dict[str, Any]:
    # Imported here: this loads Helm's library, which only the child may do.
    from helm.api_v2 import HelmRelease
    from helm.client import HelmClient
    from helm.helmrelease import in_cluster_kubeconfig
    from helm.options import install_options, upgrade_options
    from helm.postrender import post_render_options

    obj = HelmRelease.model_validate(request["helmRelease"])
    path = request["kubeconfig"]
    client = (
        HelmClient(kubeconfig_path=path) if path else HelmClient(kubeconfig=in_cluster_kubeconfig())
    )
    try:
        with post_render_options(obj) as post_render:
            rendered = await client.render(
                obj.helm_release_name,
                request["chart"],
                request["values"],
                namespace=obj.release_namespace,
                storage_namespace=obj.storage_namespace,
                install=post_render.apply(install_options(obj)),
                upgrade=post_render.apply(upgrade_options(obj)),
            )
    finally:
        client.close()
    previous = rendered.previous
    return {
        "action": rendered.action,
        "manifest": rendered.manifest,
        "previousManifest": previous.manifest if previous is not None else "",
        "previousVersion": previous.version if previous is not None else 0,
    }
