"""The local control plane itself: workloads really become Available on kwok's nodes."""

from __future__ import annotations

from controllers.api import ResourceInfo
from controllers.kube import KubeClient
from tests.integration.harness import wait_for_object

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")


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
