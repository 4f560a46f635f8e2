"""ImageUpdateAutomation end to end, in one process as ``python -m image_automation`` runs it:
tags pushed to a real registry (docker-registry) are scanned, chosen by ImagePolicies and written
to a real Git server (git http-backend over HTTPS) at their setter markers, every other byte of
every file kept; no new tag is no commit; a push that lost a race is made again on the new
head."""

from __future__ import annotations

import base64
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
from image_automation import git
from image_automation.api_v1 import ImagePolicy, ImageUpdateAutomation
from image_automation.imagepolicy import ImagePolicyReconciler
from image_automation.imagerepository import ImageRepositoryReconciler
from image_automation.imageupdateautomation import (
    GIT_REPOSITORY,
    ImageUpdateAutomationReconciler,
)
from image_automation.tags import TagStore
from tests.gitserver import GitHTTPServer, GitRepos
from tests.integration.harness import options, running, wait_for_object
from tests.integration.test_imagerepository import IMGREPO, NAME, image_repository, push_tags
from tests.registry import OCIRegistries, RegistryServer

pytestmark = pytest.mark.integration

IMGPOL = ImagePolicy.info
IUA = ImageUpdateAutomation.info
TEMPLATE = """\
Automated image update by {{ .AutomationObject }}

{{ range .Changed.Changes -}}
{{ print .OldValue }} -> {{ println .NewValue }}
{{- end -}}
env={{ .Values.env }}
"""

# What the repository holds: a Deployment with comments, odd quoting, a tab, CRLF line ends and
# a block scalar with a marker-like line; a kustomization with images: entries; a file without
# markers. {image} and {tag} are filled in for "before" and "after".
DEPLOYMENT = (
    "# The app.   Hand-written: keep this comment.\r\n"
    "apiVersion: apps/v1\r\n"
    "kind: Deployment\r\n"
    "metadata:\r\n"
    "  name: app\r\n"
    "  namespace: apps\r\n"
    "  annotations:\r\n"
    "    note: |\r\n"
    '      image: {image}:0.0.1 # {{"$imagepolicy": "{ns}:app"}}\r\n'
    "spec:\r\n"
    "  template:\r\n"
    "    spec:\r\n"
    "      containers:\r\n"
    "        - name: app\r\n"
    '          image: \'{image}:{tag}\'\t# {{"$imagepolicy": "{ns}:app"}}\r\n'
    "          env:\r\n"
    '            - {{name: MODE, value: "fast"}}   # flow style, kept\r\n'
)
KUSTOMIZATION = (
    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\n"
    "resources: [deploy.yaml]   # one file\n"
    "images:\n"
    "  - name: app\n"
    '    newName: "{image}" # {{"$imagepolicy": "{ns}:app:name"}}\n'
    '    newTag: {tag}      # {{"$imagepolicy": "{ns}:app:tag"}}\n'
)
README = 'Image updates land here.\n# {"$imagepolicy": "x:y"} is how a marker looks.\n'


def files(image: str, tag: str, ns: str) -> dict[str, bytes]:
    return {
        "apps/deploy.yaml": DEPLOYMENT.format(image=image, tag=tag, ns=ns).encode(),
        "apps/kustomization.yaml": KUSTOMIZATION.format(image=image, tag=tag, ns=ns).encode(),
        "README.md": README.encode(),
    }


def show(repos: GitRepos, name: str, rev: str, path: str) -> bytes:
    done = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=repos.path(name), capture_output=True, check=True
    )
    return done.stdout


def log(repos: GitRepos, name: str, rev: str, fmt: str) -> str:
    done = subprocess.run(
        ["git", "log", "-1", f"--format={fmt}", rev],
        cwd=repos.path(name),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def pushed(commit: str | None) -> Callable[[dict[str, Any]], bool]:
    """The automation pushed a commit other than ``commit``."""

    def check(obj: dict[str, Any]) -> bool:
        last = (obj.get("status") or {}).get("lastPushCommit")
        return last is not None and last != commit

    return check


def handled(value: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastHandledReconcileAt") == value

    return check


class Setup:
    """A registry repository, a Git repository holding ``files``, and the objects that tie
    them: GitRepository (with its Secret), ImageRepository, ImagePolicy, ImageUpdateAutomation."""

    def __init__(
        self, kube: KubeClient, namespace: str, registry: RegistryServer, server: GitHTTPServer
    ) -> None:
        self.kube, self.namespace, self.registry, self.server = kube, namespace, registry, server
        self.repo = f"auto-{uuid.uuid4().hex[:8]}"
        self.image_path = f"{namespace}/app"
        self.image = f"{registry.host}/{self.image_path}"

    async def create(self, repos: GitRepos, **automation: Any) -> None:
        await push_tags(self.registry, self.image_path, ["1.0.0"])
        repos.create(self.repo)
        repos.commit(self.repo, files(self.image, "1.0.0", self.namespace), "initial")
        data = {
            "username": self.server.username,
            "password": self.server.password,
            "ca.crt": self.server.ca_pem,
        }
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        meta = {"name": "git-auth", "namespace": self.namespace}
        await self.kube.create(SECRET, {"metadata": meta, "data": encoded})
        await self.kube.create(
            GIT_REPOSITORY,
            {
                "apiVersion": GIT_REPOSITORY.api_version,
                "kind": GIT_REPOSITORY.kind,
                "metadata": {"name": "fleet", "namespace": self.namespace},
                "spec": {
                    "url": self.server.url(self.repo),
                    "interval": "10m",
                    "ref": {"branch": "main"},
                    "secretRef": {"name": "git-auth"},
                },
            },
        )
        await self.kube.create(
            IMGREPO, image_repository("app", self.namespace, self.registry, self.image_path)
        )
        await self.kube.create(
            IMGPOL,
            {
                "apiVersion": IMGPOL.api_version,
                "kind": IMGPOL.kind,
                "metadata": {"name": "app", "namespace": self.namespace},
                "spec": {
                    "imageRepositoryRef": {"name": "app"},
                    "policy": {"semver": {"range": ">=1.0.0"}},
                },
            },
        )
        spec = {
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "interval": "10m",
            "git": {
                "commit": {
                    "author": {"name": "Weir Bot", "email": "bot@weir.invalid"},
                    "messageTemplate": TEMPLATE,
                    "messageTemplateValues": {"env": "dev"},
                }
            },
            "update": {"strategy": "Setters", "path": "./apps"},
            **automation,
        }
        await self.kube.create(
            IUA,
            {
                "apiVersion": IUA.api_version,
                "kind": IUA.kind,
                "metadata": {"name": "auto", "namespace": self.namespace},
                "spec": spec,
            },
        )

    async def release(self, tag: str) -> None:
        """Push ``tag`` and have the repository scanned again at once."""
        await push_tags(self.registry, self.image_path, [tag])
        patch = {"metadata": {"annotations": {REQUESTED_AT: f"scan-{tag}"}}}
        await self.kube.patch(IMGREPO, self.namespace, "app", patch)


def reconcilers(automation: ImageUpdateAutomationReconciler) -> list[Reconciler[Any, Any]]:
    store = TagStore(field_manager=NAME)
    return [ImageRepositoryReconciler(store), ImagePolicyReconciler(store), automation]


@pytest.fixture
async def automation(
    control_plane: ControlPlane, namespace: str
) -> AsyncIterator[ImageUpdateAutomationReconciler]:
    reconciler = ImageUpdateAutomationReconciler()
    async with running(options(control_plane, namespace, name=NAME), reconcilers(reconciler)):
        yield reconciler


async def test_a_new_tag_is_committed_changing_only_the_marked_values(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    git_https: GitHTTPServer,
    git_repos: GitRepos,
    automation: ImageUpdateAutomationReconciler,
) -> None:
    setup = Setup(kube, namespace, oci_registry.plain, git_https)
    await setup.create(git_repos)
    initial = git_repos.resolve(setup.repo, "main")

    # 1.0.0 is what the files say: nothing to commit.
    obj = await wait_for_object(
        kube,
        IUA,
        namespace,
        "auto",
        lambda o: bool((o.get("status") or {}).get("observedPolicies")),
    )
    assert obj["status"]["observedPolicies"] == {"app": {"name": setup.image, "tag": "1.0.0"}}
    assert "lastPushCommit" not in obj["status"]
    assert git_repos.resolve(setup.repo, "main") == initial

    await setup.release("1.1.0")
    obj = await wait_for_object(kube, IUA, namespace, "auto", pushed(None), timeout=60)
    head: str = obj["status"]["lastPushCommit"]
    assert git_repos.resolve(setup.repo, "main") == head
    assert obj["status"]["observedSourceRevision"] == f"main@sha1:{head}"
    expected = files(setup.image, "1.1.0", namespace)
    # The block scalar's marker-like line is text, not a marker: it stays at 0.0.1.
    for path, content in expected.items():
        assert show(git_repos, setup.repo, head, path) == content, path
    assert log(git_repos, setup.repo, head, "%P") == f"{initial}\n"
    assert log(git_repos, setup.repo, head, "%an <%ae>") == "Weir Bot <bot@weir.invalid>\n"
    old, new = f"{setup.image}:1.0.0", f"{setup.image}:1.1.0"
    assert log(git_repos, setup.repo, head, "%B") == (
        f"Automated image update by {namespace}/auto\n\n{old} -> {new}\n1.0.0 -> 1.1.0\nenv=dev\n\n"
    )

    # Asked again with nothing new: no commit.
    patch = {"metadata": {"annotations": {REQUESTED_AT: "again"}}}
    await kube.patch(IUA, namespace, "auto", patch)
    await wait_for_object(kube, IUA, namespace, "auto", handled("again"))
    assert git_repos.resolve(setup.repo, "main") == head


class RacingAutomation(ImageUpdateAutomationReconciler):
    """The real reconciler, with someone else pushing to the branch right after its first
    clone: the race a busy repository has."""

    def __init__(self, repos: GitRepos, repo: str) -> None:
        super().__init__()
        self.repos, self.repo = repos, repo
        self.raced: str | None = None

    async def _clone(
        self, source: Any, branch: str, dest: Path, *, reset_branch: bool = False
    ) -> git.Cloned:
        cloned = await super()._clone(source, branch, dest, reset_branch=reset_branch)
        if self.raced is None:
            self.raced = self.repos.commit(self.repo, {"NOTES.md": "someone else\n"}, "notes")
        return cloned


async def test_a_push_that_lost_a_race_is_made_again_on_the_new_head(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    git_https: GitHTTPServer,
    git_repos: GitRepos,
    control_plane: ControlPlane,
) -> None:
    setup = Setup(kube, namespace, oci_registry.plain, git_https)
    await push_tags(setup.registry, setup.image_path, ["1.1.0"])
    reconciler = RacingAutomation(git_repos, setup.repo)
    async with running(options(control_plane, namespace, name=NAME), reconcilers(reconciler)):
        await setup.create(git_repos)
        obj = await wait_for_object(kube, IUA, namespace, "auto", pushed(None), timeout=60)

    head: str = obj["status"]["lastPushCommit"]
    assert git_repos.resolve(setup.repo, "main") == head
    # Exactly one commit of the automation, on top of the other push.
    assert log(git_repos, setup.repo, head, "%P") == f"{reconciler.raced}\n"
    assert show(git_repos, setup.repo, head, "NOTES.md") == b"someone else\n"
    expected = files(setup.image, "1.1.0", namespace)
    assert show(git_repos, setup.repo, head, "apps/deploy.yaml") == expected["apps/deploy.yaml"]


async def test_a_pull_request_branch_that_is_the_base_is_refused(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    git_https: GitHTTPServer,
    git_repos: GitRepos,
    automation: ImageUpdateAutomationReconciler,
) -> None:
    setup = Setup(kube, namespace, oci_registry.plain, git_https)
    await push_tags(setup.registry, setup.image_path, ["1.1.0"])
    await setup.create(git_repos)
    initial = git_repos.resolve(setup.repo, "main")
    pull_request = {"provider": "gitea", "secretRef": {"name": "token"}}
    patch = {"spec": {"git": {"push": {"branch": "main", "pullRequest": pull_request}}}}
    await kube.patch(IUA, namespace, "auto", patch)

    def stalled(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        found: dict[str, Any] = next((c for c in conditions if c["type"] == "Stalled"), {})
        return found.get("reason") == "InvalidSourceConfiguration"

    obj = await wait_for_object(kube, IUA, namespace, "auto", stalled)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert "is the pull requests' base branch" in ready["message"]
    # Nothing force-pushed over main (the patch may have raced the first run's push).
    head = git_repos.resolve(setup.repo, "main")
    assert head == initial or log(git_repos, setup.repo, head or "", "%P") == f"{initial}\n"
