"""A REST mapper: from an object's ``apiVersion`` and ``kind`` to where it lives in the API.

The mapper reads the API server's discovery documents, the aggregated ``/api`` and ``/apis``
(``apidiscovery.k8s.io/v2``, one request each for every group) when the server serves them,
else one ``/apis/<group>/<version>`` resource list per group version on demand. What it learns
is cached; a kind it does not know triggers one refresh of that group version before it gives
up, so a CustomResourceDefinition applied a moment ago becomes mappable without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from controllers.api import ResourceInfo
from controllers.kube import KubeClient, NotFound

__all__ = ["RestMapper", "UnknownKind", "split_api_version"]

AGGREGATED_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)


class UnknownKind(LookupError):
    """The API server serves no resource of this kind in this group version."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f'no matches for kind "{kind}" in version "{api_version}"')
        self.api_version = api_version
        self.kind = kind


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` as ``("apps", "v1")``; the core group's ``v1`` as ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def _group_version_path(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


class RestMapper:
    """``(apiVersion, kind)`` to ``ResourceInfo``, shared by every task of one process."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        # (group, version) -> kind -> info; a group version present with no kinds is known empty.
        self._kinds: dict[tuple[str, str], dict[str, ResourceInfo]] = {}
        self._loaded = False
        # Whether _load_all read every group version (aggregated discovery).
        self._complete = False
        self._lock = asyncio.Lock()

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        """Where objects of ``kind`` in ``api_version`` live; ``UnknownKind`` if nowhere.

        A miss re-reads that group version from the server once, so kinds added since the
        last read (a new CRD) are found.
        """
        group, version = split_api_version(api_version)
        if not version or not kind:
            raise UnknownKind(api_version, kind)
        async with self._lock:
            if not self._loaded:
                await self._load_all()
            found = self._kinds.get((group, version), {}).get(kind)
            if found is None:
                await self._load_group_version(group, version)
                found = self._kinds.get((group, version), {}).get(kind)
        if found is None:
            raise UnknownKind(api_version, kind)
        return found

    async def kinds(self) -> list[ResourceInfo]:
        """Every kind the server serves, in discovery's order: the core group first, and in
        each group its preferred version first (how ``kubectl`` picks among kinds that answer
        to the same name)."""
        async with self._lock:
            if not self._loaded:
                await self._load_all()
            if not self._complete:
                await self._load_every_group_version()
        return [info for kinds in self._kinds.values() for info in kinds.values()]

    def add_custom_resource_definition(self, crd: Mapping[str, Any]) -> None:
        """Learn the kinds a CustomResourceDefinition serves, from the CRD itself.

        Once a CRD is ``Established`` the API server serves its resources, but its discovery
        documents are updated asynchronously and can lag a little behind; whoever just waited
        for a CRD to be established can make it mappable at once this way.
        """
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, kind, plural = spec.get("group") or "", names.get("kind"), names.get("plural")
        if not (group and kind and plural):
            return
        for version in spec.get("versions") or []:
            if version.get("served") and version.get("name"):
                info = ResourceInfo(
                    group=group,
                    version=version["name"],
                    kind=kind,
                    plural=plural,
                    short_names=tuple(names.get("shortNames") or ()),
                    namespaced=spec.get("scope") == "Namespaced",
                    categories=tuple(names.get("categories") or ()),
                )
                self._kinds.setdefault((group, version["name"]), {})[kind] = info

    def invalidate(self) -> None:
        """Forget everything; the next lookup reads discovery again."""
        self._kinds.clear()
        self._loaded = False
        self._complete = False

    async def _load_all(self) -> None:
        """Every group version at once, when the server serves aggregated discovery."""
        for root in ("/api", "/apis"):
            document = await self._kube.request(
                "GET", root, headers={"Accept": AGGREGATED_DISCOVERY}
            )
            if document.get("kind") != "APIGroupDiscoveryList":
                # An older server: fall back to one resource list per group version on demand.
                break
            for group_entry in document.get("items") or []:
                group = (group_entry.get("metadata") or {}).get("name") or ""
                for version_entry in group_entry.get("versions") or []:
                    version = version_entry.get("version") or ""
                    self._kinds.setdefault((group, version), {}).update(
                        _kinds_from_aggregated(group, version, version_entry.get("resources") or [])
                    )
        else:
            self._complete = True
        self._loaded = True

    async def _load_every_group_version(self) -> None:
        """Every group version from the plain discovery lists: an older server's way."""
        core = await self._kube.request("GET", "/api")
        versions = [("", str(version)) for version in core.get("versions") or []]
        groups = await self._kube.request("GET", "/apis")
        for group_entry in groups.get("groups") or []:
            preferred = (group_entry.get("preferredVersion") or {}).get("version")
            names = [str(entry.get("version")) for entry in group_entry.get("versions") or []]
            names.sort(key=lambda name: name != preferred)
            versions += [(str(group_entry.get("name") or ""), name) for name in names]
        for group, version in versions:
            await self._load_group_version(group, version)
        self._complete = True

    async def _load_group_version(self, group: str, version: str) -> None:
        try:
            document = await self._kube.request("GET", _group_version_path(group, version))
        except NotFound:
            return
        # Merged, not replaced: kinds learned from a CRD stay while discovery catches up.
        self._kinds.setdefault((group, version), {}).update(
            _kinds_from_resource_list(group, version, document.get("resources") or [])
        )


def _kinds_from_aggregated(
    group: str, version: str, resources: list[dict[str, Any]]
) -> dict[str, ResourceInfo]:
    kinds: dict[str, ResourceInfo] = {}
    for resource in resources:
        kind = (resource.get("responseKind") or {}).get("kind")
        plural = resource.get("resource")
        if kind and plural and kind not in kinds:
            kinds[kind] = ResourceInfo(
                group=group,
                version=version,
                kind=kind,
                plural=plural,
                short_names=tuple(resource.get("shortNames") or ()),
                namespaced=resource.get("scope") == "Namespaced",
                categories=tuple(resource.get("categories") or ()),
            )
    return kinds


def _kinds_from_resource_list(
    group: str, version: str, resources: list[dict[str, Any]]
) -> dict[str, ResourceInfo]:
    kinds: dict[str, ResourceInfo] = {}
    for resource in resources:
        kind, plural = resource.get("kind"), resource.get("name") or ""
        # "deployments/scale" and the like are subresources, not kinds of their own.
        if kind and plural and "/" not in plural and kind not in kinds:
            kinds[kind] = ResourceInfo(
                group=group,
                version=version,
                kind=kind,
                plural=plural,
                short_names=tuple(resource.get("shortNames") or ()),
                namespaced=bool(resource.get("namespaced")),
                categories=tuple(resource.get("categories") or ()),
            )
    return kinds
