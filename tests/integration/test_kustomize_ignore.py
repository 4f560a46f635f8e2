"""``spec.ignore`` (Flux 2.9) against the real API server, with the rules of Flux's own
documentation: a field another writer owns (an autoscaler's ``/spec/replicas``) is never
reverted, not even by a new revision, and is not drift; without the rule it is reverted.
``weir diff kustomization`` shows no difference in it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper
from controllers.envtest import ControlPlane, free_port
from controllers.kinds import EVENT
from controllers.kube import APPLY_PATCH, KubeClient
from controllers.reconcile import REQUESTED_AT
from kustomize.api_v1 import Kustomization
from kustomize.apply.manager import FIELD_MANAGER, ResourceManager
from kustomize.kustomization import KustomizationReconciler
from source.gitrepository import GitRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.cli import Cli
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.integration.kinds import GITREPO

pytestmark = pytest.mark.integration

KS = Kustomization.info
DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")

# Flux 2.9's example, as its documentation has it (kustomize-controller docs/spec/v1,
# "Ignore Rules"); only the omitted parts of the spec are filled in by each test.
FLUX_DOC_KUSTOMIZATION = """
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: app
  namespace: flux-system
spec:
  # ...omitted for brevity
  ignore:
    - paths:
        - "/spec/replicas"
      target:
        kind: Deployment
    - paths:
        - "/metadata/annotations/external-dns.alpha.kubernetes.io~1hostname"
      target:
        kind: Service
        name: my-service
    - paths:
        - "/spec/template/spec/containers/0/resources"
      target:
        kind: Deployment
        name: my-app
"""


def flux_doc_kustomization(namespace: str, **spec: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(FLUX_DOC_KUSTOMIZATION)
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"].update(spec)
    return manifest


def deployment(name: str, image: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": image}]},
                },
            },
        }
    )


async def scale_as_hpa(kube: KubeClient, namespace: str, name: str, replicas: int) -> None:
    """What a HorizontalPodAutoscaler does: an ``Update`` of the ``scale`` subresource."""
    await kube.patch(
        DEPLOYMENT,
        namespace,
        name,
        {"spec": {"replicas": replicas}},
        subresource="scale",
        field_manager="hpa-writer",
    )


async def scale_with_server_side_apply(
    kube: KubeClient, namespace: str, name: str, replicas: int
) -> None:
    """An autoscaler that owns ``/spec/replicas`` through server-side apply."""
    await kube.patch(
        DEPLOYMENT,
        namespace,
        name,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        },
        content_type=APPLY_PATCH,
        field_manager="autoscaler",
        force=True,
    )


def our_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """The kustomize-controller's ``Apply`` entry of managedFields."""
    return next(
        entry
        for entry in obj["metadata"]["managedFields"]
        if entry["manager"] == FIELD_MANAGER and entry["operation"] == "Apply"
    )


def our_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The fieldsV1 of the kustomize-controller's ``Apply`` entry."""
    fields: dict[str, Any] = our_entry(obj)["fieldsV1"]
    return fields


@pytest.fixture
async def controllers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[None]:
    """The source and kustomize reconcilers, in-process, and the artifact server."""
    port = free_port()
    storage = ArtifactStorage(tmp_path / "storage", f"127.0.0.1:{port}")
    server = await start_artifact_server(tmp_path / "storage", "127.0.0.1", port)
    source = options(control_plane, namespace, name="source-controller")
    applier = options(control_plane, namespace, name="kustomize-controller")
    try:
        async with (
            running(source, [GitRepositoryReconciler(storage)]),
            running(applier, [KustomizationReconciler()]),
        ):
            yield
    finally:
        await server.cleanup()


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(status.get("lastAppliedRevision") == revision and is_ready(obj))

    return check


async def reconcile_now(kube: KubeClient, info: ResourceInfo, namespace: str, name: str) -> str:
    token = uuid.uuid4().hex
    await kube.patch(info, namespace, name, {"metadata": {"annotations": {REQUESTED_AT: token}}})
    return token


def handled(token: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(status.get("lastHandledReconcileAt") == token and is_ready(obj))

    return check


async def test_fields_another_writer_owns_are_left_alone_until_the_rule_goes(
    kube: KubeClient,
    namespace: str,
    controllers: None,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    repo = f"ignore-{namespace}"
    git_repos.create(repo)
    first = git_repos.commit(
        repo,
        {
            "app/web.yaml": deployment("web", "nginx:1.25"),
            "app/api.yaml": deployment("api", "nginx:1.25"),
        },
        "web and api",
    )
    await kube.create(
        GITREPO,
        {
            "apiVersion": GITREPO.api_version,
            "kind": "GitRepository",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {"url": git_daemon.url(repo), "interval": "10m", "ref": {"branch": "main"}},
        },
    )
    manifest = flux_doc_kustomization(
        namespace,
        interval="10m",
        prune=True,
        path="./app",
        targetNamespace=namespace,
        sourceRef={"kind": "GitRepository", "name": "app"},
    )
    await kube.create(KS, manifest)
    await wait_for_object(kube, KS, namespace, "app", applied(f"main@sha1:{first}"), timeout=20)

    # Two writers of /spec/replicas: an HPA (Update of /scale) and a server-side applier.
    await scale_as_hpa(kube, namespace, "web", 5)
    await scale_with_server_side_apply(kube, namespace, "api", 4)
    before = {name: await kube.get(DEPLOYMENT, namespace, name) for name in ("web", "api")}

    token = await reconcile_now(kube, KS, namespace, "app")
    await wait_for_object(kube, KS, namespace, "app", handled(token))
    for name, replicas in (("web", 5), ("api", 4)):
        live = await kube.get(DEPLOYMENT, namespace, name)
        assert live["spec"]["replicas"] == replicas
        # Unchanged: not applied again (the Deployment controller writes its status, so
        # the resourceVersion moves; our apply entry and the generation do not).
        assert our_entry(live) == our_entry(before[name])
        assert live["metadata"]["generation"] == before[name]["metadata"]["generation"]
    events = (await kube.list(EVENT, namespace))["items"]
    messages = [e["message"] for e in events if e["involvedObject"]["kind"] == "Kustomization"]
    assert messages, "the first apply is reported"
    assert not [m for m in messages if "configured" in m], messages

    # A new revision changes another field of both: applied, replicas still left alone.
    second = git_repos.commit(
        repo,
        {
            "app/web.yaml": deployment("web", "nginx:1.27"),
            "app/api.yaml": deployment("api", "nginx:1.27"),
        },
        "nginx 1.27",
    )
    await reconcile_now(kube, GITREPO, namespace, "app")
    await wait_for_object(kube, KS, namespace, "app", applied(f"main@sha1:{second}"), timeout=20)
    web = await kube.get(DEPLOYMENT, namespace, "web")
    api = await kube.get(DEPLOYMENT, namespace, "api")
    for live, replicas in ((web, 5), (api, 4)):
        assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
        assert live["spec"]["replicas"] == replicas
    # Flux's rule: the HPA's value is adopted (we keep owning it); the other applier's is
    # stripped from what we send (it alone owns it now).
    assert "f:replicas" in our_fields(web)["f:spec"]
    assert "f:replicas" not in our_fields(api)["f:spec"]

    # Without the rule, both are reverted to what Git says.
    await kube.patch(KS, namespace, "app", {"spec": {"ignore": None}})
    for name in ("web", "api"):
        await wait_for_object(
            kube, DEPLOYMENT, namespace, name, lambda o: o["spec"]["replicas"] == 2
        )


async def test_diff_shows_no_difference_in_ignored_fields(
    kube: KubeClient, namespace: str, cli: Cli, tmp_path: Path
) -> None:
    spec = {"interval": "10m", "prune": True, "path": "./", "targetNamespace": namespace}
    spec["sourceRef"] = {"kind": "GitRepository", "name": "app"}
    with_rule = tmp_path / "with-rule.yaml"
    with_rule.write_text(yaml.safe_dump(flux_doc_kustomization(namespace, **spec)))
    without_rule = tmp_path / "without-rule.yaml"
    plain = flux_doc_kustomization(namespace, **spec)
    del plain["spec"]["ignore"]
    without_rule.write_text(yaml.safe_dump(plain))
    local = tmp_path / "app"
    local.mkdir()
    (local / "web.yaml").write_text(deployment("web", "nginx:1.25"))

    # Applied as the controller applies it, then scaled by an HPA.
    desired = yaml.safe_load(deployment("web", "nginx:1.25"))
    desired["metadata"]["namespace"] = namespace
    manager = ResourceManager(kube, RestMapper(kube), owner_name="app", owner_namespace=namespace)
    await manager.apply_all_staged([desired])
    await scale_as_hpa(kube, namespace, "web", 5)

    def diff(file: Path) -> Any:
        return cli("diff", "ks", "app", f"--path={local}", f"--kustomization-file={file}")

    same = await diff(with_rule)
    assert (same.code, same.out) == (0, ""), same.err

    reverted = await diff(without_rule)
    assert reverted.code == 1, reverted.err
    assert "-  replicas: 5\n+  replicas: 2\n" in reverted.out

    (local / "web.yaml").write_text(deployment("web", "nginx:1.27"))
    changed = await diff(with_rule)
    assert changed.code == 1, changed.err
    assert "-        image: nginx:1.25\n+        image: nginx:1.27\n" in changed.out
    assert "replicas" not in changed.out
