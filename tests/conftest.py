"""Fixtures shared by every test: the real local control plane and API clients."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controllers.envtest import ControlPlane
from controllers.kube import KubeClient


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
