"""HelmRepository against a real Helm repository: charts made with the Go-built ``helm``
(``helm create``, ``helm package``, ``helm repo index``) and served on loopback, over HTTP
and HTTPS with basic auth, reconciled by the source controller's reconciler against the real
API server, its artifact downloaded from the real artifact server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from controllers.binaries import find_binary
from controllers.envtest import ControlPlane, free_port
from controllers.kinds import EVENT, SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from source.api_v1 import HelmRepository
from source.helmrepository import HelmRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.helmcli import helm_env
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.testpki import TLSFiles

pytestmark = pytest.mark.integration

HELMREPO = HelmRepository.info
USER, PASSWORD = "chartuser", "s3cret-pass"


class ChartRepository:
    """A Helm repository on disk, built with the real ``helm``."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.env = helm_env(home)
        self.work = home / "work"
        self.work.mkdir(parents=True)
        root.mkdir(parents=True)

    def helm(self, *args: str) -> None:
        binary = find_binary("helm")
        assert binary is not None, "helm is built before the first integration test"
        done = subprocess.run(
            [str(binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.work,
        )
        assert done.returncode == 0, done.stderr

    def add(self, chart: str, version: str) -> None:
        """Package ``chart`` at ``version`` into the repository and index it again."""
        if not (self.work / chart).exists():
            self.helm("create", chart)
        self.helm("package", chart, "--version", version, "--destination", str(self.root))
        self.helm("repo", "index", str(self.root))

    @property
    def index(self) -> bytes:
        return (self.root / "index.yaml").read_bytes()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the repository; with ``credentials``, only to requests that carry them."""

    credentials: str | None = None

    def do_GET(self) -> None:
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="charts"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(
    root: Path, *, credentials: str | None = None, tls: TLSFiles | None = None
) -> Iterator[str]:
    """Serve ``root`` on loopback in a thread; yields the base URL."""
    handler = type("Handler", (_Handler,), {"credentials": credentials})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def charts(tmp_path: Path) -> ChartRepository:
    repo = ChartRepository(tmp_path / "charts", tmp_path / "helm-home")
    repo.add("podinfo", "1.0.0")
    return repo


@pytest.fixture
def plain(charts: ChartRepository) -> Iterator[str]:
    yield from serve(charts.root)


@pytest.fixture
def secured(charts: ChartRepository, tmp_path: Path) -> Iterator[tuple[str, TLSFiles]]:
    pki = tmp_path / "pki"
    pki.mkdir()
    files = TLSFiles.create(pki)
    for url in serve(charts.root, credentials=f"{USER}:{PASSWORD}", tls=files):
        yield url, files


@dataclass
class Source:
    reconciler: HelmRepositoryReconciler
    storage: ArtifactStorage


@pytest.fixture
async def source(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Source]:
    """The HelmRepository reconciler and its artifact server (the namespace fixture checks
    every HelmRepository against kstatus on teardown)."""
    port = free_port()
    root = tmp_path / "storage"
    storage = ArtifactStorage(root, f"127.0.0.1:{port}")
    server = await start_artifact_server(root, "127.0.0.1", port)
    reconciler = HelmRepositoryReconciler(storage, max_index_size=64 * 1024)
    try:
        async with running(
            options(control_plane, namespace, name="source-controller"), [reconciler]
        ):
            yield Source(reconciler, storage)
    finally:
        await server.cleanup()


def helmrepository(name: str, namespace: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": HELMREPO.api_version,
        "kind": HELMREPO.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": url, "interval": "10m", **spec},
    }


async def secret(kube: KubeClient, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    await kube.create(SECRET, {"metadata": {"name": name, "namespace": namespace}, "data": encoded})


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_]
    return found[0] if found else None


def revision_of(index: bytes) -> str:
    return f"sha256:{hashlib.sha256(index).hexdigest()}"


async def artifact_index(obj: dict[str, Any]) -> dict[str, Any]:
    """The index the artifact of ``obj`` holds, downloaded from the artifact server, its
    digest checked."""
    artifact = obj["status"]["artifact"]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(artifact["url"])
    assert response.status_code == 200
    assert f"sha256:{hashlib.sha256(response.content).hexdigest()}" == artifact["digest"]
    assert len(response.content) == artifact["size"]
    data: dict[str, Any] = json.loads(response.content)
    return data


async def reasons_once(
    kube: KubeClient, namespace: str, name: str, reason: str, count: int
) -> list[str]:
    """The reasons of the object's events, once ``count`` of them are ``reason`` (events are
    recorded just after the status is written): a poll with a deadline."""
    async with asyncio.timeout(10):
        while True:
            items = (await kube.list(EVENT, namespace))["items"]
            reasons = [e["reason"] for e in items if e["involvedObject"]["name"] == name]
            if reasons.count(reason) >= count:
                return reasons
            await asyncio.sleep(0.1)


async def test_an_index_becomes_an_artifact_whose_revision_moves_only_with_the_index(
    kube: KubeClient,
    namespace: str,
    source: Source,
    charts: ChartRepository,
    plain: str,
    tmp_path: Path,
) -> None:
    await kube.create(HELMREPO, helmrepository("podinfo", namespace, plain))
    obj = await wait_for_object(kube, HELMREPO, namespace, "podinfo", is_ready)

    artifact = obj["status"]["artifact"]
    hex_digest = revision_of(charts.index).removeprefix("sha256:")
    assert artifact["revision"] == revision_of(charts.index)
    assert artifact["path"] == f"helmrepository/{namespace}/podinfo/index-{hex_digest}.yaml"
    assert obj["status"]["url"] == artifact["url"]
    assert condition(obj, "ArtifactInStorage")["message"] == (  # type: ignore[index]
        f"stored artifact: revision '{artifact['revision']}'"
    )
    index = await artifact_index(obj)
    assert index["apiVersion"] == "v1"
    assert [v["version"] for v in index["entries"]["podinfo"]] == ["1.0.0"]
    assert index["entries"]["podinfo"][0]["urls"] == ["podinfo-1.0.0.tgz"]

    # Again, the index unchanged: the same artifact, no second fetch stored.
    await kube.patch(
        HELMREPO, namespace, "podinfo", {"metadata": {"annotations": {REQUESTED_AT: "one"}}}
    )
    again = await wait_for_object(
        kube,
        HELMREPO,
        namespace,
        "podinfo",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "one",
    )
    assert again["status"]["artifact"] == artifact
    assert source.reconciler.stats["unchanged"] >= 1

    # A new chart version indexed: a new revision and artifact, highest version first.
    charts.add("podinfo", "1.1.0")
    charts.add("podinfo", "1.10.0")
    await kube.patch(
        HELMREPO, namespace, "podinfo", {"metadata": {"annotations": {REQUESTED_AT: "two"}}}
    )
    newer = await wait_for_object(
        kube,
        HELMREPO,
        namespace,
        "podinfo",
        lambda o: is_ready(o) and o["status"]["artifact"]["revision"] == revision_of(charts.index),
    )
    assert newer["status"]["artifact"]["path"] != artifact["path"]
    index = await artifact_index(newer)
    assert [v["version"] for v in index["entries"]["podinfo"]] == ["1.10.0", "1.1.0", "1.0.0"]
    reasons = await reasons_once(kube, namespace, "podinfo", "NewArtifact", 2)
    assert reasons.count("NewArtifact") == 2


async def test_basic_auth_over_https_with_the_ca_of_cert_secret_ref(
    kube: KubeClient, namespace: str, source: Source, secured: tuple[str, TLSFiles]
) -> None:
    url, files = secured
    await secret(kube, namespace, "ca", files.secret_data())
    await secret(kube, namespace, "basic", {"username": USER, "password": PASSWORD})
    await kube.create(
        HELMREPO,
        helmrepository(
            "private", namespace, url, secretRef={"name": "basic"}, certSecretRef={"name": "ca"}
        ),
    )
    obj = await wait_for_object(kube, HELMREPO, namespace, "private", is_ready)
    assert obj["status"]["artifact"]["revision"].startswith("sha256:")

    # Without the credentials the server refuses; the message says so and holds no secret.
    await kube.create(
        HELMREPO, helmrepository("anonymous", namespace, url, certSecretRef={"name": "ca"})
    )
    refused = await wait_for_object(
        kube, HELMREPO, namespace, "anonymous", lambda o: condition(o, "FetchFailed") is not None
    )
    failure = condition(refused, "FetchFailed")
    assert failure is not None
    assert failure["reason"] == "Failed"
    assert "401" in failure["message"]
    assert condition(refused, "Ready")["status"] == "False"  # type: ignore[index]


async def test_a_secret_ref_without_a_password_fails_authentication(
    kube: KubeClient, namespace: str, source: Source, plain: str
) -> None:
    await secret(kube, namespace, "half", {"username": USER})
    await kube.create(
        HELMREPO, helmrepository("half", namespace, plain, secretRef={"name": "half"})
    )
    obj = await wait_for_object(
        kube, HELMREPO, namespace, "half", lambda o: condition(o, "FetchFailed") is not None
    )
    failure = condition(obj, "FetchFailed")
    assert failure is not None
    assert failure["reason"] == "AuthenticationFailed"
    assert USER not in failure["message"]


@pytest.mark.parametrize(
    ("path", "reason", "expected"),
    [
        pytest.param("/missing", "Failed", "404", id="not-found"),
        pytest.param("", "Failed", "maximum index file size", id="oversized"),
    ],
)
async def test_an_index_that_cannot_be_fetched_fails_the_fetch(
    kube: KubeClient,
    namespace: str,
    source: Source,
    charts: ChartRepository,
    plain: str,
    path: str,
    reason: str,
    expected: str,
) -> None:
    if not path:
        # Past the test reconciler's 64 KiB cap, and still a valid index.
        padding = "# " + "x" * 100 + "\n"
        (charts.root / "index.yaml").write_text(charts.index.decode() + padding * 1000)
    await kube.create(HELMREPO, helmrepository("broken", namespace, plain + path))
    obj = await wait_for_object(
        kube, HELMREPO, namespace, "broken", lambda o: condition(o, "FetchFailed") is not None
    )
    failure = condition(obj, "FetchFailed")
    assert failure is not None
    assert failure["reason"] == reason
    assert expected in failure["message"]
    assert "artifact" not in obj["status"]
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"


async def test_an_oci_url_without_type_oci_stalls(
    kube: KubeClient, namespace: str, source: Source
) -> None:
    await kube.create(HELMREPO, helmrepository("wrong", namespace, "oci://127.0.0.1:1/charts"))
    obj = await wait_for_object(
        kube, HELMREPO, namespace, "wrong", lambda o: condition(o, "Stalled") is not None
    )
    assert condition(obj, "FetchFailed")["reason"] == "URLInvalid"  # type: ignore[index]


async def test_type_oci_is_a_static_object_and_a_switch_to_it_drops_the_artifact(
    kube: KubeClient, namespace: str, source: Source, plain: str
) -> None:
    await kube.create(
        HELMREPO, helmrepository("oci", namespace, "oci://127.0.0.1:1/charts", type="oci")
    )
    await kube.create(HELMREPO, helmrepository("switched", namespace, plain))
    ready = await wait_for_object(kube, HELMREPO, namespace, "switched", is_ready)
    stored = source.storage.local_path(
        HelmRepository.model_validate(ready).status.artifact  # type: ignore[arg-type]
    )
    assert stored.exists()

    await kube.patch(
        HELMREPO,
        namespace,
        "switched",
        {"spec": {"type": "oci", "url": "oci://127.0.0.1:1/charts"}},
    )
    static = await wait_for_object(
        kube,
        HELMREPO,
        namespace,
        "switched",
        lambda o: not o["metadata"].get("finalizers") and not (o.get("status") or {}),
    )
    assert not stored.exists()
    assert "status" not in static or not static["status"]

    # The object created static was never given a finalizer or a status.
    untouched = await kube.get(HELMREPO, namespace, "oci")
    assert not untouched["metadata"].get("finalizers")
    assert not untouched.get("status")
