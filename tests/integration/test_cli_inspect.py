"""``weir tree``, ``trace``, ``build`` and ``diff`` as a user runs them: the console script
against the real control plane, a real Git server and the real controller processes.

One repository serves both tests: a base Deployment whose replica count comes from a
ConfigMap in the cluster (``postBuild.substituteFrom``), a ConfigMap, a Secret, and a second
Kustomization (``child``) that the first applies. Output is compared with golden files under
``tests/integration/golden/cli/`` (``WEIR_UPDATE_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.kinds import CONFIG_MAP
from controllers.kube import KubeClient
from controllers.ssa import normalize
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.cli import Cli, golden
from tests.integration.harness import is_ready
from tests.integration.kinds import GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers

pytestmark = pytest.mark.integration

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
REPLICA_SET = ResourceInfo(group="apps", version="v1", kind="ReplicaSet", plural="replicasets")
SECRET = ResourceInfo(group="", version="v1", kind="Secret", plural="secrets")
BY_KIND = {info.kind: info for info in (DEPLOYMENT, CONFIG_MAP, SECRET, KS)}
SECRET_VALUE = "s3cret-value"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def normalized(cli: Cli, text: str) -> str:
    return TIME.sub("TIME", cli.normalized(text))


def manifests(namespace: str, *, replicas: Any = "${replicas}") -> dict[str, Any]:
    """The repository's files, as YAML documents by path."""
    labels = {"app": "web"}
    return {
        "base/kustomization.yaml": {"resources": ["web.yaml"]},
        "base/web.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
        "deploy/kustomization.yaml": {
            "resources": ["../base", "settings.yaml", "creds.yaml", "child.yaml"]
        },
        "deploy/settings.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"greeting": "hello"},
        },
        "deploy/creds.yaml": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": SECRET_VALUE},
        },
        "deploy/child.yaml": {
            "apiVersion": KS.api_version,
            "kind": KS.kind,
            "metadata": {"name": "child"},
            "spec": {
                "interval": "10m",
                "path": "./child",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "app"},
                "targetNamespace": namespace,
            },
        },
        "child/settings.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "child-settings"},
            "data": {"level": "2"},
        },
    }


def as_files(documents: dict[str, Any]) -> dict[str, str]:
    return {path: yaml.safe_dump(doc) for path, doc in documents.items()}


def checkout(root: Path, documents: dict[str, Any]) -> Path:
    """A local checkout of ``documents`` (a ``.git`` marks its root); its ``deploy``."""
    if root.exists():
        for old in sorted(root.rglob("*.yaml"), reverse=True):
            old.unlink()
    (root / ".git").mkdir(parents=True, exist_ok=True)
    for path, content in as_files(documents).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return root / "deploy"


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return status.get("lastAppliedRevision") == revision and is_ready(obj)

    return check


def not_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "False" for c in conditions)


async def deployed(
    kube: KubeClient,
    controllers: Controllers,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> str:
    """The repository committed, ``app`` and ``child`` applied; the revision."""
    repo = f"cli-inspect-{namespace}"
    git_repos.create(repo)
    commit = git_repos.commit(repo, as_files(manifests(namespace)), "app")
    revision = f"main@sha1:{commit}"
    await kube.create(
        CONFIG_MAP,
        {"metadata": {"name": "vars", "namespace": namespace}, "data": {"replicas": "1"}},
    )
    await kube.create(
        GITREPO,
        git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"}),
    )
    app = kustomization(
        "app",
        namespace,
        "./deploy",
        targetNamespace=namespace,
        postBuild={"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]},
    )
    await kube.create(KS, app)
    for name in ("app", "child"):
        await controllers.wait_for(kube, KS, namespace, name, applied(revision), "applied")
    return revision


def within(part: Any, whole: Any) -> bool:
    """Whether every field of ``part`` is in ``whole`` with the same value (what applying
    ``part`` with server-side apply leaves in the live object)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and within(value, whole[key]) for key, value in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(whole, list)
            and len(part) == len(whole)
            and all(within(p, w) for p, w in zip(part, whole, strict=True))
        )
    return bool(part == whole)


async def test_tree_and_trace_follow_the_inventory_and_the_labels(
    cli: Cli,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    await deployed(kube, controllers, namespace, git_repos, git_daemon)

    tree = await cli("tree", "kustomization", "app")
    assert tree.code == 0, tree.err
    golden("tree-kustomization.txt", normalized(cli, tree.out))
    as_json = await cli("tree", "ks", "app", "-o", "json")
    nested = json.loads(as_json.out)["resources"][-1]
    assert nested["resource"] == {
        "Namespace": namespace,
        "Name": "child",
        "GroupKind": {"Group": KS.group, "Kind": KS.kind},
    }
    assert [r["resource"]["Name"] for r in nested["resources"]] == ["child-settings"]
    compact = await cli("tree", "ks", "app", "--compact")
    assert normalized(cli, compact.out) == (
        "Kustomization/NAMESPACE/app\n└── Kustomization/NAMESPACE/child\n"
    )

    traced = await cli("trace", "deployment/web")
    assert traced.code == 0, traced.err
    golden("trace-deployment.txt", normalized(cli, traced.out))
    by_kind = await cli("trace", "web", "--kind=deployment", "--api-version=apps/v1")
    assert (by_kind.code, by_kind.out) == (0, traced.out)
    nested_trace = await cli("trace", "cm", "child-settings")
    assert nested_trace.code == 0, nested_trace.err
    assert "Kustomization:   child\n" in nested_trace.out

    # A ReplicaSet carries no labels of ours: its owner, the Deployment, does.
    await controllers.wait_for(
        kube,
        DEPLOYMENT,
        namespace,
        "web",
        lambda d: bool((d.get("status") or {}).get("observedGeneration")),
        "seen by its controller",
    )
    replica_sets = (await kube.list(REPLICA_SET, namespace))["items"]
    owned = await cli("trace", "replicasets", replica_sets[0]["metadata"]["name"])
    assert owned.code == 0, owned.err
    assert "Kustomization:   app\n" in owned.out

    missing = await cli("trace", "deploy/nothing")
    assert (missing.code, missing.err.strip()) == (
        4,
        f"✗ Deployment {namespace}/nothing not found",
    )
    unmanaged = await cli("trace", "configmap/kube-root-ca.crt")
    assert unmanaged.code == 4
    assert "is not managed by weir" in unmanaged.err
    unknown = await cli("trace", "gizmo/x")
    assert (unknown.code, unknown.err.strip()) == (2, '✗ the server has no resource type "gizmo"')

    await kube.patch(KS, namespace, "app", {"spec": {"suspend": True}})
    suspended = await cli("trace", "deployment/web")
    assert suspended.code == 1
    assert suspended.err.strip() == f"✗ Kustomization {namespace}/app is suspended"
    assert "Suspended:       True\n" in suspended.out

    await kube.patch(KS, namespace, "app", {"spec": {"suspend": False, "path": "./missing"}})
    await controllers.wait_for(kube, KS, namespace, "app", not_ready, "failing")
    failing = await cli("trace", "deployment/web")
    assert failing.code == 1
    assert failing.err.strip().startswith(f"✗ Kustomization {namespace}/app is not ready: ")
    assert "missing" in failing.err


async def test_build_renders_what_the_controller_applied_and_diff_shows_changes(
    cli: Cli,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    tmp_path: Path,
) -> None:
    await deployed(kube, controllers, namespace, git_repos, git_daemon)
    local = tmp_path / "checkout"
    path = checkout(local, manifests(namespace))

    built = await cli("build", "kustomization", "app", f"--path={path}")
    assert built.code == 0, built.err
    objects = [doc for doc in yaml.safe_load_all(built.out) if doc]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ConfigMap", "settings"),
        ("Secret", "creds"),
        ("Deployment", "web"),
        ("Kustomization", "child"),
    ]
    for obj in objects:
        live = await kube.get(BY_KIND[obj["kind"]], namespace, obj["metadata"]["name"])
        desired = copy.deepcopy(obj)
        normalize(desired)  # as the controller sends it: stringData folded into data
        assert within(desired, live), f"{obj['kind']}/{obj['metadata']['name']} differs"
    web = next(o for o in objects if o["kind"] == "Deployment")
    assert web["spec"]["replicas"] == 1  # substituted from the ConfigMap in the cluster
    assert web["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "app"

    from_file = tmp_path / "app.yaml"
    manifest = kustomization("app", namespace, "./deploy", namePrefix="x-")
    from_file.write_text(yaml.safe_dump({**manifest, "metadata": {"name": "app"}}))
    prefixed = await cli(
        "build", "ks", "app", f"--path={path}", f"--kustomization-file={from_file}"
    )
    assert prefixed.code == 0, prefixed.err
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(prefixed.out) if doc]
    assert names == ["x-settings", "x-creds", "x-web", "x-child"]

    same = await cli("diff", "kustomization", "app", f"--path={path}")
    assert (same.code, same.out) == (0, ""), same.err

    changed = manifests(namespace, replicas=3)
    changed["deploy/creds.yaml"]["stringData"]["password"] = "another-value"
    path = checkout(local, changed)
    drifted = await cli("diff", "ks", "app", f"--path={path}")
    assert drifted.code == 1, drifted.err
    assert SECRET_VALUE not in drifted.out
    assert "another-value" not in drifted.out
    golden("diff-drifted.txt", normalized(cli, drifted.out))

    moved = manifests(namespace)
    del moved["deploy/settings.yaml"]
    moved["deploy/extra.yaml"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extra"},
        "data": {"greeting": "hi"},
    }
    moved["deploy/kustomization.yaml"]["resources"] = [
        "../base",
        "extra.yaml",
        "creds.yaml",
        "child.yaml",
    ]
    path = checkout(local, moved)
    pruned = await cli("diff", "ks", "app", f"--path={path}")
    assert pruned.code == 1, pruned.err
    assert normalized(cli, pruned.out) == (
        "► ConfigMap/NAMESPACE/extra created\n► ConfigMap/NAMESPACE/settings deleted\n"
    )
    assert await kube.get_or_none(CONFIG_MAP, namespace, "extra") is None  # nothing written
