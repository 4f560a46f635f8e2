"""``weir uninstall``: weir's controllers and CRDs out of the cluster; what they applied stays.

What ``flux uninstall`` removes, found the same way (by the labels ``weir.bundle`` puts on the
install's objects), in an order that can neither hang nor touch the user's workloads:

1. the controllers' Deployments, deleted in the foreground and waited for until their pods
   are gone: a controller still running would put its finalizer back, and would prune a
   Kustomization's objects when the CRD's deletion deletes the Kustomization;
2. weir's finalizer (``finalizers.fluxcd.io``) from every object of weir's kinds, in every
   namespace, so that deleting the CRDs waits for no controller;
3. the rest of the install in the namespace and its cluster-wide RBAC, then the CRDs (which
   deletes the objects of weir's kinds, not what they applied), waited for until gone;
4. the namespace, unless ``--keep-namespace``, and only when the install labelled it (it
   goes with everything in it, as with ``flux uninstall``).

``--dry-run`` sends every deletion with ``dryRun=All`` and waits for nothing.
"""

from __future__ import annotations

from typing import Any

import click

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper
from controllers.kube import KubeClient, NotFound, resource_path
from controllers.patch import patch_finalizers
from controllers.reconcile import FINALIZER
from weir.bundle import INSTANCE_LABEL, PART_OF, PART_OF_LABEL, BundleOptions, render
from weir.cli.app import Session, cluster_command, err_console, main, note
from weir.cli.install import CRD_KIND, title_of, wait_for

__all__ = ["uninstall"]

# Handled in their own steps, in this order.
_DEPLOYMENT = ("apps/v1", "Deployment")
_CRD = ("apiextensions.k8s.io/v1", CRD_KIND)
_NAMESPACE = ("v1", "Namespace")


def _installed_kinds() -> list[tuple[str, str]]:
    """Every (apiVersion, kind) a full install has, but the three of their own steps; the
    bundle's order reversed, so that what uses an object goes before it."""
    kinds = dict.fromkeys((obj["apiVersion"], obj["kind"]) for obj in render(BundleOptions()))
    return [kind for kind in reversed(kinds) if kind not in (_DEPLOYMENT, _CRD, _NAMESPACE)]


def _gone(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else "still there"


class _Uninstall:
    """One run: the client, the namespace, and whether deletions are only tried."""

    def __init__(self, client: KubeClient, session: Session, dry_run: bool) -> None:
        self.client = client
        self.mapper = RestMapper(client)
        self.namespace = session.namespace
        self.timeout = session.timeout
        self.dry_run = dry_run
        self.selector = f"{PART_OF_LABEL}={PART_OF},{INSTANCE_LABEL}={self.namespace}"
        self.suffix = " (dry run)" if dry_run else ""

    async def listed(
        self, kind: tuple[str, str], selector: str
    ) -> tuple[ResourceInfo, list[dict[str, Any]]]:
        """The objects of ``kind`` the selector finds, in the namespace if the kind has one;
        each with its apiVersion and kind set (list items have neither)."""
        info = await self.mapper.resource_for(*kind)
        namespace = self.namespace if info.namespaced else None
        items = (await self.client.list(info, namespace, label_selector=selector))["items"]
        return info, [{"apiVersion": kind[0], "kind": kind[1], **item} for item in items]

    async def delete(
        self, info: ResourceInfo, obj: dict[str, Any], propagation: str = "Background"
    ) -> None:
        meta = obj["metadata"]
        body: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        }
        if self.dry_run:
            # In the body: the API server reads no query parameter of a DELETE that has one.
            body["dryRun"] = ["All"]
        path = resource_path(info, meta.get("namespace"), meta["name"])
        try:
            await self.client.request("DELETE", path, body=body)
        except NotFound:
            return
        note(f"✔ {title_of(obj)} deleted{self.suffix}")

    async def stop_controllers(self) -> None:
        info, deployments = await self.listed(_DEPLOYMENT, self.selector)
        note(f"► stopping the controllers in the {self.namespace} namespace")
        for deployment in deployments:
            # Foreground: the Deployment goes only once its ReplicaSets and pods are gone.
            await self.delete(info, deployment, "Foreground")
        if not self.dry_run and deployments:
            with err_console.status("waiting for the controllers' pods to be gone"):
                await wait_for(self.client, self.mapper, deployments, _gone, self.timeout)

    async def remove_finalizers(self, crds: list[dict[str, Any]]) -> None:
        note("► removing weir's finalizers in every namespace")
        for crd in crds:
            spec = crd["spec"]
            storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
            info = ResourceInfo(
                group=spec["group"],
                version=storage,
                kind=spec["names"]["kind"],
                plural=spec["names"]["plural"],
                namespaced=spec.get("scope") == "Namespaced",
            )
            try:
                objects = (await self.client.list(info))["items"]
            except NotFound:  # a CRD on its way out, its kind no longer served
                continue
            for obj in objects:
                if FINALIZER not in (obj["metadata"].get("finalizers") or []):
                    continue
                title = title_of({"kind": info.kind, **obj})
                if not self.dry_run:
                    try:
                        await patch_finalizers(self.client, info, obj, remove=FINALIZER)
                    except NotFound:
                        continue
                note(f"✔ {title}: finalizer removed{self.suffix}")

    async def delete_the_rest(self) -> None:
        note(f"► deleting the install in the {self.namespace} namespace")
        for kind in _installed_kinds():
            info, objects = await self.listed(kind, self.selector)
            for obj in objects:
                await self.delete(info, obj)

    async def delete_crds(self, crds: list[dict[str, Any]]) -> None:
        note("► deleting weir's CustomResourceDefinitions")
        info = await self.mapper.resource_for(*_CRD)
        for crd in crds:
            await self.delete(info, crd)
        if not self.dry_run and crds:
            with err_console.status("waiting for the CustomResourceDefinitions to be gone"):
                await wait_for(self.client, self.mapper, crds, _gone, self.timeout)

    async def delete_namespace(self) -> None:
        info = await self.mapper.resource_for(*_NAMESPACE)
        namespace = await self.client.get_or_none(info, None, self.namespace)
        if namespace is None:
            return
        labels = namespace["metadata"].get("labels") or {}
        if labels.get(PART_OF_LABEL) != PART_OF:
            note(f"  namespace {self.namespace} was not made by weir install: kept")
            return
        await self.delete(info, {"apiVersion": "v1", "kind": "Namespace", **namespace})


@main.command()
@click.option("--keep-namespace", is_flag=True, help="leave the namespace in place.")
@click.option("--dry-run", is_flag=True, help="only say what would be deleted.")
@cluster_command
async def uninstall(session: Session, keep_namespace: bool, dry_run: bool) -> None:
    """Remove weir's controllers, RBAC and CRDs, and the namespace; what the controllers
    applied stays.

    The objects of weir's kinds (sources, Kustomizations) go with the CRDs, without their
    finalizers, so that nothing is pruned; the workloads they applied are left alone.

    \b
    Examples:
      weir uninstall --dry-run
      weir uninstall -n flux-system --keep-namespace
    """
    client = await session.client()
    run = _Uninstall(client, session, dry_run)
    await run.stop_controllers()
    # Every install's CRDs: they are cluster-wide, as in flux uninstall.
    _, crds = await run.listed(_CRD, f"{PART_OF_LABEL}={PART_OF}")
    await run.remove_finalizers(crds)
    await run.delete_the_rest()
    await run.delete_crds(crds)
    if not keep_namespace:
        await run.delete_namespace()
    note(f"✔ uninstall finished{run.suffix}")
