"""The REST mapper against the real API server's discovery."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper, UnknownKind
from controllers.kube import KubeClient
from tests.integration.harness import wait_for_object

pytestmark = pytest.mark.integration

CRD = ResourceInfo(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
)


def established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture
async def gadget_crd(kube: KubeClient) -> AsyncIterator[dict[str, Any]]:
    """A cluster-scoped kind ``Gadget`` in a group of its own, not yet created."""
    group = f"{uuid.uuid4().hex[:8]}.weir.example.com"
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget", "shortNames": ["gg"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    yield crd
    await kube.delete(CRD, None, crd["metadata"]["name"])


@pytest.mark.parametrize(
    ("api_version", "kind", "plural", "namespaced"),
    [
        pytest.param("v1", "ConfigMap", "configmaps", True, id="core"),
        pytest.param("v1", "Namespace", "namespaces", False, id="core-cluster-scoped"),
        pytest.param("apps/v1", "Deployment", "deployments", True, id="apps"),
        pytest.param(
            "rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False, id="rbac"
        ),
        pytest.param(
            "source.toolkit.fluxcd.io/v1", "GitRepository", "gitrepositories", True, id="crd"
        ),
    ],
)
async def test_kinds_map_to_their_resources(
    kube: KubeClient, api_version: str, kind: str, plural: str, namespaced: bool
) -> None:
    info = await RestMapper(kube).resource_for(api_version, kind)

    assert (info.api_version, info.kind, info.plural, info.namespaced) == (
        api_version,
        kind,
        plural,
        namespaced,
    )


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        pytest.param("v1", "Deployment", id="wrong-group"),
        pytest.param("apps/v2", "Deployment", id="no-such-version"),
        pytest.param("nowhere.example.com/v1", "Gadget", id="no-such-group"),
        pytest.param("v1", "", id="no-kind"),
    ],
)
async def test_an_unknown_kind_is_a_clear_error(
    kube: KubeClient, api_version: str, kind: str
) -> None:
    with pytest.raises(UnknownKind) as failure:
        await RestMapper(kube).resource_for(api_version, kind)

    assert str(failure.value) == f'no matches for kind "{kind}" in version "{api_version}"'


async def test_a_kind_defined_after_the_first_lookup_is_found_on_a_miss(
    kube: KubeClient, gadget_crd: dict[str, Any]
) -> None:
    mapper = RestMapper(kube)
    api_version = f"{gadget_crd['spec']['group']}/v1"
    with pytest.raises(UnknownKind):
        await mapper.resource_for(api_version, "Gadget")

    await kube.create(CRD, gadget_crd)
    await wait_for_object(kube, CRD, "", gadget_crd["metadata"]["name"], established)
    info = await mapper.resource_for(api_version, "Gadget")

    assert (info.plural, info.namespaced, info.short_names) == ("gadgets", False, ("gg",))


async def test_a_crd_can_be_learned_from_the_crd_itself(
    kube: KubeClient, gadget_crd: dict[str, Any]
) -> None:
    mapper = RestMapper(kube)
    await mapper.resource_for("v1", "ConfigMap")

    mapper.add_custom_resource_definition(gadget_crd)
    info = await mapper.resource_for(f"{gadget_crd['spec']['group']}/v1", "Gadget")

    assert (info.kind, info.plural, info.namespaced) == ("Gadget", "gadgets", False)
