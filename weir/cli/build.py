"""``weir build kustomization``: a local directory rendered as the in-cluster Kustomization
would render it (``flux build``), as YAML on stdout."""

from __future__ import annotations

from pathlib import Path

import click

from weir.cli.app import Session, cluster_command, main
from weir.cli.kinds import group_of
from weir.cli.localbuild import build_locally, build_options
from weir.cli.output import to_yaml

__all__ = ["build"]


@group_of(main)
def build() -> None:
    """Render local manifests as a Kustomization in the cluster would.

    \b
    Example:
      weir build kustomization apps --path ./apps/production
    """


@build.command("kustomization")
@click.argument("name")
@build_options
@cluster_command
async def build_kustomization(
    session: Session,
    name: str,
    path: Path,
    kustomization_file: Path | None,
    strict_substitute: bool,
) -> None:
    """Build the directory --path with the spec of Kustomization NAME (from the cluster, or
    --kustomization-file) and print the objects the controller would apply.

    The controller's own build runs: the spec's overlay (targetNamespace, namePrefix,
    patches, images, components...), kustomize, postBuild substitution with the ConfigMaps
    and Secrets of substituteFrom read from the cluster, commonMetadata. SOPS-encrypted
    values are printed as **SOPS**, as flux build does.

    \b
    Examples:
      weir build kustomization apps --path ./apps/production
      weir build ks apps --path ./apps/production --kustomization-file ./clusters/prod/apps.yaml
    """
    client = await session.client()
    local = await build_locally(
        client,
        name,
        session.namespace,
        path,
        kustomization_file,
        strict=strict_substitute,
        timeout=session.timeout,
    )
    click.echo(to_yaml(local.objects), nl=False)


build.add_aliases("kustomization", ("kustomizations", "ks"))
