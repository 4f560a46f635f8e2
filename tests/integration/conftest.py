"""Integration fixtures: a namespace per test, checked against the kstatus rules at the end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from controllers.conditions import kstatus_violations
from controllers.kube import KubeClient
from source.api_v1 import GitRepository
from tests.integration.kinds import NAMESPACE

pytestmark = pytest.mark.integration


@pytest.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    """A fresh namespace; on teardown every reconciled object in it must obey kstatus."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(NAMESPACE, {"metadata": {"name": name}})
    yield name
    objects = (await kube.list(GitRepository.info, name))["items"]
    for obj in objects:
        if obj.get("metadata", {}).get("finalizers"):
            patch = {"metadata": {"finalizers": None}}
            await kube.patch(GitRepository.info, name, obj["metadata"]["name"], patch)
    await kube.delete(NAMESPACE, None, name)
    problems = {
        obj["metadata"]["name"]: kstatus_violations(obj)
        for obj in objects
        if (obj.get("status") or {}).get("conditions")
    }
    assert not {k: v for k, v in problems.items() if v}, problems
