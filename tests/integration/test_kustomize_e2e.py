"""Acceptance: ``python -m source`` and ``python -m kustomize`` as real processes, a real Git
server and the real control plane; each test checks what a user would check with kubectl."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.envtest import ControlPlane, ensure_binaries, find_binary
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.harness import is_ready
from tests.integration.kinds import EVENT, GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers, running_controllers
from tests.sops import SECRET_REGEX, new_age_identity, pgp_key, sops_encrypt

pytestmark = pytest.mark.integration

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
SERVICE = ResourceInfo(group="", version="v1", kind="Service", plural="services")
CONFIG_MAP = ResourceInfo(group="", version="v1", kind="ConfigMap", plural="configmaps")
SECRET = ResourceInfo(group="", version="v1", kind="Secret", plural="secrets")
SERVICE_ACCOUNT = ResourceInfo(
    group="", version="v1", kind="ServiceAccount", plural="serviceaccounts"
)
RBAC = "rbac.authorization.k8s.io"
ROLE = ResourceInfo(group=RBAC, version="v1", kind="Role", plural="roles")
ROLE_BINDING = ResourceInfo(group=RBAC, version="v1", kind="RoleBinding", plural="rolebindings")
CLUSTER_ROLE = ResourceInfo(
    group=RBAC, version="v1", kind="ClusterRole", plural="clusterroles", namespaced=False
)
BY_KIND = {info.kind: info for info in (DEPLOYMENT, SERVICE, CONFIG_MAP, SECRET)}
OWNER_NAME = "kustomize.toolkit.fluxcd.io/name"
OWNER_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Controllers]:
    """Both controllers as processes watching only ``namespace``."""
    async with running_controllers(
        control_plane, namespace, tmp_path, kustomize_flags=["--requeue-dependency=2s"]
    ) as both:
        yield both


# Manifests


def app_files(namespace: str) -> dict[str, str]:
    """A base (Deployment, Service, ConfigMap) and two overlays that change it differently."""
    base = {
        "base/kustomization.yaml": {
            "resources": ["deployment.yaml", "service.yaml", "configmap.yaml"]
        },
        "base/deployment.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.27",
                                "ports": [{"containerPort": 8080}],
                                "envFrom": [{"configMapRef": {"name": "web-config"}}],
                            }
                        ]
                    },
                },
            },
        },
        "base/service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        "base/configmap.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config"},
            "data": {"GREETING": "hello", "LOG_LEVEL": "info"},
        },
    }
    overlays = {
        "overlays/dev/kustomization.yaml": {
            "namespace": namespace,
            "namePrefix": "dev-",
            "resources": ["../../base"],
            "labels": [{"pairs": {"env": "dev"}}],
        },
        "overlays/production/kustomization.yaml": {
            "namespace": namespace,
            "namePrefix": "prod-",
            "resources": ["../../base"],
            "labels": [{"pairs": {"env": "production"}}],
            "replicas": [{"name": "web", "count": 3}],
            "patches": [
                {"path": "resources.yaml"},
                {
                    "patch": yaml.safe_dump(
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {"name": "web-config"},
                            "data": {"LOG_LEVEL": "warn"},
                        }
                    )
                },
            ],
        },
        "overlays/production/resources.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                            }
                        ]
                    }
                }
            },
        },
    }
    return {path: yaml.safe_dump(doc) for path, doc in {**base, **overlays}.items()}


async def git_source(
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    files: Mapping[str, str | bytes],
) -> str:
    """A repository holding ``files`` and the GitRepository ``app`` following its main branch;
    the revision the Kustomizations must apply."""
    repo = f"e2e-{namespace}"
    git_repos.create(repo)
    commit = git_repos.commit(repo, dict(files), "manifests")
    await kube.create(
        GITREPO,
        git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"}),
    )
    return f"main@sha1:{commit}"


def kustomize_build(files: Mapping[str, str], path: str, scratch: Path) -> list[dict[str, Any]]:
    """What the real ``kustomize build`` makes of ``path`` in a checkout of ``files``."""
    for name, content in files.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(content)
    out = subprocess.run(
        [str(find_binary("kustomize")), "build", str(scratch / path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


# Conditions and events


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return condition(obj, "Ready")


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return status.get("lastAppliedRevision") == revision and is_ready(obj)

    return check


def attempted_and_failed(revision: str) -> Callable[[dict[str, Any]], bool]:
    """Tried ``revision`` and is not Ready."""

    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return (
            status.get("lastAttemptedRevision") == revision
            and ready_condition(obj).get("status") == "False"
        )

    return check


def failed(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready = ready_condition(obj)
        return ready.get("status") == "False" and ready.get("reason") == reason

    return check


async def wait_for_event(
    kube: KubeClient,
    controllers: Controllers,
    namespace: str,
    kustomization_name: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The first Event about the Kustomization for which ``predicate`` holds, watching."""

    def matches(event: dict[str, Any]) -> bool:
        involved = event.get("involvedObject") or {}
        about = (involved.get("kind"), involved.get("name")) == (KS.kind, kustomization_name)
        return about and predicate(event)

    try:
        async with asyncio.timeout(timeout):
            while True:
                page = await kube.list(EVENT, namespace)
                items: list[dict[str, Any]] = page["items"]
                for item in items:
                    if matches(item):
                        return item
                version = page["metadata"]["resourceVersion"]
                async for change in kube.watch(EVENT, version, namespace=namespace):
                    if change.type != "BOOKMARK" and matches(change.object):
                        return change.object
    except TimeoutError:
        seen = [
            (e["reason"], e["message"])
            for e in (await kube.list(EVENT, namespace))["items"]
            if (e.get("involvedObject") or {}).get("name") == kustomization_name
        ]
        raise AssertionError(
            f"no such event for Kustomization/{kustomization_name} after {timeout:.0f}s; "
            f"seen: {json.dumps(seen, indent=1)}\n{controllers.logs()}"
        ) from None


def differences(live: Any, desired: Any, path: str = "") -> list[str]:
    """Where ``live`` does not hold ``desired``: every field of ``desired`` must be in ``live``
    with the same value (the API server may add defaults, never change what was given)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [f"{path}: {live!r} is not a map"]
        return [
            d for key in desired for d in differences(live.get(key), desired[key], f"{path}.{key}")
        ]
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [f"{path}: {live!r} != {desired!r}"]
        return [
            d
            for i, pair in enumerate(zip(live, desired, strict=True))
            for d in differences(*pair, f"{path}[{i}]")
        ]
    return [] if live == desired else [f"{path}: {live!r} != {desired!r}"]


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


# 1. What kustomize builds is what is in the cluster


async def test_two_overlays_are_applied_as_kustomize_builds_them(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    tmp_path: Path,
) -> None:
    files = app_files(namespace)
    revision = await git_source(kube, namespace, git_repos, git_daemon, files)
    for overlay in ("dev", "production"):
        await kube.create(KS, kustomization(overlay, namespace, f"./overlays/{overlay}"))

    for overlay in ("dev", "production"):
        obj = await controllers.wait_for(kube, KS, namespace, overlay, applied(revision), "Ready")
        assert ready_condition(obj)["message"] == f"Applied revision: {revision}"
        built = kustomize_build(files, f"overlays/{overlay}", tmp_path / overlay)
        assert sorted(f"{o['kind']}/{o['metadata']['name']}" for o in built) == [
            f"ConfigMap/{overlay[:4]}-web-config",
            f"Deployment/{overlay[:4]}-web",
            f"Service/{overlay[:4]}-web",
        ]
        for desired in built:
            meta = desired["metadata"]
            live = await kube.get(BY_KIND[desired["kind"]], namespace, meta["name"])
            owner = {OWNER_NAME: overlay, OWNER_NAMESPACE: namespace}
            assert live["metadata"]["labels"] == {**meta["labels"], **owner}
            fields = {key: desired[key] for key in ("spec", "data") if key in desired}
            assert differences(live, fields) == [], f"{desired['kind']}/{meta['name']}"

    # The overlays differ where a user would look.
    dev = await kube.get(DEPLOYMENT, namespace, "dev-web")
    prod = await kube.get(DEPLOYMENT, namespace, "prod-web")
    assert (dev["spec"]["replicas"], prod["spec"]["replicas"]) == (1, 3)
    assert prod["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": "prod-web-config"}}
    ]
    prod_config = await kube.get(CONFIG_MAP, namespace, "prod-web-config")
    assert prod_config["data"] == {"GREETING": "hello", "LOG_LEVEL": "warn"}


# 2. Prune, an invalid commit, and its revert


def config_map(name: str, value: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}}
    )


async def push(
    kube: KubeClient,
    controllers: Controllers,
    namespace: str,
    git_repos: GitRepos,
    files: Mapping[str, str | None],
) -> str:
    """Commit ``files`` (None deletes) and have the source pick the commit up at once."""
    commit = git_repos.commit(f"e2e-{namespace}", dict(files), "change")
    await kube.patch(
        GITREPO, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: commit}}}
    )
    revision = f"main@sha1:{commit}"
    await controllers.wait_for(
        kube,
        GITREPO,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("artifact", {}).get("revision") == revision,
        f"the artifact of {revision}",
    )
    return revision


async def test_a_removed_object_is_pruned_and_a_bad_commit_applies_nothing(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    files = {"app/a.yaml": config_map("a", "one"), "app/b.yaml": config_map("b", "two")}
    first = await git_source(kube, namespace, git_repos, git_daemon, files)
    await kube.create(KS, kustomization("app", namespace, "./app", targetNamespace=namespace))
    await controllers.wait_for(kube, KS, namespace, "app", applied(first), "a and b applied")
    assert (await kube.get(CONFIG_MAP, namespace, "b"))["data"] == {"v": "two"}

    second = await push(kube, controllers, namespace, git_repos, {"app/b.yaml": None})
    await controllers.wait_for(kube, KS, namespace, "app", applied(second), "b removed")
    assert await kube.get_or_none(CONFIG_MAP, namespace, "b") is None
    assert await kube.get_or_none(CONFIG_MAP, namespace, "a") is not None
    await wait_for_event(
        kube,
        controllers,
        namespace,
        "app",
        lambda e: f"ConfigMap/{namespace}/b deleted" in e["message"],
    )

    # A valid new object beside an invalid one: neither is applied, the status says why.
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: not-a-map\n"
    third = await push(
        kube,
        controllers,
        namespace,
        git_repos,
        {"app/c.yaml": config_map("c", "three"), "app/bad.yaml": bad},
    )
    obj = await controllers.wait_for(
        kube,
        KS,
        namespace,
        "app",
        attempted_and_failed(third),
        "the bad commit refused",
    )
    assert "ConfigMap/" in ready_condition(obj)["message"]
    assert "bad" in ready_condition(obj)["message"]
    assert obj["status"]["lastAppliedRevision"] == second
    assert await kube.get_or_none(CONFIG_MAP, namespace, "c") is None

    fourth = await push(kube, controllers, namespace, git_repos, {"app/bad.yaml": None})
    await controllers.wait_for(kube, KS, namespace, "app", applied(fourth), "the revert applied")
    assert (await kube.get(CONFIG_MAP, namespace, "c"))["data"] == {"v": "three"}


# 3. Drift is reverted


async def test_a_manual_scale_is_reverted_within_the_interval(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    revision = await git_source(kube, namespace, git_repos, git_daemon, app_files(namespace))
    await kube.create(KS, kustomization("dev", namespace, "./overlays/dev", interval="5s"))
    await controllers.wait_for(kube, KS, namespace, "dev", applied(revision), "Ready")

    # kubectl scale deployment dev-web --replicas=5
    await kube.patch(
        DEPLOYMENT, namespace, "dev-web", {"spec": {"replicas": 5}}, field_manager="kubectl"
    )

    await controllers.wait_for(
        kube,
        DEPLOYMENT,
        namespace,
        "dev-web",
        lambda d: d["spec"]["replicas"] == 1,
        "scaled back to 1 replica",
        timeout=15,
    )
    event = await wait_for_event(
        kube,
        controllers,
        namespace,
        "dev",
        lambda e: f"Deployment/{namespace}/dev-web configured" in e["message"],
    )
    assert (event["type"], event["reason"]) == ("Normal", "ReconciliationSucceeded")


# 4. postBuild substitution


async def test_variables_come_from_the_spec_a_config_map_and_a_secret(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    # Not an f-string: ${...} is for the controller to substitute.
    manifest = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    env: ${cluster_env}
data:
  greeting: ${greeting}
  token: ${api_token}
  region: ${region:=eu-west-1}
"""
    revision = await git_source(
        kube, namespace, git_repos, git_daemon, {"config/settings.yaml": manifest}
    )
    meta = {"namespace": namespace}
    await kube.create(
        CONFIG_MAP, {"metadata": {"name": "cluster-vars", **meta}, "data": {"greeting": "hello"}}
    )
    await kube.create(
        SECRET,
        {"metadata": {"name": "cluster-secrets", **meta}, "stringData": {"api_token": "t0k"}},
    )
    post_build = {
        "substitute": {"cluster_env": "staging"},
        "substituteFrom": [
            {"kind": "ConfigMap", "name": "cluster-vars"},
            {"kind": "Secret", "name": "cluster-secrets"},
            {"kind": "Secret", "name": "not-there", "optional": True},
        ],
    }
    await kube.create(
        KS,
        kustomization(
            "config", namespace, "./config", targetNamespace=namespace, postBuild=post_build
        ),
    )

    await controllers.wait_for(kube, KS, namespace, "config", applied(revision), "Ready")
    settings = await kube.get(CONFIG_MAP, namespace, "settings")
    assert settings["metadata"]["labels"]["env"] == "staging"
    assert settings["data"] == {"greeting": "hello", "token": "t0k", "region": "eu-west-1"}


# 5. SOPS


def secret_manifest(name: str, password: str) -> bytes:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"password": password},
    }
    return yaml.safe_dump(secret).encode()


async def test_sops_secrets_are_applied_decrypted_and_never_with_the_wrong_key(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    binaries = ensure_binaries()
    age, other_age = new_age_identity(binaries), new_age_identity(binaries)
    with pgp_key() as pgp:

        def encrypted(name: str, password: str, **recipient: Any) -> bytes:
            document = secret_manifest(name, password)
            return sops_encrypt(
                binaries, document, "yaml", encrypted_regex=SECRET_REGEX, **recipient
            )

        files: dict[str, str | bytes] = {
            "secrets/kustomization.yaml": "resources: [age.yaml, pgp.yaml]\n",
            "secrets/age.yaml": encrypted("db-age", "hunter2", age=age),
            "secrets/pgp.yaml": encrypted("db-pgp", "correct-horse", pgp=pgp),
            "rotated/secret.yaml": encrypted("db-rotated", "battery-staple", age=age),
        }
        keys = {"identity.agekey": age.identity, "pgp.asc": pgp.private}
    assert b"hunter2" not in files["secrets/age.yaml"]
    revision = await git_source(kube, namespace, git_repos, git_daemon, files)
    for name, data in (
        ("sops-keys", keys),
        ("wrong-keys", {"identity.agekey": other_age.identity}),
    ):
        await kube.create(
            SECRET, {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
        )
    for name, keys_secret in (("secrets", "sops-keys"), ("rotated", "wrong-keys")):
        decryption = {"provider": "sops", "secretRef": {"name": keys_secret}}
        spec = {"targetNamespace": namespace, "decryption": decryption}
        await kube.create(KS, kustomization(name, namespace, f"./{name}", **spec))

    await controllers.wait_for(kube, KS, namespace, "secrets", applied(revision), "Ready")
    assert decoded(await kube.get(SECRET, namespace, "db-age")) == {"password": "hunter2"}
    assert decoded(await kube.get(SECRET, namespace, "db-pgp")) == {"password": "correct-horse"}

    rotated = await controllers.wait_for(
        kube, KS, namespace, "rotated", failed("BuildFailed"), "failed to build"
    )
    message = ready_condition(rotated)["message"]
    assert f"cannot decrypt Secret/{namespace}/db-rotated" in message
    assert "battery-staple" not in message
    assert await kube.get_or_none(SECRET, namespace, "db-rotated") is None


# 6. The controllers share only CRD status and the artifact server


async def test_the_artifact_server_is_the_only_channel_between_the_controllers(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    source, applier = controllers.source, controllers.kustomize
    assert not any(arg.startswith("--storage") for arg in applier.argv)
    assert not applier.workdir.is_relative_to(source.workdir)
    revision = await git_source(kube, namespace, git_repos, git_daemon, app_files(namespace))
    await kube.create(KS, kustomization("dev", namespace, "./overlays/dev"))

    obj = await controllers.wait_for(kube, KS, namespace, "dev", applied(revision), "Ready")
    artifact = (await kube.get(GITREPO, namespace, "app"))["status"]["artifact"]
    storage_addr = next(a for a in source.argv if a.startswith("--storage-adv-addr="))
    assert artifact["url"].startswith(f"http://{storage_addr.partition('=')[2]}/")
    assert obj["status"]["lastAttemptedRevision"] == artifact["revision"] == revision

    # With the source controller (and its artifact server) gone, a requested reconcile fails
    # to fetch the artifact its status still names; what was applied stays.
    assert await source.stop() == 0
    token = "after-the-source-stopped"
    await kube.patch(KS, namespace, "dev", {"metadata": {"annotations": {REQUESTED_AT: token}}})

    def fetch_failed(o: dict[str, Any]) -> bool:
        handled = (o.get("status") or {}).get("lastHandledReconcileAt") == token
        return handled and failed("ArtifactFailed")(o)

    stuck = await controllers.wait_for(
        kube, KS, namespace, "dev", fetch_failed, "failing to fetch the artifact"
    )
    message = ready_condition(stuck)["message"]
    assert message.startswith("failed to fetch artifact")
    assert storage_addr.partition("=")[2] in message
    assert stuck["status"]["lastAppliedRevision"] == revision
    assert await kube.get_or_none(DEPLOYMENT, namespace, "dev-web") is not None


# 7. dependsOn and health checks


def deployment(name: str, **pod_spec: Any) -> str:
    labels = {"app": name}
    container = {"name": name, "image": "registry.invalid/app:1"}
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container], **pod_spec},
                },
            },
        }
    )


async def test_apps_wait_for_their_infra_to_be_ready(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings"}}
    files = {
        "infra/cache.yaml": deployment("cache"),
        "apps/settings.yaml": yaml.safe_dump(settings),
    }
    revision = await git_source(kube, namespace, git_repos, git_daemon, files)
    common = {"targetNamespace": namespace}
    await kube.create(
        KS, kustomization("apps", namespace, "./apps", dependsOn=[{"name": "infra"}], **common)
    )

    await controllers.wait_for(
        kube, KS, namespace, "apps", failed("DependencyNotReady"), "waiting for infra"
    )
    assert await kube.get_or_none(CONFIG_MAP, namespace, "app-settings") is None

    await kube.create(KS, kustomization("infra", namespace, "./infra", wait=True, **common))
    apps = await controllers.wait_for(kube, KS, namespace, "apps", applied(revision), "Ready")
    infra = await kube.get(KS, namespace, "infra")
    assert is_ready(infra)
    assert (
        ready_condition(infra)["lastTransitionTime"] <= ready_condition(apps)["lastTransitionTime"]
    )
    cache = await kube.get(DEPLOYMENT, namespace, "cache")
    assert cache["status"].get("availableReplicas") == 1
    assert await kube.get_or_none(CONFIG_MAP, namespace, "app-settings") is not None


async def test_a_deployment_that_never_becomes_available_fails_the_health_check(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    nowhere = deployment("stuck", nodeSelector={"weir.invalid/no-such-node": "true"})
    files = {"stuck/deployment.yaml": nowhere}
    revision = await git_source(kube, namespace, git_repos, git_daemon, files)
    # Flux never waits less than 30s, whatever spec.timeout says (GetTimeout).
    spec = {"targetNamespace": namespace, "wait": True, "timeout": "10s"}
    await kube.create(KS, kustomization("stuck", namespace, "./stuck", **spec))

    # While it waits, it says so: kstatus readers must not take it for done.
    waiting = await controllers.wait_for(
        kube,
        KS,
        namespace,
        "stuck",
        lambda o: condition(o, "Healthy").get("status") == "Unknown",
        "running its health checks",
    )
    assert ready_condition(waiting)["status"] == "Unknown"
    assert condition(waiting, "Reconciling")["message"] == (
        f"Running health checks for revision {revision} with a timeout of 30s"
    )

    obj = await controllers.wait_for(
        kube, KS, namespace, "stuck", failed("HealthCheckFailed"), "failing its health check"
    )
    message = ready_condition(obj)["message"]
    assert message.startswith("health check failed after 30")
    assert message.endswith(
        f"timeout waiting for: [Deployment/{namespace}/stuck status: 'InProgress']"
    )
    assert condition(obj, "Healthy")["reason"] == "HealthCheckFailed"
    assert "lastAppliedRevision" not in obj["status"]
    assert obj["status"]["lastAttemptedRevision"] == revision
    assert obj["status"]["history"][0]["lastReconciledStatus"] == "HealthCheckFailed"
    # Applied, but not healthy.
    assert await kube.get_or_none(DEPLOYMENT, namespace, "stuck") is not None


# 8. Impersonation


async def test_a_service_account_cannot_apply_beyond_its_role(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    cluster_role = f"weir-e2e-{namespace}"
    manifests = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "allowed"}},
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_role},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    ]
    files = {"tenant/all.yaml": yaml.safe_dump_all(manifests)}
    revision = await git_source(kube, namespace, git_repos, git_daemon, files)
    meta = {"name": "deployer", "namespace": namespace}
    await kube.create(SERVICE_ACCOUNT, {"metadata": meta})
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}
    await kube.create(ROLE, {"metadata": meta, "rules": [rule]})
    await kube.create(
        ROLE_BINDING,
        {
            "metadata": meta,
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}],
        },
    )
    spec = {"targetNamespace": namespace, "serviceAccountName": "deployer"}
    await kube.create(KS, kustomization("tenant", namespace, "./tenant", **spec))

    try:
        obj = await controllers.wait_for(
            kube,
            KS,
            namespace,
            "tenant",
            attempted_and_failed(revision),
            "refused",
        )
        message = ready_condition(obj)["message"]
        assert f"ClusterRole/{cluster_role}" in message
        assert f"system:serviceaccount:{namespace}:deployer" in message
        assert await kube.get_or_none(CLUSTER_ROLE, None, cluster_role) is None
        assert await kube.get_or_none(CONFIG_MAP, namespace, "allowed") is None
    finally:
        await kube.delete(CLUSTER_ROLE, None, cluster_role)
