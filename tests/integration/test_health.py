"""Waiting for applied objects to become healthy, against the real control plane.

kube-controller-manager rolls out Deployments and runs Jobs, kube-scheduler places pods and
kwok plays their kubelet, so workloads really become Available (or never do).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controllers import wait
from controllers.api import ResourceInfo
from controllers.discovery import RestMapper
from controllers.health import HealthCheckError, compute, wait_for
from controllers.inventory import ObjectRef
from controllers.kstatus import Status
from controllers.kube import KubeClient
from tests.integration.kinds import GITREPO, git_repository

pytestmark = pytest.mark.integration

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
JOB = ResourceInfo(group="batch", version="v1", kind="Job", plural="jobs")
CRD = ResourceInfo(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
)
# No node carries this label: pods stay Pending, unschedulable.
NOWHERE = {"weir.example.com/nowhere": "true"}
POD = ResourceInfo(group="", version="v1", kind="Pod", plural="pods")
NODE = ResourceInfo(group="", version="v1", kind="Node", plural="nodes", namespaced=False)


def pod_template(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}], **spec},
    }


def deployment(name: str, namespace: str, **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, **pod_spec),
        },
    }


def job(name: str, namespace: str, *, deadline: int | None = None, **pod_spec: Any) -> Any:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": pod_template(name, restartPolicy="Never", **pod_spec),
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def gadget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }


@pytest.fixture
def mapper(kube: KubeClient) -> RestMapper:
    return RestMapper(kube)


@pytest.fixture
async def cluster_scoped(kube: KubeClient) -> AsyncIterator[Callable[[ResourceInfo, str], None]]:
    """Registers cluster-scoped objects a test creates; deletes them afterwards."""
    created: list[tuple[ResourceInfo, str]] = []
    yield lambda info, name: created.append((info, name))
    for info, name in reversed(created):
        await kube.delete(info, None, name)


async def test_a_deployment_that_becomes_available_passes(
    kube: KubeClient, mapper: RestMapper, namespace: str
) -> None:
    web = await kube.create(DEPLOYMENT, deployment("web", namespace))

    await wait_for(kube, mapper, [ObjectRef.of(web)], timeout=30)

    live = await kube.get(DEPLOYMENT, namespace, "web")
    assert live["status"]["availableReplicas"] == 1
    assert compute(live).status == Status.CURRENT


async def test_kinds_beyond_the_watches_are_listed_instead(
    kube: KubeClient, mapper: RestMapper, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wait, "MAX_WATCHES", 0)
    manifest = deployment("web", namespace)
    ref = ObjectRef(namespace, "web", "apps", "Deployment", "v1")
    waiting = asyncio.create_task(wait_for(kube, mapper, [ref], timeout=30))

    await kube.create(DEPLOYMENT, manifest)
    try:
        await waiting
    except HealthCheckError:
        # What the cluster says of the Deployment, its pods and the node, to tell a slow
        # simulated node from a wait that missed the change.
        pods = [
            (p["metadata"]["name"], p["spec"], p.get("status"))
            for p in (await kube.list(POD, namespace))["items"]
        ]
        nodes = [
            (n["metadata"]["name"], n["spec"], n.get("status", {}).get("conditions"))
            for n in (await kube.list(NODE))["items"]
        ]
        live = await kube.get(DEPLOYMENT, namespace, "web")
        raise AssertionError(
            f"deployment status: {live.get('status')}\npods: {pods}\nnodes: {nodes}"
        ) from None

    live = await kube.get(DEPLOYMENT, namespace, "web")
    assert live["status"]["availableReplicas"] == 1


async def test_a_deployment_that_never_becomes_available_times_out(
    kube: KubeClient, mapper: RestMapper, namespace: str
) -> None:
    stuck = await kube.create(DEPLOYMENT, deployment("stuck", namespace, nodeSelector=NOWHERE))
    started = time.monotonic()

    with pytest.raises(HealthCheckError) as failure:
        await wait_for(kube, mapper, [ObjectRef.of(stuck)], timeout=3)

    assert time.monotonic() - started >= 3
    assert failure.value.reason == "HealthCheckFailed"
    assert failure.value.message == (
        f"timeout waiting for: [Deployment/{namespace}/stuck status: 'InProgress']"
    )
    live = await kube.get(DEPLOYMENT, namespace, "stuck")
    assert live["status"].get("availableReplicas", 0) == 0


async def test_what_is_missing_unknown_or_not_ready_is_named_at_the_timeout(
    kube: KubeClient, mapper: RestMapper, namespace: str
) -> None:
    flaky = await kube.create(GITREPO, git_repository("flaky", namespace))
    ready_false = condition("Ready", "False", "GitOperationFailed", "connection refused")
    await kube.patch(
        GITREPO,
        namespace,
        "flaky",
        {"status": {"observedGeneration": 1, "conditions": [ready_false]}},
        subresource="status",
    )
    refs = [
        ObjectRef.of(flaky),
        ObjectRef(namespace, "absent", "", "ConfigMap", "v1"),
        ObjectRef(namespace, "g", "gone.example.com", "Gadget", "v1"),
    ]

    with pytest.raises(HealthCheckError) as failure:
        await wait_for(kube, mapper, refs, timeout=2)

    assert failure.value.message == (
        "timeout waiting for: ["
        f"GitRepository/{namespace}/flaky status: 'InProgress', "
        f"ConfigMap/{namespace}/absent status: 'NotFound', "
        f"Gadget/{namespace}/g status: 'Unknown': "
        'no matches for kind "Gadget" in version "gone.example.com/v1"]'
    )


async def test_a_stalled_custom_resource_fails_early(
    kube: KubeClient, mapper: RestMapper, namespace: str
) -> None:
    stuck = await kube.create(DEPLOYMENT, deployment("stuck", namespace, nodeSelector=NOWHERE))
    broken = await kube.create(GITREPO, git_repository("broken", namespace))
    status = {
        "observedGeneration": 1,
        "conditions": [
            condition("Ready", "False", "InvalidURL", "unsupported URL scheme"),
            condition("Stalled", "True", "InvalidURL", "unsupported URL scheme"),
        ],
    }
    await kube.patch(GITREPO, namespace, "broken", {"status": status}, subresource="status")
    started = time.monotonic()

    with pytest.raises(HealthCheckError) as failure:
        await wait_for(kube, mapper, [ObjectRef.of(stuck), ObjectRef.of(broken)], timeout=30)

    assert time.monotonic() - started < 15
    assert failure.value.message == (
        "failed early due to stalled resources: "
        f"[GitRepository/{namespace}/broken status: 'Failed': unsupported URL scheme]"
    )


async def test_without_failing_fast_a_failure_waits_for_the_timeout(
    kube: KubeClient, mapper: RestMapper, namespace: str
) -> None:
    broken = await kube.create(GITREPO, git_repository("broken", namespace))
    stalled = condition("Stalled", "True", "InvalidURL", "unsupported URL scheme")
    ready = condition("Ready", "False", "InvalidURL", "unsupported URL scheme")
    await kube.patch(
        GITREPO,
        namespace,
        "broken",
        {"status": {"observedGeneration": 1, "conditions": [ready, stalled]}},
        subresource="status",
    )
    started = time.monotonic()

    with pytest.raises(HealthCheckError) as failure:
        await wait_for(kube, mapper, [ObjectRef.of(broken)], timeout=2, fail_fast=False)

    assert time.monotonic() - started >= 2
    assert failure.value.message == (
        "timeout waiting for: "
        f"[GitRepository/{namespace}/broken status: 'Failed': unsupported URL scheme]"
    )


async def test_a_job_that_runs_passes(kube: KubeClient, mapper: RestMapper, namespace: str) -> None:
    # kstatus: a Job is Current once started, and stays so when it completes.
    once = await kube.create(JOB, job("once", namespace))

    await wait_for(kube, mapper, [ObjectRef.of(once)], timeout=30)

    assert compute(await kube.get(JOB, namespace, "once")).status == Status.CURRENT


async def test_a_job_past_its_deadline_fails_early(
    kube: KubeClient, mapper: RestMapper, namespace: str
) -> None:
    # Its pod is never scheduled; the Job controller fails the Job after its deadline. A
    # running Job is already Current to kstatus: the stuck Deployment keeps the wait going
    # until the Job fails.
    doomed = await kube.create(JOB, job("doomed", namespace, deadline=1, nodeSelector=NOWHERE))
    stuck = await kube.create(DEPLOYMENT, deployment("stuck", namespace, nodeSelector=NOWHERE))

    with pytest.raises(HealthCheckError) as failure:
        await wait_for(kube, mapper, [ObjectRef.of(doomed), ObjectRef.of(stuck)], timeout=30)

    assert re.fullmatch(
        "failed early due to stalled resources: "
        rf"\[Job/{namespace}/doomed status: 'Failed': Job Failed\. failed: \d+/1\]",
        failure.value.message,
    ), failure.value.message
    live = await kube.get(JOB, namespace, "doomed")
    failed = [c for c in live["status"]["conditions"] if c["type"] == "Failed"]
    assert [(c["status"], c["reason"]) for c in failed] == [("True", "DeadlineExceeded")]


async def test_a_custom_resource_definition_becomes_established(
    kube: KubeClient,
    mapper: RestMapper,
    cluster_scoped: Callable[[ResourceInfo, str], None],
) -> None:
    group = f"{uuid.uuid4().hex[:8]}.weir.example.com"
    created = await kube.create(CRD, gadget_crd(group))
    cluster_scoped(CRD, created["metadata"]["name"])

    await wait_for(kube, mapper, [ObjectRef.of(created)], timeout=10)

    live = await kube.get(CRD, None, created["metadata"]["name"])
    established = [c for c in live["status"]["conditions"] if c["type"] == "Established"]
    assert [c["status"] for c in established] == ["True"]
