"""The API client's connections: reused while the server keeps them, replaced when it closes
them, given up with an unread answer, and sent through the kubeconfig's proxy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from controllers.envtest import ADMIN_USER, ControlPlane
from controllers.kinds import CONFIG_MAP
from controllers.kube import KubeClient
from controllers.transport import AsyncioTransport
from tests.integration.kinds import NAMESPACE
from tests.integration.netfault import SilentableRelay
from tests.proxyserver import TinyProxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def relay(control_plane: ControlPlane) -> AsyncIterator[SilentableRelay]:
    relay = SilentableRelay(control_plane.apiserver_port)
    await relay.start()
    yield relay
    await relay.close()


def admin_context(control_plane: ControlPlane) -> ssl.SSLContext:
    certs = control_plane.certs
    context = ssl.create_default_context(cafile=str(certs.path("ca", "crt")))
    context.load_cert_chain(certs.path(ADMIN_USER, "crt"), certs.path(ADMIN_USER, "key"))
    return context


async def relayed_client(
    control_plane: ControlPlane, relay: SilentableRelay, tmp_path: Path
) -> KubeClient:
    kubeconfig = tmp_path / "relayed.kubeconfig"
    control_plane.write_kubeconfig(kubeconfig, ADMIN_USER, server=f"https://127.0.0.1:{relay.port}")
    return await KubeClient.connect(str(kubeconfig))


async def test_requests_share_one_connection_and_survive_the_server_closing_it(
    control_plane: ControlPlane, relay: SilentableRelay, namespace: str, tmp_path: Path
) -> None:
    client = await relayed_client(control_plane, relay, tmp_path)
    try:
        for _ in range(5):
            await client.get(NAMESPACE, None, namespace)
        assert relay.connections == 1
        # Closed while idle, and the next request sent at once: a GET is sent again on a new
        # connection if the old one turns out closed.
        await relay.drop()
        await client.get(NAMESPACE, None, namespace)
        await relay.drop()
        # A request that is not safe to repeat goes on a connection that a safe one has just
        # shown to be open: after the GET (sent again if it found the old one closed), the POST.
        await client.get(NAMESPACE, None, namespace)
        created = await client.create(
            CONFIG_MAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "after-close", "namespace": namespace},
            },
        )
        assert created["metadata"]["name"] == "after-close"
        assert relay.connections == 3
    finally:
        await client.close()


async def test_an_answer_left_unread_gives_its_connection_up(
    control_plane: ControlPlane, relay: SilentableRelay, namespace: str
) -> None:
    transport = AsyncioTransport(
        admin_context(control_plane), max_connections=1, keepalive_expiry=60
    )
    url = f"https://127.0.0.1:{relay.port}/api/v1/namespaces/{namespace}/configmaps"
    async with httpx.AsyncClient(transport=transport) as http:
        for _ in range(3):
            # A watch read for its first event only, then left: with one connection allowed,
            # the next request could not be sent if the abandoned one still held it.
            async with asyncio.timeout(10):
                async with http.stream("GET", url, params={"watch": "true"}) as response:
                    assert response.status_code == 200
                    async for _ in response.aiter_bytes():
                        break
        async with asyncio.timeout(10):
            assert (await http.get(url)).status_code == 200
    assert relay.connections == 4


async def test_idle_connections_expire(control_plane: ControlPlane, relay: SilentableRelay) -> None:
    transport = AsyncioTransport(
        admin_context(control_plane), max_connections=4, keepalive_expiry=0.1
    )
    async with httpx.AsyncClient(transport=transport) as http:
        url = f"https://127.0.0.1:{relay.port}/livez"
        assert (await http.get(url)).status_code == 200
        assert (await http.get(url)).status_code == 200
        assert relay.connections == 1
        await asyncio.sleep(0.3)
        assert (await http.get(url)).status_code == 200
        assert relay.connections == 2


async def test_requests_go_through_the_kubeconfigs_proxy(
    control_plane: ControlPlane, http_proxy: TinyProxy, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "proxied.kubeconfig"
    control_plane.write_kubeconfig(kubeconfig, ADMIN_USER)
    config = yaml.safe_load(kubeconfig.read_text())
    proxy = f"http://{http_proxy.username}:{http_proxy.password}@127.0.0.1:{http_proxy.port}"
    config["clusters"][0]["cluster"]["proxy-url"] = proxy
    kubeconfig.write_text(yaml.safe_dump(config))
    before = http_proxy.requests_to(control_plane.apiserver_port)
    client = await KubeClient.connect(str(kubeconfig))
    try:
        await client.get(NAMESPACE, None, "default")
    finally:
        await client.close()
    assert http_proxy.requests_to(control_plane.apiserver_port) > before
