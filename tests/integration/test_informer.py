"""The informer on a connection that goes silent without closing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controllers.envtest import ADMIN_USER, ControlPlane
from controllers.informer import Informer
from controllers.kube import KubeClient
from tests.integration.kinds import GITREPO, git_repository
from tests.integration.netfault import SilentableRelay


async def test_a_silent_watch_is_abandoned_and_nothing_is_missed(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    relay = SilentableRelay(control_plane.apiserver_port)
    await relay.start()
    kubeconfig = tmp_path / "relayed.kubeconfig"
    control_plane.write_kubeconfig(kubeconfig, ADMIN_USER, server=f"https://127.0.0.1:{relay.port}")
    client = await KubeClient.connect(str(kubeconfig))
    seen: asyncio.Queue[str] = asyncio.Queue()

    def handler(key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        seen.put_nowait(key)

    informer = Informer(
        client, GITREPO, handler, namespace=namespace, watch_seconds=1, inactivity_margin=1.0
    )
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(15):
            await informer.synced.wait()
            relay.silence()
            links_before = relay.connections
            await kube.create(GITREPO, git_repository("made-while-silent", namespace))
            assert await seen.get() == f"{namespace}/made-while-silent"
        # The event came over a new connection: the silent one was given up.
        assert relay.connections > links_before
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await relay.close()
