"""Fixtures shared by every test: the real local control plane and API clients."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient
from tests.gitserver import GitDaemon, GitHTTPServer, GitRepos, GitSSHServer
from tests.proxyserver import TinyProxy
from tests.registry import OCIRegistries
from tests.s3server import S3Server


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
def http_proxy() -> Iterator[TinyProxy]:
    """A real forward proxy (tinyproxy) with basic auth; ``requests_to(port)`` reads its log."""
    proxy = TinyProxy()
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
