"""Integration fixtures: the real local control plane and API clients, the real servers (Git,
Gitea, registry, S3, proxy), and a namespace per test, checked against the kstatus rules at the end.

Every test here is marked ``integration`` by its path (``tests/conftest.py``). When any is
selected, the binaries they run are found, or built from their pinned Go modules the first time,
before the first test starts.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controllers.conditions import kstatus_violations
from controllers.envtest import ControlPlane, ControlPlaneError, ensure_binaries, free_port
from controllers.kube import KubeClient
from helm.api_v2 import HelmRelease
from image_automation.api_v1 import ImagePolicy, ImageRepository, ImageUpdateAutomation
from kustomize.api_v1 import Kustomization
from notification.api_v1 import Receiver
from source.api_v1 import Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository
from source.gitrepository import GitRepositoryReconciler
from source.ocirepository import OCIRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.gitea import GiteaServer
from tests.gitserver import GitDaemon, GitHTTPServer, GitRepos, GitSSHServer
from tests.integration.cli import Cli
from tests.integration.harness import options, running
from tests.integration.kinds import NAMESPACE
from tests.integration.processes import Controllers, running_controllers
from tests.proxyserver import TinyProxy
from tests.registry import OCIRegistries
from tests.s3server import S3Server


@pytest.hookimpl(trylast=True)  # after the terminal's "collected ... selected" line
def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first integration test: every binary they run, found or built from Go."""
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    try:
        ensure_binaries()
    except ControlPlaneError as err:
        pytest.exit(f"the integration tests cannot run: {err}")


def _scratch_root() -> str | None:
    # etcd fsyncs on every write; tmpfs keeps the suite fast and the disk untouched.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    workdir = Path(tempfile.mkdtemp(prefix="weir-envtest-", dir=_scratch_root()))
    plane = ControlPlane(workdir)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(str(control_plane.admin_kubeconfig))
    try:
        yield client
    finally:
        await client.close()


# Git servers: one root of bare repositories, served over git://, HTTP(S) and ssh://.


@pytest.fixture(scope="session")
def git_repos() -> Iterator[GitRepos]:
    """Bare repositories under one root that every Git server below serves."""
    root = Path(tempfile.mkdtemp(prefix="weir-git-repos-", dir=_scratch_root()))
    try:
        yield GitRepos(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def git_daemon(git_repos: GitRepos) -> Iterator[GitDaemon]:
    """git:// without auth: ``url(name)``."""
    server = GitDaemon(git_repos.root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def git_https(git_repos: GitRepos) -> Iterator[GitHTTPServer]:
    """Smart HTTP(S): ``url(name)``, ``http_url(name)``, ``ca_file``, credentials, ``requests``."""
    server = GitHTTPServer(git_repos.root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def git_ssh(git_repos: GitRepos) -> Iterator[GitSSHServer]:
    """ssh:// as the current user: ``url(name)``, ``key(kind)``, ``known_hosts``, secret data."""
    server = GitSSHServer(git_repos.root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[OCIRegistries]:
    """docker-registry instances: ``plain`` (HTTP, anonymous), ``basic`` (HTTPS + htpasswd),
    ``token`` (HTTP + a token server), ``mtls`` (HTTPS + client certificates); ``push``."""
    registries = OCIRegistries()
    registries.start()
    try:
        yield registries
    finally:
        registries.stop()


@pytest.fixture(scope="session")
def git_mtls(git_repos: GitRepos) -> Iterator[GitHTTPServer]:
    """Smart HTTPS that also demands a client certificate (mutual TLS): ``client_pair``."""
    server = GitHTTPServer(git_repos.root, require_client_cert=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """MinIO over plain HTTP: ``endpoint``, ``access_key``, ``secret_key``, ``create_bucket``,
    ``put_object``, ``delete_object``."""
    server = S3Server(Path(tempfile.mkdtemp(prefix="weir-s3-", dir=_scratch_root())))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def gitea() -> Iterator[GiteaServer]:
    """Gitea, a real Git host on loopback: ``create_repository``, ``clone_url`` (with
    credentials), ``wait_for_push``, ``add_webhook``, ``set_commit_status``,
    ``commit_statuses``, ``pull_requests``, ``api``."""
    server = GiteaServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def http_proxy() -> Iterator[TinyProxy]:
    """A real forward proxy (tinyproxy) with basic auth; ``requests_to(port)`` reads its log."""
    proxy = TinyProxy()
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


# Kinds whose objects the namespace fixture unblocks (finalizers) and checks against kstatus.
RECONCILED_KINDS = (
    GitRepository.info,
    OCIRepository.info,
    Bucket.info,
    HelmRepository.info,
    HelmChart.info,
    Kustomization.info,
    Receiver.info,
    HelmRelease.info,
    ImageRepository.info,
    ImagePolicy.info,
    ImageUpdateAutomation.info,
)


@pytest.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    """A fresh namespace; on teardown every reconciled object in it must obey kstatus."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(NAMESPACE, {"metadata": {"name": name}})
    yield name
    objects = []
    for kind in RECONCILED_KINDS:
        items = (await kube.list(kind, name))["items"]
        for obj in items:
            if obj.get("metadata", {}).get("finalizers"):
                patch = {"metadata": {"finalizers": None}}
                await kube.patch(kind, name, obj["metadata"]["name"], patch)
        objects += items
    await kube.delete(NAMESPACE, None, name)
    problems = {
        f"{obj.get('kind')}/{obj['metadata']['name']}": kstatus_violations(obj)
        for obj in objects
        if (obj.get("status") or {}).get("conditions")
    }
    assert not {k: v for k, v in problems.items() if v}, problems


@dataclass
class SourceController:
    """The source controller's reconcilers, run in-process, and their storage."""

    storage: ArtifactStorage
    git: GitRepositoryReconciler
    oci: OCIRepositoryReconciler


@pytest.fixture
async def source_controller(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[SourceController]:
    """The source controller's reconcilers watching ``namespace``, with a real artifact
    server on the storage, as ``python -m source`` runs them."""
    port = free_port()
    storage = ArtifactStorage(tmp_path / "storage", f"127.0.0.1:{port}")
    server = await start_artifact_server(tmp_path / "storage", "127.0.0.1", port)
    controller = SourceController(
        storage, GitRepositoryReconciler(storage), OCIRepositoryReconciler(storage)
    )
    opts = options(control_plane, namespace, name="source-controller")
    try:
        async with running(opts, [controller.git, controller.oci]):
            yield controller
    finally:
        await server.cleanup()


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Controllers]:
    """The source and kustomize controllers as processes watching only ``namespace``."""
    async with running_controllers(control_plane, namespace, tmp_path) as both:
        yield both


@pytest.fixture
def cli(control_plane: ControlPlane, namespace: str) -> Cli:
    """``weir`` with the admin kubeconfig, in the test's namespace."""
    return Cli(control_plane.admin_kubeconfig, namespace)
