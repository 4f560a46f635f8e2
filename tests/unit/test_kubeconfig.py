"""The API client's kubeconfig loading and transport against a real HTTP server on the loopback:
which credential each kind of user sends, exec plugins (real processes) and their expiry, the
in-cluster settings, transport errors and silent watches."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from aiohttp import web

from controllers import kube
from controllers.api import ResourceInfo
from controllers.envtest import free_port
from controllers.kube import KubeClient, KubeConfigError, TransportError, WatchEvent

EXEC_API = "client.authentication.k8s.io/v1"
THING = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")


@dataclass
class FakeApiServer:
    """Records the Authorization header of every request; refuses ``refused`` tokens with 401;
    a watch sends ``watch_lines`` and then stays silent, holding the connection open."""

    url: str = ""
    authorizations: list[str | None] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    watch_lines: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        self.authorizations.append(authorization)
        self.headers.append(dict(request.headers))
        if authorization in self.refused:
            return web.json_response({"kind": "Status", "reason": "Unauthorized"}, status=401)
        if request.query.get("watch") != "true":
            return web.json_response({"kind": "ConfigMap", "metadata": {"name": "x"}})
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for line in self.watch_lines:
            await response.write(line)
        await asyncio.Event().wait()  # silent until the client goes away
        return response


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def kubeconfig(server: str, user: dict[str, Any], **context: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", **context}}],
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def exec_plugin(tmp_path: Path, *, expires: str | None, refuse_first: bool = False) -> Path:
    """A plugin script answering ``token-<n>`` on its n-th run (counted in a file beside it),
    with ``expires`` as expirationTimestamp; what it was told is saved in ``info-<n>.json``."""
    status = {"expirationTimestamp": expires} if expires else {}
    script = tmp_path / "credentials.py"
    script.write_text(
        "import json, os, pathlib, sys\n"
        f"here = pathlib.Path({str(tmp_path)!r})\n"
        "count = here / 'runs'\n"
        "n = int(count.read_text()) + 1 if count.exists() else 1\n"
        "count.write_text(str(n))\n"
        "info = {'exec': json.loads(os.environ['KUBERNETES_EXEC_INFO']), "
        "'extra': os.environ.get('WEIR_EXTRA'), 'args': sys.argv[1:]}\n"
        "(here / f'info-{n}.json').write_text(json.dumps(info))\n"
        f"status = {{'token': f'token-{{n}}', **{status!r}}}\n"
        f"print(json.dumps({{'apiVersion': {EXEC_API!r}, 'kind': 'ExecCredential', "
        "'status': status}))\n"
    )
    return script


def exec_user(script: Path, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": EXEC_API,
            "command": sys.executable,
            "args": [str(script), "--flag"],
            "env": [{"name": "WEIR_EXTRA", "value": "extra"}],
            "interactiveMode": "Never",
            **extra,
        }
    }


def runs(tmp_path: Path) -> int:
    count = tmp_path / "runs"
    return int(count.read_text()) if count.exists() else 0


async def watch_into(client: KubeClient, seen: list[WatchEvent]) -> None:
    """Every event of a watch that gives up after half a second of silence."""
    async for event in client.watch(THING, "1", inactivity_seconds=0.5):
        seen.append(event)


async def get_twice(client: KubeClient) -> None:
    try:
        for _ in range(2):
            await client.get(THING, "default", "x")
    finally:
        await client.close()


# Credentials from a kubeconfig file


@pytest.mark.parametrize(
    ("user", "authorization"),
    [
        pytest.param({"token": "t0ken"}, "Bearer t0ken", id="token"),
        pytest.param(
            {"username": "alice", "password": "s3cret"},
            "Basic " + base64.b64encode(b"alice:s3cret").decode(),
            id="basic-auth",
        ),
        pytest.param(
            {"token": "t0ken", "username": "a", "password": "p"}, "Bearer t0ken", id="token-first"
        ),
        pytest.param({}, None, id="anonymous"),
    ],
)
async def test_a_kubeconfig_user_sends_its_credential(
    server: FakeApiServer, tmp_path: Path, user: dict[str, Any], authorization: str | None
) -> None:
    path = write(tmp_path / "config", kubeconfig(server.url, user))

    await get_twice(await KubeClient.connect(str(path)))

    assert server.authorizations == [authorization, authorization]


async def test_a_token_file_is_read_again_after_a_while(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("first\n")
    # Relative to the kubeconfig's directory, as kubectl reads it.
    path = write(tmp_path / "config", kubeconfig(server.url, {"tokenFile": "token"}))
    client = await KubeClient.connect(str(path))
    try:
        await client.get(THING, "default", "x")
        (tmp_path / "token").write_text("second\n")
        await client.get(THING, "default", "x")  # within the minute: the token read at start
        monkeypatch.setattr(kube, "TOKEN_FILE_REREAD_SECONDS", 0.0)
        await client.get(THING, "default", "x")
    finally:
        await client.close()

    assert server.authorizations == ["Bearer first", "Bearer first", "Bearer second"]


async def test_kubeconfig_files_are_merged_the_first_one_winning(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(server.url, {"token": "first"}, namespace="apps")
    second = kubeconfig("http://127.0.0.1:1", {"token": "second"})
    second["current-context"] = "other"
    second["contexts"].append({"name": "other", "context": {"cluster": "k", "user": "u"}})
    paths = [write(tmp_path / "a", first), write(tmp_path / "b", second)]
    monkeypatch.setenv("KUBECONFIG", ":".join(str(p) for p in paths))

    client = await KubeClient.connect()
    assert (client.host, client.namespace) == (server.url, "apps")
    await get_twice(client)

    assert server.authorizations == ["Bearer first", "Bearer first"]


@pytest.mark.parametrize(
    ("user", "message"),
    [
        pytest.param({"auth-provider": {"name": "oidc"}}, "auth-provider", id="auth-provider"),
        pytest.param({"token": "t", "as": "admin"}, r"impersonation \(as\)", id="as"),
        pytest.param({"tokenFile": "missing"}, "cannot read token file", id="no-token-file"),
        pytest.param(
            {"client-certificate": "missing.crt", "client-key": "missing.key"},
            "cannot read missing.crt",
            id="no-certificate-file",
        ),
    ],
)
async def test_a_kubeconfig_file_that_cannot_be_used_is_refused(
    server: FakeApiServer, tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "config", kubeconfig(server.url, user))

    with pytest.raises(KubeConfigError, match=message):
        await KubeClient.connect(str(path))


async def test_a_kubeconfig_that_is_not_yaml_is_a_kubeconfig_error(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("clusters: [unclosed\n")

    with pytest.raises(KubeConfigError, match="config"):
        await KubeClient.connect(str(tmp_path / "config"))


# Exec plugins


@pytest.mark.parametrize(
    ("expires", "tokens"),
    [
        pytest.param(None, ["token-1", "token-1"], id="no-expiry-kept"),
        pytest.param("2999-01-01T00:00:00Z", ["token-1", "token-1"], id="kept-until-expiry"),
        pytest.param("2001-01-01T00:00:00Z", ["token-2", "token-3"], id="expired-run-again"),
    ],
)
async def test_an_exec_credential_is_kept_until_it_expires(
    server: FakeApiServer, tmp_path: Path, expires: str | None, tokens: list[str]
) -> None:
    script = exec_plugin(tmp_path, expires=expires)
    path = write(tmp_path / "config", kubeconfig(server.url, exec_user(script)))

    client = await KubeClient.connect(str(path))  # runs the plugin once, now
    assert runs(tmp_path) == 1
    await get_twice(client)

    assert server.authorizations == [f"Bearer {token}" for token in tokens]
    info = json.loads((tmp_path / "info-1.json").read_text())
    assert info == {
        "exec": {"apiVersion": EXEC_API, "kind": "ExecCredential", "spec": {"interactive": False}},
        "extra": "extra",
        "args": ["--flag"],
    }


async def test_a_refused_exec_credential_is_asked_for_again(
    server: FakeApiServer, tmp_path: Path
) -> None:
    script = exec_plugin(tmp_path, expires="2999-01-01T00:00:00Z")
    server.refused.add("Bearer token-1")
    path = write(tmp_path / "config", kubeconfig(server.url, exec_user(script)))
    client = await KubeClient.connect(str(path))

    await get_twice(client)

    assert server.authorizations == ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    assert runs(tmp_path) == 2


async def test_a_refused_exec_credential_is_asked_for_again_by_a_watch(
    server: FakeApiServer, tmp_path: Path
) -> None:
    script = exec_plugin(tmp_path, expires="2999-01-01T00:00:00Z")
    server.refused.add("Bearer token-1")
    server.watch_lines = [b'{"type": "BOOKMARK", "object": {"metadata": {}}}\n']
    path = write(tmp_path / "config", kubeconfig(server.url, exec_user(script)))
    client = await KubeClient.connect(str(path))
    try:
        # KubeClient.watch is an async generator: closed here, not when collected.
        events = cast(AsyncGenerator[WatchEvent, None], client.watch(THING, "1"))
        event = await anext(events)
        await events.aclose()
    finally:
        await client.close()

    assert event.type == "BOOKMARK"
    assert server.authorizations == ["Bearer token-1", "Bearer token-2"]


async def test_the_cluster_is_given_to_an_exec_plugin_that_asks(
    server: FakeApiServer, tmp_path: Path
) -> None:
    script = exec_plugin(tmp_path, expires=None)
    config = kubeconfig(server.url, exec_user(script, provideClusterInfo=True))
    config["clusters"][0]["cluster"].update(
        {
            "tls-server-name": "api.example",
            "extensions": [
                {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "a"}},
                {"name": "other", "extension": {"x": 1}},
            ],
        }
    )
    path = write(tmp_path / "config", config)

    await (await KubeClient.connect(str(path))).close()

    spec = json.loads((tmp_path / "info-1.json").read_text())["exec"]["spec"]
    assert spec == {
        "interactive": False,
        "cluster": {
            "server": server.url,
            "tlsServerName": "api.example",
            "config": {"audience": "a"},
        },
    }


@pytest.mark.parametrize(
    ("output", "message"),
    [
        pytest.param("print('not json')", "output is not JSON", id="not-json"),
        pytest.param(
            "import sys; sys.stderr.write('no credentials here'); sys.exit(3)",
            "exit status 3: no credentials here",
            id="exit-status",
        ),
        pytest.param(
            "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',"
            " 'kind': 'ExecCredential', 'status': {'token': 't'}}))",
            "asked for client.authentication.k8s.io/v1",
            id="other-api-version",
        ),
        pytest.param(
            f"import json; print(json.dumps({{'apiVersion': {EXEC_API!r},"
            " 'kind': 'ExecCredential', 'status': {}}))",
            "neither a token nor a client certificate",
            id="empty-status",
        ),
    ],
)
async def test_an_exec_plugin_that_fails_is_a_kubeconfig_error(
    tmp_path: Path, output: str, message: str
) -> None:
    user = {"exec": {"apiVersion": EXEC_API, "command": sys.executable, "args": ["-c", output]}}

    with pytest.raises(KubeConfigError, match=message):
        await KubeClient.from_kubeconfig(kubeconfig("http://127.0.0.1:1", user))


async def test_an_exec_api_version_weir_does_not_speak_is_refused() -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "true"}}

    with pytest.raises(KubeConfigError, match="v1alpha1"):
        await KubeClient.from_kubeconfig(kubeconfig("http://127.0.0.1:1", user))


# In-cluster


async def test_in_cluster_needs_the_service_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    with pytest.raises(KubeConfigError, match="not in a cluster"):
        await KubeClient.connect()


async def test_in_cluster_needs_the_cluster_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_DIR", tmp_path)
    (tmp_path / "token").write_text("pod-token\n")
    (tmp_path / "namespace").write_text("flux-system")

    with pytest.raises(KubeConfigError, match=r"ca\.crt"):
        await KubeClient.connect()


# Transport


async def test_a_server_that_cannot_be_reached_is_a_transport_error() -> None:
    port = free_port()  # nothing listens there
    client = await KubeClient.from_kubeconfig(
        kubeconfig(f"http://127.0.0.1:{port}", {"token": "t"})
    )
    try:
        with pytest.raises(
            TransportError, match=r"GET /api/v1/namespaces/default/configmaps/x: ConnectError"
        ):
            await client.get(THING, "default", "x")
    finally:
        await client.close()


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="silent-from-the-start"),
        pytest.param(
            [b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}\n'],
            id="silent-after-an-event",
        ),
    ],
)
async def test_a_watch_that_goes_silent_raises_timeout_error(
    server: FakeApiServer, lines: list[bytes]
) -> None:
    server.watch_lines = lines
    client = await KubeClient.from_kubeconfig(kubeconfig(server.url, {"token": "t"}))
    seen: list[WatchEvent] = []
    try:
        with pytest.raises(TimeoutError):
            await watch_into(client, seen)
    finally:
        await client.close()

    assert [event.object["metadata"]["name"] for event in seen] == ["a" for _ in lines]


async def test_watch_events_are_split_on_newlines_only(server: FakeApiServer) -> None:
    # U+0085 and U+2028 are line breaks to str.splitlines, and JSON may hold them unescaped.
    first = json.dumps({"type": "ADDED", "object": {"data": "a\u0085b\u2028c"}}, ensure_ascii=False)
    second = json.dumps({"type": "DELETED", "object": {"data": "d"}})
    stream = (first + "\n" + second + "\n").encode()
    server.watch_lines = [stream[:7], stream[7:30], stream[30:]]  # split mid-event
    client = await KubeClient.from_kubeconfig(kubeconfig(server.url, {"token": "t"}))
    seen: list[WatchEvent] = []
    try:
        with pytest.raises(TimeoutError):
            await watch_into(client, seen)
    finally:
        await client.close()

    assert [(event.type, event.object["data"]) for event in seen] == [
        ("ADDED", "a\u0085b\u2028c"),
        ("DELETED", "d"),
    ]


async def test_views_send_their_identity_and_share_the_connections(
    server: FakeApiServer,
) -> None:
    client = await KubeClient.from_kubeconfig(kubeconfig(server.url, {"token": "t"}))
    view = client.impersonating("system:serviceaccount:apps:deployer").with_rate_limit(5, 5)
    try:
        await view.get(THING, "default", "x")
        await view.close()  # a view: nothing closed
        await client.get(THING, "default", "x")
    finally:
        await client.close()

    impersonated = [h.get("Impersonate-User") for h in server.headers]
    assert impersonated == ["system:serviceaccount:apps:deployer", None]
    with pytest.raises(RuntimeError, match="closed"):
        await view.get(THING, "default", "x")


async def test_a_request_past_its_timeout_is_a_transport_error(server: FakeApiServer) -> None:
    # The fake server answers a watch with its headers, then nothing.
    client = await KubeClient.from_kubeconfig(kubeconfig(server.url, {"token": "t"}))
    try:
        with pytest.raises(TransportError, match=r"GET /api/v1/configmaps: .*within 0\.5s"):
            await client.request("GET", "/api/v1/configmaps", query={"watch": "true"}, timeout=0.5)
    finally:
        await client.close()
