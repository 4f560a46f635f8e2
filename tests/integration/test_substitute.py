"""postBuild variables read from real ConfigMaps and Secrets on the real API server."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from kustomize.api_v1 import PostBuild
from kustomize.substitute import SubstitutionError, load_variables, substitute_objects

pytestmark = pytest.mark.integration


async def create_config_map(kube: KubeClient, namespace: str, name: str, **data: str) -> None:
    body = {"metadata": {"name": name, "namespace": namespace}, "data": data}
    await kube.create(CONFIG_MAP, body)


async def create_secret(kube: KubeClient, namespace: str, name: str, **data: str) -> None:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    await kube.create(SECRET, {"metadata": {"name": name, "namespace": namespace}, "data": encoded})


def post_build(**spec: Any) -> PostBuild:
    return PostBuild.model_validate(spec)


async def test_later_sources_win_and_inline_variables_win_over_all(
    kube: KubeClient, namespace: str
) -> None:
    await create_config_map(kube, namespace, "vars", a="from-cm", b="from-cm", c="from-cm")
    await create_secret(kube, namespace, "secret-vars", b="from-secret", d="line\none\n")
    spec = post_build(
        substitute={"c": "inline", "e": "in\nline"},
        substituteFrom=[
            {"kind": "ConfigMap", "name": "vars"},
            {"kind": "Secret", "name": "secret-vars"},
        ],
    )

    variables = await load_variables(kube, namespace, spec)

    assert variables == {
        "a": "from-cm",
        "b": "from-secret",
        "c": "inline",
        "d": "lineone",
        "e": "inline",
    }


async def test_the_order_of_sources_decides(kube: KubeClient, namespace: str) -> None:
    await create_config_map(kube, namespace, "vars", b="from-cm")
    await create_secret(kube, namespace, "secret-vars", b="from-secret")
    spec = post_build(
        substituteFrom=[
            {"kind": "Secret", "name": "secret-vars"},
            {"kind": "ConfigMap", "name": "vars"},
        ]
    )

    assert await load_variables(kube, namespace, spec) == {"b": "from-cm"}


async def test_an_optional_source_may_be_missing(kube: KubeClient, namespace: str) -> None:
    await create_secret(kube, namespace, "present", x="1")
    spec = post_build(
        substituteFrom=[
            {"kind": "ConfigMap", "name": "absent", "optional": True},
            {"kind": "Secret", "name": "absent", "optional": True},
            {"kind": "Secret", "name": "present", "optional": True},
        ]
    )

    assert await load_variables(kube, namespace, spec) == {"x": "1"}


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
async def test_a_missing_source_is_an_error_naming_it(
    kube: KubeClient, namespace: str, kind: str
) -> None:
    await create_secret(kube, namespace, "present", password="hunter2")
    spec = post_build(
        substituteFrom=[{"kind": "Secret", "name": "present"}, {"kind": kind, "name": "absent"}]
    )

    with pytest.raises(SubstitutionError) as caught:
        await load_variables(kube, namespace, spec)

    assert str(caught.value) == f"substituteFrom {kind} '{namespace}/absent' not found"


async def test_a_source_in_another_namespace_is_not_found(kube: KubeClient, namespace: str) -> None:
    await create_config_map(kube, namespace, "vars", a="1")

    with pytest.raises(SubstitutionError, match="not found"):
        await load_variables(
            kube, "default", post_build(substituteFrom=[{"kind": "ConfigMap", "name": "vars"}])
        )


async def test_without_post_build_there_are_no_variables(kube: KubeClient, namespace: str) -> None:
    assert await load_variables(kube, namespace, None) == {}
    assert await load_variables(kube, namespace, post_build()) == {}


async def test_variables_from_the_cluster_substitute_built_objects(
    kube: KubeClient, namespace: str
) -> None:
    await create_config_map(kube, namespace, "cluster-vars", cluster_env="prod", replicas="3")
    await create_secret(kube, namespace, "cluster-secrets", token="s3cr3t")
    spec = post_build(
        substitute={"cluster_region": "eu-central-1"},
        substituteFrom=[
            {"kind": "ConfigMap", "name": "cluster-vars"},
            {"kind": "Secret", "name": "cluster-secrets"},
        ],
    )
    built = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "app",
                "labels": {"env": "${cluster_env:=dev}", "region": "${cluster_region}"},
            },
            "spec": {"replicas": "${replicas}", "paused": "${paused:=false}"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "token"},
            "stringData": {"token": "${token}", "literal": "$${token}"},
        },
    ]

    deployment, secret = substitute_objects(built, await load_variables(kube, namespace, spec))

    assert deployment["metadata"]["labels"] == {"env": "prod", "region": "eu-central-1"}
    assert deployment["spec"] == {"replicas": 3, "paused": False}
    assert secret["stringData"] == {"token": "s3cr3t", "literal": "${token}"}
