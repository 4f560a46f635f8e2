"""No change is missed when the API server goes away or etcd compacts past the watch.

While the controller's API server is down, changes are made through a second kube-apiserver
on the same etcd (an HA control plane), so they really happen during the outage.
"""

from __future__ import annotations

import asyncio

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.integration.kinds import GITREPO, git_repository
from tests.integration.probe import Probe


@pytest.mark.parametrize(
    ("kill", "compact"),
    [
        pytest.param(True, False, id="apiserver-killed"),
        pytest.param(False, True, id="etcd-compacted"),
    ],
)
async def test_changes_during_an_outage_are_reconciled(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, kill: bool, compact: bool
) -> None:
    probe = Probe()
    async with running(options(control_plane, namespace), [probe]) as manager:
        for name in ("changed", "deleted", "untouched"):
            await kube.create(GITREPO, git_repository(name, namespace))
        keys = [f"{namespace}/{n}" for n in ("changed", "deleted", "untouched")]
        for name in ("changed", "deleted", "untouched"):
            await wait_for_object(kube, GITREPO, namespace, name, is_ready)
        relists_before = manager.informers[0].relists

        await asyncio.to_thread(control_plane.stop_apiserver, kill=kill)
        with control_plane.second_apiserver() as kubeconfig:
            other = await KubeClient.connect(str(kubeconfig))
            try:
                changed = await other.patch(
                    GITREPO, namespace, "changed", {"spec": {"interval": "2m"}}
                )
                await other.delete(GITREPO, namespace, "deleted")
                await other.create(GITREPO, git_repository("created", namespace))
            finally:
                await other.close()
            if compact:
                await asyncio.to_thread(control_plane.compact_etcd)
        await asyncio.to_thread(control_plane.start_apiserver)

        generation = changed["metadata"]["generation"]
        await probe.wait_for(
            lambda: (
                any(c.generation == generation for c in probe.calls_for(keys[0]))
                and f"{namespace}/deleted" in probe.finalized
                and bool(probe.calls_for(f"{namespace}/created"))
            ),
            timeout=60,
        )
        if compact:
            assert manager.informers[0].relists > relists_before
    assert await kube.get_or_none(GITREPO, namespace, "deleted") is None
    assert max(probe.max_overlap.values()) == 1
    # Unchanged objects are not reconciled again because of the reconnect.
    assert len(probe.calls_for(f"{namespace}/untouched")) == 1
