"""Integration fixtures: a namespace per test, checked against the kstatus rules at the end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controllers.conditions import kstatus_violations
from controllers.envtest import ControlPlane, free_port
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from source.api_v1 import Bucket, GitRepository, OCIRepository
from source.gitrepository import GitRepositoryReconciler
from source.ocirepository import OCIRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.integration.harness import options, running
from tests.integration.kinds import NAMESPACE

pytestmark = pytest.mark.integration

# Kinds whose objects the namespace fixture unblocks (finalizers) and checks against kstatus.
RECONCILED_KINDS = (GitRepository.info, OCIRepository.info, Bucket.info, Kustomization.info)


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
