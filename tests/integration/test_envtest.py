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


def _job(namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": annotations}, "spec": _pod_spec()},
        },
    }


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    found = [c for c in (job.get("status") or {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else None


def _job_ended(job: dict[str, Any]) -> bool:
    return any(
        (_job_condition(job, type_) or {}).get("status") == "True"
        for type_ in ("Complete", "Failed")
    )


async def test_pods_end_as_the_stages_say(kube: KubeClient, namespace: str) -> None:
    """A Helm test pod succeeds, or fails when annotated so; a Job's pod completes, or fails
    when its template is annotated so (and the Job controller fails the Job); any other pod
    runs on."""
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
    await kube.create(JOB, _job(namespace, "once", {}))
    await kube.create(JOB, _job(namespace, "doomed", {TEST_OUTCOME_ANNOTATION: "failed"}))

    passed = await wait_for_object(kube, POD, namespace, "passes", _ended)
    failed = await wait_for_object(kube, POD, namespace, "fails", _ended)
    job = await wait_for_object(kube, JOB, namespace, "once", _job_ended)
    doomed = await wait_for_object(kube, JOB, namespace, "doomed", _job_ended)

    assert (_phase(passed), _exit_code(passed)) == ("Succeeded", 0)
    assert (_phase(failed), _exit_code(failed)) == ("Failed", 1)
    assert (_job_condition(job, "Complete") or {}).get("status") == "True"
    assert (job["status"]["succeeded"], job["status"].get("failed", 0)) == (1, 0)
    # backoffLimit 0: the first failed pod fails the Job, as kube-controller-manager decides.
    doomed_failed = _job_condition(doomed, "Failed")
    assert doomed_failed is not None
    assert (doomed_failed["status"], doomed_failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert (doomed["status"]["failed"], doomed["status"].get("succeeded", 0)) == (1, 0)
    [doomed_pod] = (
        await kube.list(POD, namespace, label_selector="batch.kubernetes.io/job-name=doomed")
    )["items"]
    assert (_phase(doomed_pod), _exit_code(doomed_pod)) == ("Failed", 1)
    server = await kube.get(POD, namespace, "server")
    assert _phase(server) == "Running"
    init_states = {s["name"]: s["state"] for s in server["status"]["initContainerStatuses"]}
    assert init_states["setup"]["terminated"]["exitCode"] == 0
    assert "running" in init_states["sidecar"]
