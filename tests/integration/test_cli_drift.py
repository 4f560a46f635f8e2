"""``weir drift export`` as a break-glass uses it: the console script against the real control
plane, a real Git server and the real controller processes.

The round trip of issue 14's section 3: a Kustomization applied from Git is suspended, its
Deployment's image is changed and an env var added as ``kubectl`` does (each with its own
field manager), the export names exactly those two changes, the patch is committed under the
Kustomization's path, the Kustomization resumed: the cluster keeps the hotfix and the
Kustomization is Ready at the new revision, with nothing left to export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.api import ResourceInfo
from controllers.kube import KubeClient
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.cli import Cli
from tests.integration.harness import is_ready
from tests.integration.kinds import GITREPO, KS, git_repository, kustomization
from tests.integration.processes import Controllers

pytestmark = pytest.mark.integration

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
HOTFIX_IMAGE = "nginx:1.27.1-hotfix"
HOTFIX_ENV = {"name": "WORKERS", "value": "8"}
LABELS = {"app": "web"}


def files(**extra: str) -> dict[str, str]:
    """The repository: one Deployment, and the kustomization.yaml of ``deploy``."""
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }
    return {
        "deploy/kustomization.yaml": yaml.safe_dump({"resources": ["web.yaml"]}),
        "deploy/web.yaml": yaml.safe_dump(web),
        **extra,
    }


def applied(revision: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return status.get("lastAppliedRevision") == revision and is_ready(obj)

    return check


async def test_exported_hotfix_committed_to_git_survives_the_resume(
    cli: Cli,
    controllers: Controllers,
    kube: KubeClient,
    namespace: str,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    tmp_path: Path,
) -> None:
    repo = f"cli-drift-{namespace}"
    git_repos.create(repo)
    first = f"main@sha1:{git_repos.commit(repo, files(), 'web')}"
    await kube.create(
        GITREPO, git_repository("app", namespace, url=git_daemon.url(repo), ref={"branch": "main"})
    )
    await kube.create(KS, kustomization("app", namespace, "./deploy", targetNamespace=namespace))
    await controllers.wait_for(kube, KS, namespace, "app", applied(first), "applied")

    nothing = await cli("drift", "export", "ks", "app")
    assert (nothing.code, nothing.out, nothing.err) == (0, "", "")

    # Break-glass: suspend, then change the Deployment as kubectl set image and patch do.
    await kube.patch(KS, namespace, "app", {"spec": {"suspend": True}})
    container = {"name": "web", "image": HOTFIX_IMAGE}
    await kube.patch(
        DEPLOYMENT,
        namespace,
        "web",
        {"spec": {"template": {"spec": {"containers": [container]}}}},
        content_type=STRATEGIC_MERGE,
        field_manager="kubectl-set",
    )
    with_env = {"name": "web", "env": [HOTFIX_ENV]}
    await kube.patch(
        DEPLOYMENT,
        namespace,
        "web",
        {"spec": {"template": {"spec": {"containers": [with_env]}}}},
        content_type=STRATEGIC_MERGE,
        field_manager="kubectl-patch",
    )

    exported = await cli("drift", "export", "kustomization", "app")
    assert exported.code == 1, exported.err
    assert "drift exported for 1 objects" in exported.err
    assert list(yaml.safe_load_all(exported.out)) == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "web", "image": HOTFIX_IMAGE, "env": [HOTFIX_ENV]}]
                    }
                }
            },
        }
    ]
    as_json6902 = await cli("drift", "export", "ks", "app", "--format", "json6902")
    assert as_json6902.code == 1, as_json6902.err
    (entry,) = yaml.safe_load(as_json6902.out)["patches"]
    target = {"group": "apps", "version": "v1", "kind": "Deployment", "name": "web"}
    assert entry["target"] == target
    assert yaml.safe_load(entry["patch"]) == [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": HOTFIX_IMAGE},
        {"op": "add", "path": "/spec/template/spec/containers/0/env", "value": [HOTFIX_ENV]},
    ]
    refused = await cli("drift", "export", "helmrelease", "app")
    assert refused.code == 2
    assert "supports Kustomization only" in refused.err

    # Step 3: the patch into the Kustomization's path in a checkout, and committed.
    deploy = tmp_path / "checkout" / "deploy"
    deploy.mkdir(parents=True)
    (deploy / "kustomization.yaml").write_text(files()["deploy/kustomization.yaml"])
    written = await cli("drift", "export", "ks", "app", f"--output={deploy}")
    assert written.code == 1, written.err
    (patch_file,) = deploy.glob("weir-drift-*.yaml")
    assert list(yaml.safe_load_all(patch_file.read_text())) == list(
        yaml.safe_load_all(exported.out)
    )
    assert yaml.safe_load(written.out) == {"patches": [{"path": patch_file.name}]}
    kustomization_file = {"resources": ["web.yaml"], **yaml.safe_load(written.out)}
    committed = git_repos.commit(
        repo,
        files(
            **{
                "deploy/kustomization.yaml": yaml.safe_dump(kustomization_file),
                f"deploy/{patch_file.name}": patch_file.read_text(),
            }
        ),
        "hotfix: INC-1234",
    )
    second = f"main@sha1:{committed}"

    # Resume and reconcile: the hotfix stays, at the new revision, with nothing to export.
    await kube.patch(KS, namespace, "app", {"spec": {"suspend": False}})
    reconciled = await cli("reconcile", "ks", "app", "--with-source")
    assert reconciled.code == 0, reconciled.err
    await controllers.wait_for(kube, KS, namespace, "app", applied(second), "hotfix applied")
    web = await kube.get(DEPLOYMENT, namespace, "web")
    (live_container,) = web["spec"]["template"]["spec"]["containers"]
    assert live_container["image"] == HOTFIX_IMAGE
    assert live_container["env"] == [HOTFIX_ENV]
    after = await cli("drift", "export", "ks", "app")
    assert (after.code, after.out) == (0, ""), after.err
