"""The Kustomization's target against the real API server: impersonation, kubeconfig Secrets,
the insecure flags and the refused configMapRef."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.conditions import FAILED
from controllers.envtest import ADMIN_USER, UNPRIVILEGED_USER, ControlPlane
from controllers.kinds import CONFIG_MAP, SECRET, SERVICE_ACCOUNT
from controllers.kube import ApiError, KubeClient, TransportError
from controllers.reconcile import ReconcileError, Stalling
from controllers.target import TargetOptions, Targets, service_account_user
from kustomize.api_v1 import Kustomization
from tests.integration.kinds import NAMESPACE

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io"
ROLE = ResourceInfo(group=RBAC, version="v1", kind="Role", plural="roles")
ROLE_BINDING = ResourceInfo(group=RBAC, version="v1", kind="RoleBinding", plural="rolebindings")
CLUSTER_ROLE = ResourceInfo(
    group=RBAC, version="v1", kind="ClusterRole", plural="clusterroles", namespaced=False
)
ACCESS_REVIEW = ResourceInfo(
    group="authorization.k8s.io",
    version="v1",
    kind="SubjectAccessReview",
    plural="subjectaccessreviews",
    namespaced=False,
)
SELF_REVIEW = ResourceInfo(
    group="authentication.k8s.io",
    version="v1",
    kind="SelfSubjectReview",
    plural="selfsubjectreviews",
    namespaced=False,
)
EXEC_API = "client.authentication.k8s.io/v1"


def kustomization(namespace: str, **spec: Any) -> Kustomization:
    return Kustomization.from_dict(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "interval": "10m",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
                **spec,
            },
        }
    )


def remote(name: str, key: str | None = None, **spec: Any) -> dict[str, Any]:
    ref = {"name": name} | ({"key": key} if key else {})
    return {"kubeConfig": {"secretRef": ref}, **spec}


def configmap(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
    }


def cluster_role(name: str) -> dict[str, Any]:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [rule],
    }


async def whoami(client: KubeClient) -> str:
    """The user the API server takes ``client``'s requests to come from."""
    review = await client.create(SELF_REVIEW, {"apiVersion": "authentication.k8s.io/v1"})
    return str(review["status"]["userInfo"]["username"])


async def forbidden(request: Any) -> ApiError:
    """The 403 that awaiting ``request`` raises."""
    with pytest.raises(ApiError) as caught:
        await request
    assert caught.value.status == 403, caught.value
    return caught.value


async def store_kubeconfig(kube: KubeClient, namespace: str, name: str, **values: Any) -> None:
    """A Secret holding each value (a kubeconfig dict, or text) under its key."""
    data = {
        key: base64.b64encode(
            (value if isinstance(value, str) else yaml.safe_dump(value)).encode()
        ).decode()
        for key, value in values.items()
    }
    await kube.create(SECRET, {"metadata": {"name": name, "namespace": namespace}, "data": data})


def admin_kubeconfig(control_plane: ControlPlane) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(control_plane.admin_kubeconfig.read_text())
    return config


def with_user(config: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    config["users"][0]["user"] = user
    return config


def with_cluster(config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    cluster = config["clusters"][0]["cluster"]
    cluster.pop("certificate-authority-data")
    cluster.update(changes)
    return config


def exec_plugin_for(control_plane: ControlPlane, user: str) -> dict[str, Any]:
    """An exec plugin (a real process) answering with ``user``'s client certificate."""
    credential = {
        "apiVersion": EXEC_API,
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": control_plane.certs.path(user, "crt").read_text(),
            "clientKeyData": control_plane.certs.path(user, "key").read_text(),
        },
    }
    script = f"import sys; sys.stdout.write({json.dumps(json.dumps(credential))})"
    return {"exec": {"apiVersion": EXEC_API, "command": sys.executable, "args": ["-c", script]}}


@pytest.fixture
async def deployer(kube: KubeClient, namespace: str) -> str:
    """A ServiceAccount ``deployer`` that may do anything to ConfigMaps in ``namespace``, and
    nothing else anywhere."""
    meta = {"name": "deployer", "namespace": namespace}
    await kube.create(SERVICE_ACCOUNT, {"metadata": meta})
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}
    await kube.create(ROLE, {"metadata": meta, "rules": [rule]})
    subject = {"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}
    role_ref = {"apiGroup": RBAC, "kind": "Role", "name": "deployer"}
    await kube.create(ROLE_BINDING, {"metadata": meta, "roleRef": role_ref, "subjects": [subject]})
    user = service_account_user(namespace, "deployer")
    review = {
        "spec": {
            "user": user,
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "create",
                "resource": "configmaps",
            },
        }
    }
    # RBAC's authorizer learns of the binding through its own informer, which offers nothing
    # to watch: ask the authorizer itself until it agrees (each question is a round trip).
    async with asyncio.timeout(30):
        while not (await kube.create(ACCESS_REVIEW, review))["status"].get("allowed"):
            pass
    return user


# Local cluster


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        pytest.param({"serviceAccountName": "deployer"}, TargetOptions(), id="spec"),
        pytest.param({}, TargetOptions(default_service_account="deployer"), id="default"),
        pytest.param(
            {"serviceAccountName": "deployer"},
            TargetOptions(default_service_account="nobody"),
            id="spec-over-default",
        ),
    ],
)
async def test_the_service_account_is_impersonated_on_the_local_cluster(
    kube: KubeClient, namespace: str, deployer: str, spec: dict[str, Any], options: TargetOptions
) -> None:
    async with Targets(options).open(kube, kustomization(namespace, **spec)) as target:
        assert await whoami(target.client) == deployer
        await target.client.create(CONFIG_MAP, configmap("by-deployer", namespace))
        refused = await forbidden(target.client.create(CLUSTER_ROLE, cluster_role(namespace)))
        elsewhere = await forbidden(
            target.client.create(CONFIG_MAP, configmap(namespace, "default"))
        )

    assert (target.user, target.remote) == (deployer, False)
    assert deployer in refused.message
    assert deployer in elsewhere.message
    assert await kube.get_or_none(CONFIG_MAP, namespace, "by-deployer") is not None
    assert await kube.get_or_none(CLUSTER_ROLE, None, namespace) is None


async def test_watches_are_impersonated_too(
    kube: KubeClient, namespace: str, deployer: str
) -> None:
    ks = kustomization(namespace, serviceAccountName="deployer")
    async with Targets().open(kube, ks) as target:
        with pytest.raises(ApiError) as caught:
            async for _ in target.client.watch(
                CONFIG_MAP, "0", namespace="default", timeout_seconds=5
            ):
                pass

    assert caught.value.status == 403
    assert deployer in caught.value.message


async def test_the_controller_client_keeps_its_own_identity(
    kube: KubeClient, namespace: str, deployer: str
) -> None:
    async with Targets().open(kube, kustomization(namespace, serviceAccountName="deployer")):
        # The controller's own requests, during the run and on the same connections.
        await kube.create(CONFIG_MAP, configmap("by-controller", "default"))
        assert await whoami(kube) == ADMIN_USER
    await kube.create(CONFIG_MAP, configmap("after", "default"))

    assert await whoami(kube) == ADMIN_USER
    for name in ("by-controller", "after"):
        await kube.delete(CONFIG_MAP, "default", name)


async def test_without_an_account_the_controller_applies_as_itself(
    kube: KubeClient, namespace: str
) -> None:
    async with Targets().open(kube, kustomization(namespace)) as target:
        assert await whoami(target.client) == ADMIN_USER

    assert target.client is kube
    assert target.user is None


async def test_the_local_mapper_is_shared_across_runs(kube: KubeClient, namespace: str) -> None:
    targets = Targets()
    async with targets.open(kube, kustomization(namespace)) as first:
        info = await first.mapper.resource_for("v1", "ConfigMap")
    async with targets.open(kube, kustomization(namespace, serviceAccountName="x")) as second:
        pass

    assert second.mapper is first.mapper
    assert info.plural == "configmaps"


async def test_a_missing_account_is_told_apart(
    kube: KubeClient, namespace: str, deployer: str
) -> None:
    targets = Targets()
    async with targets.open(kube, kustomization(namespace, serviceAccountName="deployer")) as there:
        assert await there.service_account_exists()
    async with targets.open(kube, kustomization(namespace, serviceAccountName="ghost")) as gone:
        assert not await gone.service_account_exists()
    async with targets.open(kube, kustomization(namespace)) as nobody:
        assert await nobody.service_account_exists()


# Remote clusters, from kubeconfig Secrets


async def test_the_kubeconfig_user_is_who_applies(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    unprivileged = yaml.safe_load(control_plane.user_kubeconfig.read_text())
    await store_kubeconfig(kube, namespace, "remote", value=unprivileged)

    async with Targets().open(kube, kustomization(namespace, **remote("remote"))) as target:
        refused = await forbidden(target.client.list(NAMESPACE))

    assert target.remote
    assert target.client.host == control_plane.server
    assert f'User "{UNPRIVILEGED_USER}"' in refused.message


async def test_an_admin_kubeconfig_works_and_is_closed_after_the_run(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    await store_kubeconfig(kube, namespace, "remote", value=admin_kubeconfig(control_plane))

    async with Targets().open(kube, kustomization(namespace, **remote("remote"))) as target:
        listed = await target.client.list(NAMESPACE)
        info = await target.mapper.resource_for("apps/v1", "Deployment")

    assert namespace in {item["metadata"]["name"] for item in listed["items"]}
    assert info.plural == "deployments"
    with pytest.raises(RuntimeError, match="closed"):
        await target.client.list(NAMESPACE)
    assert (await kube.get(NAMESPACE, None, namespace))["metadata"]["name"] == namespace


@pytest.mark.parametrize(
    ("values", "key", "user"),
    [
        pytest.param({"value": "admin", "value.yaml": "user"}, None, ADMIN_USER, id="value-first"),
        pytest.param({"value.yaml": "user"}, None, UNPRIVILEGED_USER, id="value.yaml"),
        pytest.param({"value": "admin", "mine": "user"}, "mine", UNPRIVILEGED_USER, id="key"),
    ],
)
async def test_the_secret_key_picks_the_kubeconfig(
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
    values: dict[str, str],
    key: str | None,
    user: str,
) -> None:
    files = {"admin": control_plane.admin_kubeconfig, "user": control_plane.user_kubeconfig}
    await store_kubeconfig(
        kube, namespace, "remote", **{k: files[v].read_text() for k, v in values.items()}
    )

    async with Targets().open(kube, kustomization(namespace, **remote("remote", key))) as target:
        assert await whoami(target.client) == user


async def test_the_service_account_is_impersonated_on_the_remote_cluster(
    kube: KubeClient, namespace: str, control_plane: ControlPlane, deployer: str
) -> None:
    await store_kubeconfig(kube, namespace, "remote", value=admin_kubeconfig(control_plane))
    ks = kustomization(namespace, **remote("remote", serviceAccountName="deployer"))

    async with Targets().open(kube, ks) as target:
        assert await whoami(target.client) == deployer
        await target.client.create(CONFIG_MAP, configmap("remote-by-deployer", namespace))
        refused = await forbidden(target.client.create(CLUSTER_ROLE, cluster_role(namespace)))
        assert await target.service_account_exists()

    assert (target.user, target.remote) == (deployer, True)
    assert deployer in refused.message


@pytest.mark.parametrize(
    ("secret", "key", "message"),
    [
        pytest.param(
            None, None, "unable to read KubeConfig secret '{ns}/remote': not found", id="no-secret"
        ),
        pytest.param(
            {"other": "x"},
            None,
            "KubeConfig secret '{ns}/remote' does not contain a 'value' key with a kubeconfig",
            id="no-value",
        ),
        pytest.param(
            {"value": "x"},
            "mine",
            "KubeConfig secret '{ns}/remote' does not contain a 'mine' key with a kubeconfig",
            id="no-named-key",
        ),
    ],
)
async def test_a_missing_secret_or_key_is_retried(
    kube: KubeClient, namespace: str, secret: dict[str, str] | None, key: str | None, message: str
) -> None:
    if secret is not None:
        await store_kubeconfig(kube, namespace, "remote", **secret)

    with pytest.raises(ReconcileError) as caught:
        async with Targets().open(kube, kustomization(namespace, **remote("remote", key))):
            pass

    assert not isinstance(caught.value, Stalling)
    assert (caught.value.reason, caught.value.message) == (FAILED, message.format(ns=namespace))


# Exec plugins and TLS verification


async def test_an_exec_plugin_is_refused_without_the_flag(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    config = with_user(admin_kubeconfig(control_plane), exec_plugin_for(control_plane, ADMIN_USER))
    await store_kubeconfig(kube, namespace, "remote", value=config)

    with pytest.raises(ReconcileError, match="--insecure-kubeconfig-exec") as caught:
        async with Targets().open(kube, kustomization(namespace, **remote("remote"))):
            pass

    assert caught.value.reason == FAILED
    assert not isinstance(caught.value, Stalling)


async def test_an_exec_plugin_runs_with_the_flag(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    plugin = exec_plugin_for(control_plane, UNPRIVILEGED_USER)
    await store_kubeconfig(
        kube, namespace, "remote", value=with_user(admin_kubeconfig(control_plane), plugin)
    )
    targets = Targets(TargetOptions(insecure_kubeconfig_exec=True))

    async with targets.open(kube, kustomization(namespace, **remote("remote"))) as target:
        assert await whoami(target.client) == UNPRIVILEGED_USER


async def test_a_failing_exec_plugin_is_a_retried_error(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    plugin = {"exec": {"apiVersion": EXEC_API, "command": "/nonexistent/weir-credentials"}}
    await store_kubeconfig(
        kube, namespace, "remote", value=with_user(admin_kubeconfig(control_plane), plugin)
    )
    targets = Targets(TargetOptions(insecure_kubeconfig_exec=True))

    with pytest.raises(ReconcileError, match="exec plugin failed") as caught:
        async with targets.open(kube, kustomization(namespace, **remote("remote"))):
            pass

    assert caught.value.reason == FAILED
    assert not isinstance(caught.value, Stalling)


async def test_tls_is_verified_against_the_system_roots_without_a_ca(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    await store_kubeconfig(
        kube, namespace, "remote", value=with_cluster(admin_kubeconfig(control_plane))
    )

    async with Targets().open(kube, kustomization(namespace, **remote("remote"))) as target:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await target.client.list(NAMESPACE)


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        pytest.param(TargetOptions(), True, id="refused"),
        pytest.param(TargetOptions(insecure_kubeconfig_tls=True), False, id="allowed"),
    ],
)
async def test_skipping_tls_verification_needs_the_flag(
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
    options: TargetOptions,
    refused: bool,
) -> None:
    config = with_cluster(admin_kubeconfig(control_plane), **{"insecure-skip-tls-verify": True})
    await store_kubeconfig(kube, namespace, "remote", value=config)
    ks = kustomization(namespace, **remote("remote"))

    if refused:
        with pytest.raises(ReconcileError, match="--insecure-kubeconfig-tls"):
            async with Targets(options).open(kube, ks):
                pass
        return
    async with Targets(options).open(kube, ks) as target:
        listed = await target.client.list(NAMESPACE)
    assert namespace in {item["metadata"]["name"] for item in listed["items"]}


# Workload identity


async def test_a_config_map_reference_stalls(kube: KubeClient, namespace: str) -> None:
    ks = kustomization(namespace, kubeConfig={"configMapRef": {"name": "eks"}})

    with pytest.raises(Stalling) as caught:
        async with Targets().open(kube, ks):
            pass

    assert caught.value.reason == FAILED
    assert "configMapRef" in caught.value.message
    assert "not supported by weir" in caught.value.message
