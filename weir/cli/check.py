"""``weir check``: whether the cluster can run weir (``--pre``), and whether weir runs in it.

One line per check, ``✔`` or ``✗``, as ``flux check`` prints them; exit 1 when any failed.
What is checked is the state at that moment: the command does not wait.
"""

from __future__ import annotations

import re
from typing import Any

import click

from controllers.discovery import RestMapper
from controllers.kube import KubeClient
from weir.bundle import BundleOptions, crds
from weir.cli.app import CliError, Session, cluster_command, fail, main, note
from weir.cli.install import components_options, established, rollout_problem

__all__ = ["MIN_KUBERNETES", "check", "kubernetes_version"]

MIN_KUBERNETES = (1, 30)
"""The oldest Kubernetes weir supports: major 1, minor 30 or later, as the API server reports
them at ``/version`` (a provider's suffix, ``30+`` or ``-eks-...``, is ignored). A floor chosen,
not measured: weir's CRDs need CEL validation rules (GA in 1.29), and weir is tested on 1.34
(the local control plane) only."""


def kubernetes_version(answer: dict[str, Any]) -> tuple[int, int] | None:
    """(major, minor) from the API server's ``/version`` answer; None when it says neither."""
    major = re.match(r"\d+", str(answer.get("major") or ""))
    minor = re.match(r"\d+", str(answer.get("minor") or ""))
    if major and minor:
        return int(major[0]), int(minor[0])
    found = re.match(r"v?(\d+)\.(\d+)", str(answer.get("gitVersion") or ""))
    return (int(found[1]), int(found[2])) if found else None


def _passed(message: str) -> bool:
    note(f"✔ {message}")
    return True


def _failed(message: str) -> bool:
    fail(message)
    return False


async def _check_kubernetes(client: KubeClient) -> bool:
    answer = await client.request("GET", "/version")
    shown = answer.get("gitVersion") or "unknown"
    floor = ".".join(map(str, MIN_KUBERNETES))
    found = kubernetes_version(answer)
    if found is None:
        return _failed(f"cannot tell the Kubernetes version from {shown!r}")
    if found < MIN_KUBERNETES:
        return _failed(f"Kubernetes {shown} is older than {floor}")
    return _passed(f"Kubernetes {shown} >={floor}")


async def _check_controllers(
    client: KubeClient, mapper: RestMapper, options: BundleOptions
) -> bool:
    info = await mapper.resource_for("apps/v1", "Deployment")
    ok = True
    for name in options.components:
        title = f"Deployment {options.namespace}/{name}"
        deployment = await client.get_or_none(info, options.namespace, name)
        if deployment is None:
            ok = _failed(f"{title} not found")
            continue
        problem = rollout_problem(deployment)
        if problem is not None:
            ok = _failed(f"{title} is not available: {problem}")
            continue
        images = ", ".join(c["image"] for c in deployment["spec"]["template"]["spec"]["containers"])
        _passed(f"{title} is available ({images})")
    return ok


async def _check_crds(client: KubeClient, mapper: RestMapper, options: BundleOptions) -> bool:
    info = await mapper.resource_for("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    ok = True
    for wanted in crds(options):
        name = wanted["metadata"]["name"]
        title = f"CustomResourceDefinition {name}"
        crd = await client.get_or_none(info, None, name)
        if crd is None:
            ok = _failed(f"{title} is not installed")
        elif not established(crd):
            ok = _failed(f"{title} is not established")
        else:
            _passed(f"{title} is established")
    return ok


@main.command()
@click.option("--pre", is_flag=True, help="only the prerequisites (the Kubernetes version).")
@components_options
@cluster_command
async def check(session: Session, pre: bool, components: tuple[str, ...]) -> None:
    """Check that the cluster can run weir (--pre), and that weir's controllers and CRDs are
    installed and ready; exit 1 if any check fails.

    \b
    Examples:
      weir check --pre
      weir check -n flux-system
    """
    client = await session.client()
    note("► checking prerequisites")
    ok = await _check_kubernetes(client)
    if not pre:
        options = BundleOptions(namespace=session.namespace, components=components)
        mapper = RestMapper(client)
        note("► checking controllers")
        ok = await _check_controllers(client, mapper, options) and ok
        note("► checking CRDs")
        ok = await _check_crds(client, mapper, options) and ok
    if not ok:
        raise CliError("check failed")
    note("✔ all checks passed" if not pre else "✔ prerequisites checks passed")
