"""The local control plane itself: workloads really become Available on kwok's nodes, and pods
end as kwok's stages (built-in and weir's) say."""

from __future__ import annotations

from typing import Any

from controllers.api import ResourceInfo
from controllers.envtest import TEST_OUTCOME_ANNOTATION
from controllers.kube import KubeClient
from tests.integration.harness import wait_for_object

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
JOB = ResourceInfo(group="batch", version="v1", kind="Job", plural="jobs")
POD = ResourceInfo(group="", version="v1", kind="Pod", plural="pods")


async def test_a_deployment_becomes_available(kube: KubeClient, namespace: str) -> None:
    labels = {"app": "web"}
    await kube.create(
        DEPLOYMENT,
        {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    deployment = await wait_for_object(
        kube,
        DEPLOYMENT,
        namespace,
        "web",
        lambda d: (d.get("status") or {}).get("availableReplicas") == 2,
    )
    available = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert available["Available"] == "True"


def _pod_spec() -> dict[str, Any]:
    return {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}


def _pod(namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": _pod_spec(),
    }


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def _ended(pod: dict[str, Any]) -> bool:
    return _phase(pod) in ("Succeeded", "Failed")


def _exit_code(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"])


async def test_pods_end_as_the_stages_say(kube: KubeClient, namespace: str) -> None:
    """A Helm test pod succeeds, or fails when annotated so; a Job's pod still completes; any
    other pod runs on."""
    server = _pod(namespace, "server", {})
    # Both kinds of init container: the ready stage's template writes a status for each.
    server["spec"]["initContainers"] = [
        {"name": "setup", "image": "busybox:1.36"},
        {"name": "sidecar", "image": "busybox:1.36", "restartPolicy": "Always"},
    ]
    await kube.create(POD, server)
    await wait_for_object(kube, POD, namespace, "server", lambda p: _phase(p) == "Running")
    await kube.create(POD, _pod(namespace, "passes", {"helm.sh/hook": "test"}))
    failing = {"helm.sh/hook": "test-success", TEST_OUTCOME_ANNOTATION: "failed"}
    await kube.create(POD, _pod(namespace, "fails", failing))
    await kube.create(
        JOB,
        {
            "metadata": {"name": "once", "namespace": namespace},
            "spec": {"backoffLimit": 0, "template": {"spec": _pod_spec()}},
        },
    )

    passed = await wait_for_object(kube, POD, namespace, "passes", _ended)
    failed = await wait_for_object(kube, POD, namespace, "fails", _ended)
    job = await wait_for_object(
        kube, JOB, namespace, "once", lambda j: "completionTime" in (j.get("status") or {})
    )

    assert (_phase(passed), _exit_code(passed)) == ("Succeeded", 0)
    assert (_phase(failed), _exit_code(failed)) == ("Failed", 1)
    assert job["status"]["succeeded"] == 1
    server = await kube.get(POD, namespace, "server")
    assert _phase(server) == "Running"
    init_states = {s["name"]: s["state"] for s in server["status"]["initContainerStatuses"]}
    assert init_states["setup"]["terminated"]["exitCode"] == 0
    assert "running" in init_states["sidecar"]
