"""Acceptance, pull-request mode: ``python -m source``, ``python -m kustomize`` and
``python -m image_automation`` as processes, images in docker-registry, the fleet repository on
Gitea. A new tag opens a pull request with the change; a newer tag updates the same pull
request; merging it (through Gitea's API) makes the cluster run the new image; the base branch
is never pushed to by the automation."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT, Reconciler
from image_automation.imagepolicy import ImagePolicyReconciler
from image_automation.imagerepository import ImageRepositoryReconciler
from image_automation.imageupdateautomation import ImageUpdateAutomationReconciler
from image_automation.tags import TagStore
from tests.gitea import GiteaError, GiteaServer
from tests.integration.harness import options, running, wait_for_object
from tests.integration.kinds import DEPLOYMENT, GITREPO, KS, git_repository, kustomization
from tests.integration.processes import (
    ControllerProcess,
    Controllers,
    _common,
    running_controllers,
)
from tests.integration.test_image_pullrequest import git
from tests.integration.test_imagepolicy import IMGPOL, image_policy
from tests.integration.test_imagerepository import IMGREPO, image_repository, push_tags
from tests.integration.test_imageupdateautomation import IUA
from tests.registry import OCIRegistries

pytestmark = pytest.mark.integration

HEAD = "image-updates/app"
WAIT = 90.0

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 0
  selector:
    matchLabels: {{app: app}}
  template:
    metadata:
      labels: {{app: app}}
    spec:
      containers:
        - name: app
          image: {image}:{tag} # {{"$imagepolicy": "{ns}:app"}}
"""


@pytest.fixture
async def fleet(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Controllers]:
    """The source and kustomize controllers, and the image automation controller, as
    processes watching ``namespace``."""
    image = ControllerProcess(
        "image_automation", _common(control_plane), tmp_path / "image", namespace
    )
    async with running_controllers(control_plane, namespace, tmp_path) as controllers:
        try:
            await image.start()
            yield controllers
        finally:
            code = await image.stop()
            print(image.log_path.read_text())
    assert code == 0


def push_files(work: Path, remote: str, files: dict[str, str]) -> str:
    work.mkdir(parents=True, exist_ok=True)
    git(work, "init", "--quiet", "--initial-branch=main")
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
        git(work, "add", path)
    git(work, "commit", "--quiet", "-m", "the fleet")
    git(work, "push", "--quiet", remote, "HEAD:refs/heads/main")
    return git(work, "rev-parse", "HEAD")


def branch_file(gitea: GiteaServer, repo: str, branch: str, path: str, scratch: Path) -> str:
    """A file as ``branch`` holds it, read from a fresh clone."""
    target = scratch / uuid.uuid4().hex[:8]
    argv = ["git", "clone", "--quiet", "--depth=1", f"--branch={branch}"]
    subprocess.run([*argv, gitea.clone_url(repo), str(target)], check=True, capture_output=True)
    return (target / path).read_text()


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.5)


async def test_a_tag_becomes_a_pull_request_that_once_merged_is_applied(
    kube: KubeClient,
    namespace: str,
    gitea: GiteaServer,
    oci_registry: OCIRegistries,
    fleet: Controllers,
    tmp_path: Path,
) -> None:
    registry, path = oci_registry.plain, f"{namespace}/app"
    image = f"{registry.host}/{path}"
    repo = f"fleet-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(gitea.create_repository, repo)
    files = {
        "apps/deploy.yaml": DEPLOY.format(image=image, tag="1.0.0", ns=namespace),
        "apps/kustomization.yaml": "resources: [deploy.yaml]\n",
    }
    base = await asyncio.to_thread(push_files, tmp_path / "work", gitea.clone_url(repo), files)
    await asyncio.to_thread(gitea.wait_for_push, repo, base)
    await push_tags(registry, path, ["1.0.0"])

    token = {"username": gitea.owner, "password": gitea.token, "token": gitea.token}
    await kube.create(
        SECRET, {"metadata": {"name": "gitea", "namespace": namespace}, "stringData": token}
    )
    url = f"{gitea.url}/{gitea.owner}/{repo}.git"
    await kube.create(
        GITREPO,
        git_repository(
            "app", namespace, url=url, ref={"branch": "main"}, secretRef={"name": "gitea"}
        ),
    )
    await kube.create(KS, kustomization("app", namespace, "./apps", targetNamespace=namespace))
    await kube.create(IMGREPO, image_repository("app", namespace, registry, path))
    await kube.create(IMGPOL, image_policy("app", namespace, {"semver": {"range": ">=1.0.0"}}))
    await kube.create(
        IUA,
        {
            "apiVersion": IUA.api_version,
            "kind": IUA.kind,
            "metadata": {"name": "staging", "namespace": namespace},
            "spec": {
                "sourceRef": {"kind": "GitRepository", "name": "app"},
                "interval": "10m",
                "git": {
                    "commit": {"author": {"name": "Weir Bot", "email": "bot@weir.invalid"}},
                    "push": {"pullRequest": {"provider": "gitea", "secretRef": {"name": "gitea"}}},
                },
                "update": {"path": "./apps"},
            },
        },
    )

    async def running_image() -> str:
        deployment = await kube.get_or_none(DEPLOYMENT, namespace, "app")
        if deployment is None:
            return ""
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    async def applied(tag: str) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT
        while await running_image() != f"{image}:{tag}":
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{image}:{tag} not applied:\n{fleet.logs()}")
            await asyncio.sleep(0.5)

    await applied("1.0.0")

    async def rescan(value: str) -> None:
        patch = {"metadata": {"annotations": {REQUESTED_AT: value}}}
        await kube.patch(IMGREPO, namespace, "app", patch)

    def open_pulls() -> list[dict[str, Any]]:
        return gitea.pull_requests(repo, state="open")

    # 1. A new tag: a pull request with the change, nothing pushed to main.
    await push_tags(registry, path, ["1.1.0"])
    await rescan("1.1.0")
    pulls = await eventually(open_pulls, "a pull request")
    assert len(pulls) == 1
    first = pulls[0]
    assert (first["head"]["ref"], first["base"]["ref"]) == (HEAD, "main")
    assert first["title"] == f"Update {image} to 1.1.0"
    assert f"`{image}:1.0.0` → `{image}:1.1.0`" in first["body"]
    changed = await asyncio.to_thread(branch_file, gitea, repo, HEAD, "apps/deploy.yaml", tmp_path)
    assert changed == DEPLOY.format(image=image, tag="1.1.0", ns=namespace)
    main = await asyncio.to_thread(branch_file, gitea, repo, "main", "apps/deploy.yaml", tmp_path)
    assert main == files["apps/deploy.yaml"]

    # 2. A newer tag: the same pull request, updated.
    await push_tags(registry, path, ["1.2.0"])
    await rescan("1.2.0")

    def updated() -> list[dict[str, Any]]:
        found = open_pulls()
        return found if found and found[0]["title"].endswith("1.2.0") else []

    pulls = await eventually(updated, "the pull request updated to 1.2.0")
    assert [p["number"] for p in pulls] == [first["number"]]
    changed = await asyncio.to_thread(branch_file, gitea, repo, HEAD, "apps/deploy.yaml", tmp_path)
    assert changed == DEPLOY.format(image=image, tag="1.2.0", ns=namespace)
    await applied("1.0.0")  # not merged: the cluster keeps what main says

    # 3. Merged through Gitea's API: the cluster converges on 1.2.0.
    merge = f"/repos/{gitea.owner}/{repo}/pulls/{first['number']}/merge"

    def merged() -> bool:
        # Gitea checks mergeability in the background: "try again later" until it has.
        try:
            gitea.api("POST", merge, {"Do": "merge"})
        except GiteaError as err:
            if "try again later" in str(err):
                return False
            raise
        return True

    await eventually(merged, "the pull request merged")
    patch = {"metadata": {"annotations": {REQUESTED_AT: "merged"}}}
    await kube.patch(GITREPO, namespace, "app", patch)
    await applied("1.2.0")

    # Nothing left to propose: no new pull request.
    patch = {"metadata": {"annotations": {REQUESTED_AT: "after-merge"}}}
    await kube.patch(IUA, namespace, "staging", patch)

    def ran_again(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastHandledReconcileAt") == "after-merge"

    await wait_for_object(kube, IUA, namespace, "staging", ran_again, timeout=WAIT)
    assert open_pulls() == []


async def test_declined_and_settled_pull_requests_are_left_closed(
    kube: KubeClient,
    namespace: str,
    gitea: GiteaServer,
    oci_registry: OCIRegistries,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    registry, path = oci_registry.plain, f"{namespace}/app"
    image = f"{registry.host}/{path}"
    repo = f"fleet-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(gitea.create_repository, repo)
    deploy = DEPLOY.format(image=image, tag="1.0.0", ns=namespace)
    work = tmp_path / "work"
    base = await asyncio.to_thread(
        push_files, work, gitea.clone_url(repo), {"apps/deploy.yaml": deploy}
    )
    await asyncio.to_thread(gitea.wait_for_push, repo, base)
    await push_tags(registry, path, ["1.0.0", "1.1.0"])
    token = {"username": gitea.owner, "password": gitea.token, "token": gitea.token}
    await kube.create(
        SECRET, {"metadata": {"name": "gitea", "namespace": namespace}, "stringData": token}
    )
    url = f"{gitea.url}/{gitea.owner}/{repo}.git"
    await kube.create(
        GITREPO,
        git_repository(
            "app", namespace, url=url, ref={"branch": "main"}, secretRef={"name": "gitea"}
        ),
    )
    await kube.create(IMGREPO, image_repository("app", namespace, registry, path))
    await kube.create(IMGPOL, image_policy("app", namespace, {"semver": {"range": ">=1.0.0"}}))
    spec = {
        "sourceRef": {"kind": "GitRepository", "name": "app"},
        "interval": "10m",
        "git": {
            "commit": {"author": {"name": "Weir Bot", "email": "bot@weir.invalid"}},
            "push": {"pullRequest": {"provider": "gitea", "secretRef": {"name": "gitea"}}},
        },
        "update": {"path": "./apps"},
    }
    body: dict[str, Any] = {"apiVersion": IUA.api_version, "kind": IUA.kind}
    body["metadata"] = {"name": "staging", "namespace": namespace}
    store = TagStore(field_manager="image-automation-controller")
    reconcilers: list[Reconciler[Any, Any]] = [
        ImageRepositoryReconciler(store),
        ImagePolicyReconciler(store),
        ImageUpdateAutomationReconciler(),
    ]
    opts = options(control_plane, namespace, name="image-automation-controller")

    def pulls(state: str) -> list[dict[str, Any]]:
        return gitea.pull_requests(repo, state=state)

    async def run_again(value: str) -> None:
        patch = {"metadata": {"annotations": {REQUESTED_AT: value}}}
        await kube.patch(IUA, namespace, "staging", patch)

        def handled(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("lastHandledReconcileAt") == value

        await wait_for_object(kube, IUA, namespace, "staging", handled, timeout=WAIT)

    async with running(opts, reconcilers):
        await kube.create(IUA, {**body, "spec": spec})
        opened = (await eventually(lambda: pulls("open"), "a pull request"))[0]

        # Declined: closed without merging, it is not opened again for the same change.
        closing = f"/repos/{gitea.owner}/{repo}/pulls/{opened['number']}"
        await asyncio.to_thread(gitea.api, "PATCH", closing, {"state": "closed"})
        await run_again("after-decline")
        assert pulls("open") == []

        # A newer tag is a new proposal; then main gets it by hand: the proposal is closed.
        await push_tags(registry, path, ["1.2.0"])
        patch = {"metadata": {"annotations": {REQUESTED_AT: "1.2.0"}}}
        await kube.patch(IMGREPO, namespace, "app", patch)
        newer = (await eventually(lambda: pulls("open"), "a pull request for 1.2.0"))[0]
        assert newer["title"] == f"Update {image} to 1.2.0"
        by_hand = DEPLOY.format(image=image, tag="1.2.0", ns=namespace)
        (work / "apps/deploy.yaml").write_text(by_hand)
        git(work, "commit", "--quiet", "-am", "by hand")
        git(work, "push", "--quiet", gitea.clone_url(repo), "HEAD:refs/heads/main")
        await asyncio.to_thread(gitea.wait_for_push, repo, git(work, "rev-parse", "HEAD"))
        await run_again("after-hand-edit")

    assert pulls("open") == []
    comments = gitea.api("GET", f"/repos/{gitea.owner}/{repo}/issues/{newer['number']}/comments")
    assert any("has this change already" in c["body"] for c in comments)
    assert [p["number"] for p in pulls("closed")] == sorted(
        [opened["number"], newer["number"]], reverse=True
    )
