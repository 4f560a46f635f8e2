"""KubeClient views: a view with a rate limit of its own does not wait for the parent's."""

from __future__ import annotations

import asyncio

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from tests.integration.kinds import NAMESPACE

pytestmark = pytest.mark.integration


async def test_a_view_with_its_own_limit_is_not_held_up_by_the_parents(
    control_plane: ControlPlane,
) -> None:
    client = await KubeClient.connect(str(control_plane.admin_kubeconfig), qps=1, burst=1)
    events = client.with_rate_limit(qps=50, burst=10)
    finished: list[str] = []

    async def get(name: str, via: KubeClient) -> None:
        await via.get(NAMESPACE, None, "default")
        finished.append(name)

    try:
        await get("first", client)  # the parent's only token
        # The parent's next request waits a second for a token; the view's goes at once.
        parent = asyncio.create_task(get("parent", client))
        await asyncio.sleep(0)
        await get("view", events)
        await parent
    finally:
        await events.close()  # a view: the parent's connections stay open
        await client.get(NAMESPACE, None, "default")
        await client.close()
    assert finished == ["first", "view", "parent"]


async def test_the_local_control_plane_has_flow_control_as_a_cluster_does(
    control_plane: ControlPlane,
) -> None:
    # As on a real cluster, so that the controllers behave here as they do there: without a
    # client-side rate limit (controllers.manager).
    client = await KubeClient.connect(str(control_plane.admin_kubeconfig))
    try:
        assert await client.has_flow_control()
    finally:
        await client.close()
