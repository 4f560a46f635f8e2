"""A HelmRelease's identity and cluster end to end: ``serviceAccountName`` (and the controller's
``--default-service-account``) impersonated by Helm's actions, and ``kubeConfig.secretRef``
naming the cluster (and user) Helm works on; the source and helm controllers as processes,
the chart served on loopback, the releases checked with the Go-built ``helm`` and the cluster's
objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.envtest import UNPRIVILEGED_USER, ControlPlane
from controllers.kinds import SERVICE_ACCOUNT
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from controllers.target import service_account_user
from tests.integration.harness import wait_for_deletion
from tests.integration.kinds import DEPLOYMENT
from tests.integration.processes import Controllers, helm_controller, source_controller
from tests.integration.test_helmrelease import HR, helm_cli, helmrelease, released
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
)
from tests.integration.test_target import (
    ACCESS_REVIEW,
    RBAC,
    ROLE,
    ROLE_BINDING,
    store_kubeconfig,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRepository tests.
__all__ = ["charts", "plain"]

SERVICE = ResourceInfo(group="", version="v1", kind="Service", plural="services")
EVERYTHING = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
# Helm's release storage and nothing else: enough to read and record a release, not to install
# the chart's objects.
STORAGE_ONLY = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}


async def start(
    control_plane: ControlPlane, namespace: str, workdir: Path, *helm_flags: str
) -> Controllers:
    both = Controllers(
        source_controller(control_plane, namespace, workdir / "source"),
        helm_controller(control_plane, namespace, workdir / "helm", *helm_flags),
    )
    for process in both.processes:
        await process.start()
    return both


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Controllers]:
    """The source and helm controllers watching ``namespace``; the helm controller's extra
    flags are the fixture's parameter (``indirect``), none by default."""
    flags: tuple[str, ...] = getattr(request, "param", ())
    both = await start(control_plane, namespace, tmp_path, *flags)
    try:
        yield both
    finally:
        codes = {p.name: await p.stop() for p in both.processes if p.process is not None}
        print(both.logs())
    assert codes == {p.name: 0 for p in both.processes}


async def grant(
    kube: KubeClient, namespace: str, name: str, rule: dict[str, Any], user: str
) -> None:
    """Role ``name`` with ``rule`` in ``namespace`` bound to ``user`` (a ServiceAccount's user
    name, or a plain user), once RBAC's authorizer says so."""
    meta = {"name": name, "namespace": namespace}
    await kube.create(ROLE, {"metadata": meta, "rules": [rule]})
    prefix = "system:serviceaccount:"
    if user.startswith(prefix):
        account_namespace, account = user[len(prefix) :].split(":")
        subject = {"kind": "ServiceAccount", "name": account, "namespace": account_namespace}
    else:
        subject = {"kind": "User", "apiGroup": RBAC, "name": user}
    role_ref = {"apiGroup": RBAC, "kind": "Role", "name": name}
    await kube.create(ROLE_BINDING, {"metadata": meta, "roleRef": role_ref, "subjects": [subject]})
    review = {
        "spec": {
            "user": user,
            "resourceAttributes": {"namespace": namespace, "verb": "get", "resource": "secrets"},
        }
    }
    # RBAC's authorizer learns of the binding through its own informer: ask it until it agrees.
    async with asyncio.timeout(30):
        while not (await kube.create(ACCESS_REVIEW, review))["status"].get("allowed"):
            pass


async def service_account(kube: KubeClient, namespace: str, name: str, rule: dict[str, Any]) -> str:
    """ServiceAccount ``name`` in ``namespace`` that may do what ``rule`` allows there, and
    nothing anywhere else; its user name."""
    await kube.create(SERVICE_ACCOUNT, {"metadata": {"name": name, "namespace": namespace}})
    user = service_account_user(namespace, name)
    await grant(kube, namespace, name, rule, user)
    return user


def released_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    """``Released`` False with ``reason``."""

    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, "Released") or {}
        return found.get("status") == "False" and found.get("reason") == reason

    return check


def ready_false_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready") or {}
        return ready.get("status") == "False" and ready.get("reason") == reason

    return check


def installed(namespace: str, name: str) -> Callable[[dict[str, Any]], bool]:
    return released(
        f"Helm install succeeded for release {namespace}/{name}.v1 with chart podinfo@1.0.0"
    )


async def test_the_release_is_made_as_its_service_account(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """An account that may manage its namespace's objects installs, upgrades and uninstalls;
    one that may only keep Helm's storage fails to install, Helm's refusal named."""
    await service_account(kube, namespace, "deployer", EVERYTHING)
    limited = await service_account(kube, namespace, "limited", STORAGE_ONLY)
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(HR, helmrelease("app", namespace, serviceAccountName="deployer"))
    await kube.create(HR, helmrelease("denied", namespace, serviceAccountName="limited"))

    await controllers.wait_for(
        kube, HR, namespace, "app", installed(namespace, "app"), "installed", timeout=150
    )
    assert await kube.get_or_none(DEPLOYMENT, namespace, "app-podinfo") is not None
    home = tmp_path / "helm-cli"
    listed = helm_cli(control_plane, home, "list", f"--namespace={namespace}")
    assert {(r["name"], r["status"]) for r in listed} >= {("app", "deployed")}

    obj = await controllers.wait_for(
        kube, HR, namespace, "denied", released_with("InstallFailed"), "install failed", 150
    )
    message = (condition(obj, "Released") or {})["message"]
    assert message.startswith(
        f"Helm install failed for release {namespace}/denied with chart podinfo@1.0.0: "
    )
    assert "forbidden" in message
    assert f'User "{limited}" cannot' in message
    # Nothing of the chart's made.
    for kind in (DEPLOYMENT, SERVICE, SERVICE_ACCOUNT):
        assert await kube.get_or_none(kind, namespace, "denied-podinfo") is None

    # Drift corrected as the account too: the Deployment deleted comes back.
    await kube.patch(HR, namespace, "app", {"spec": {"driftDetection": {"mode": "enabled"}}})
    await kube.delete(DEPLOYMENT, namespace, "app-podinfo")
    await wait_for_deletion(kube, DEPLOYMENT, namespace, "app-podinfo")
    await kube.patch(HR, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: "drift"}}})
    await controllers.wait_for(
        kube, DEPLOYMENT, namespace, "app-podinfo", lambda _: True, "recreated", timeout=60
    )

    # Uninstalled as the account on deletion.
    await kube.delete(HR, namespace, "app")
    await wait_for_deletion(kube, HR, namespace, "app", timeout=120)
    assert await kube.get_or_none(DEPLOYMENT, namespace, "app-podinfo") is None
    listed = helm_cli(control_plane, home, "list", f"--namespace={namespace}")
    assert "app" not in {r["name"] for r in listed}


@pytest.mark.parametrize("controllers", [("--default-service-account=limited",)], indirect=True)
async def test_the_default_service_account_applies_when_none_is_named(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
) -> None:
    limited = await service_account(kube, namespace, "limited", STORAGE_ONLY)
    await service_account(kube, namespace, "deployer", EVERYTHING)
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(HR, helmrelease("by-default", namespace))
    await kube.create(HR, helmrelease("named", namespace, serviceAccountName="deployer"))

    obj = await controllers.wait_for(
        kube, HR, namespace, "by-default", released_with("InstallFailed"), "install failed", 150
    )
    assert f'User "{limited}" cannot' in (condition(obj, "Released") or {})["message"]
    # The account the HelmRelease names wins over the default.
    await controllers.wait_for(
        kube, HR, namespace, "named", installed(namespace, "named"), "installed", timeout=150
    )
    assert await kube.get_or_none(DEPLOYMENT, namespace, "named-podinfo") is not None
    assert await kube.get_or_none(DEPLOYMENT, namespace, "by-default-podinfo") is None


async def test_the_release_goes_to_the_kubeconfig_cluster_as_its_user(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """The kubeconfig Secret's user (no rights at first) is who Helm works as: refused, then,
    once granted its namespace, installed and, on deletion, uninstalled there."""
    user_config = yaml.safe_load(control_plane.user_kubeconfig.read_text())
    await store_kubeconfig(kube, namespace, "remote", **{"value.yaml": user_config})
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    spec = {"kubeConfig": {"secretRef": {"name": "remote"}}}
    await kube.create(HR, helmrelease("far", namespace, **spec))

    obj = await controllers.wait_for(
        kube, HR, namespace, "far", ready_false_with("InitFailed"), "refused", timeout=150
    )
    message = (condition(obj, "Ready") or {})["message"]
    assert f'User "{UNPRIVILEGED_USER}" cannot' in message

    await grant(kube, namespace, "remote-user", EVERYTHING, UNPRIVILEGED_USER)
    await kube.patch(HR, namespace, "far", {"metadata": {"annotations": {REQUESTED_AT: "now"}}})
    await controllers.wait_for(
        kube, HR, namespace, "far", installed(namespace, "far"), "installed", timeout=150
    )
    assert await kube.get_or_none(DEPLOYMENT, namespace, "far-podinfo") is not None

    await kube.delete(HR, namespace, "far")
    await wait_for_deletion(kube, HR, namespace, "far", timeout=120)
    assert await kube.get_or_none(DEPLOYMENT, namespace, "far-podinfo") is None
    home = tmp_path / "helm-cli"
    assert helm_cli(control_plane, home, "list", f"--namespace={namespace}") == []


async def test_a_missing_kubeconfig_secret_fails_and_deletion_leaves_the_release(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
) -> None:
    """As Flux: no Secret, no client (``RESTClientError``); deleted, the HelmRelease goes
    without an uninstall it cannot make."""
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    spec = {"kubeConfig": {"secretRef": {"name": "absent"}}}
    await kube.create(HR, helmrelease("lost", namespace, **spec))

    obj = await controllers.wait_for(
        kube, HR, namespace, "lost", ready_false_with("RESTClientError"), "failed", timeout=150
    )
    assert (condition(obj, "Ready") or {})["message"] == (
        f"unable to read KubeConfig secret '{namespace}/absent': not found"
    )
    await kube.delete(HR, namespace, "lost")
    await wait_for_deletion(kube, HR, namespace, "lost", timeout=60)
