"""HelmChart built from a GitRepository (served by ``git daemon``) and from a Bucket (MinIO):
the source controller's GitRepository, Bucket and HelmChart reconcilers in one manager against
the real API server, the chart artifact downloaded from the real artifact server and read by
the Go-built ``helm`` (``show chart``, ``template``)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.binaries import find_binary
from controllers.conditions import kstatus_violations
from controllers.envtest import ControlPlane, free_port
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.reconcile import Reconciler
from source.api_v1 import Bucket
from source.bucket import BucketReconciler
from source.gitrepository import GitRepositoryReconciler
from source.helmchart import HelmChartReconciler
from source.helmrepository import HelmRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.gitserver import GitDaemon, GitRepos
from tests.helmcli import helm_env
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.integration.kinds import GITREPO
from tests.integration.test_helmchart import CHART, artifact_bytes, stalled
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
)
from tests.s3server import S3Server

pytestmark = pytest.mark.integration

BUCKET = Bucket.info
# The fixtures this module shares with the HelmRepository tests.
__all__ = ["charts", "plain"]


@dataclass
class Sources:
    charts: HelmChartReconciler
    storage: ArtifactStorage


@pytest.fixture
async def sources(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> AsyncIterator[Sources]:
    """GitRepository, Bucket and HelmChart reconcilers sharing one storage, as in the source
    controller, and their artifact server. On teardown every HelmChart obeys kstatus."""
    port = free_port()
    root = tmp_path / "storage"
    storage = ArtifactStorage(root, f"127.0.0.1:{port}")
    server = await start_artifact_server(root, "127.0.0.1", port)
    charts = HelmChartReconciler(storage)
    reconcilers: list[Reconciler[Any, Any]] = [
        GitRepositoryReconciler(storage),
        BucketReconciler(storage),
        HelmRepositoryReconciler(storage),
        charts,
    ]
    try:
        async with running(
            options(control_plane, namespace, name="source-controller"), reconcilers
        ):
            yield Sources(charts, storage)
    finally:
        await server.cleanup()
    objects = (await kube.list(CHART, namespace))["items"]
    problems = {o["metadata"]["name"]: kstatus_violations(o) for o in objects}
    assert not {name: found for name, found in problems.items() if found}, problems


def chart_yaml(name: str, version: str, dependencies: list[dict[str, str]] | None = None) -> str:
    metadata: dict[str, Any] = {"apiVersion": "v2", "name": name, "version": version}
    if dependencies:
        metadata["dependencies"] = dependencies
    return yaml.safe_dump(metadata)


CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Chart.Name }}
data:
  greeting: {{ .Values.greeting | quote }}
  version: {{ .Chart.Version | quote }}
"""


def chart_files(prefix: str, version: str, greeting: str = "hello") -> dict[str, str]:
    return {
        f"{prefix}/Chart.yaml": chart_yaml("app", version),
        f"{prefix}/values.yaml": f"greeting: {greeting}\n",
        f"{prefix}/templates/configmap.yaml": CONFIGMAP,
    }


def helmchart(name: str, namespace: str, kind: str, path: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": CHART.api_version,
        "kind": CHART.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "chart": path,
            "sourceRef": {"kind": kind, "name": "source"},
            "interval": "10m",
            **spec,
        },
    }


def gitrepository(namespace: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": GITREPO.api_version,
        "kind": GITREPO.kind,
        "metadata": {"name": "source", "namespace": namespace},
        "spec": {"url": url, "interval": "10m", "ref": {"branch": "main"}},
    }


def at(version: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        artifact = (obj.get("status") or {}).get("artifact") or {}
        return is_ready(obj) and artifact.get("revision") == version

    return check


def helm(*args: str, home: Path) -> str:
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    env = helm_env(home, inherit=False)
    done = subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def saved_chart(obj: dict[str, Any], directory: Path) -> Path:
    """The artifact of ``obj``, downloaded (digest and size checked) into ``directory``."""
    content = await artifact_bytes(obj)
    path = directory / Path(obj["status"]["artifact"]["path"]).name

    def write() -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    await asyncio.to_thread(write)
    return path


async def new_commit(kube: KubeClient, namespace: str, commit: str) -> None:
    """Wait until the GitRepository's artifact is at ``commit``."""
    await wait_for_object(
        kube,
        GITREPO,
        namespace,
        "source",
        lambda o: str(((o.get("status") or {}).get("artifact") or {}).get("revision", "")).endswith(
            commit
        ),
    )


@pytest.fixture
def repo(git_repos: GitRepos, namespace: str) -> str:
    name = f"charts-{namespace}"
    git_repos.create(name)
    return name


async def test_a_chart_directory_in_git_is_packaged_and_follows_its_version(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    repo: str,
    tmp_path: Path,
) -> None:
    git_repos.commit(repo, chart_files("charts/app", "1.0.0"), "first")
    await kube.create(GITREPO, gitrepository(namespace, git_daemon.url(repo)))
    await kube.create(CHART, helmchart("app", namespace, "GitRepository", "./charts/app"))
    obj = await wait_for_object(kube, CHART, namespace, "app", at("1.0.0"))
    assert obj["status"]["artifact"]["path"].endswith("/app-1.0.0.tgz")
    assert obj["status"]["observedChartName"] == "app"
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["message"] == "packaged 'app' chart with version '1.0.0'"
    git = await wait_for_object(kube, GITREPO, namespace, "source", is_ready)
    assert obj["status"]["observedSourceArtifactRevision"] == git["status"]["artifact"]["revision"]
    archive = await saved_chart(obj, tmp_path / "first")
    shown = yaml.safe_load(helm("show", "chart", str(archive), home=tmp_path / "helm"))
    assert (shown["name"], shown["version"]) == ("app", "1.0.0")
    rendered = yaml.safe_load(helm("template", "r", str(archive), home=tmp_path / "helm"))
    assert rendered["data"] == {"greeting": "hello", "version": "1.0.0"}

    # A commit that leaves the version alone: no new artifact (ChartVersion strategy).
    other = git_repos.commit(repo, {"README.md": "charts\n"}, "docs")
    await kube.patch(GITREPO, namespace, "source", {"spec": {"interval": "1m"}})
    await new_commit(kube, namespace, other)
    obj = await wait_for_object(
        kube,
        CHART,
        namespace,
        "app",
        lambda o: str(o["status"].get("observedSourceArtifactRevision", "")).endswith(other),
    )
    assert obj["status"]["artifact"]["revision"] == "1.0.0"

    # A commit that bumps the version: a new artifact, with the new content.
    bump = git_repos.commit(repo, chart_files("charts/app", "1.1.0", "bonjour"), "bump")
    await kube.patch(GITREPO, namespace, "source", {"spec": {"interval": "2m"}})
    await new_commit(kube, namespace, bump)
    obj = await wait_for_object(kube, CHART, namespace, "app", at("1.1.0"))
    archive = await saved_chart(obj, tmp_path / "bumped")
    rendered = yaml.safe_load(helm("template", "r", str(archive), home=tmp_path / "helm"))
    assert rendered["data"] == {"greeting": "bonjour", "version": "1.1.0"}


async def test_revision_strategy_and_values_files_put_build_metadata_on_the_version(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    repo: str,
    tmp_path: Path,
) -> None:
    files = chart_files("charts/app", "1.0.0")
    files["env/prod.yaml"] = "greeting: prod\n"
    first = git_repos.commit(repo, files, "first")
    await kube.create(GITREPO, gitrepository(namespace, git_daemon.url(repo)))
    await kube.create(
        CHART,
        helmchart(
            "app",
            namespace,
            "GitRepository",
            "charts/app",
            reconcileStrategy="Revision",
            valuesFiles=["charts/app/values.yaml", "env/prod.yaml"],
        ),
    )
    version = f"1.0.0+{first[:12]}.1"
    obj = await wait_for_object(kube, CHART, namespace, "app", at(version))
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["message"] == (
        f"packaged 'app' chart with version '{version}' and merged values files "
        "[charts/app/values.yaml env/prod.yaml]"
    )
    archive = await saved_chart(obj, tmp_path / "first")
    assert archive.name == f"app-{version}.tgz"
    rendered = yaml.safe_load(helm("template", "r", str(archive), home=tmp_path / "helm"))
    assert rendered["data"] == {"greeting": "prod", "version": version}

    # Any new commit is a new chart version with this strategy.
    second = git_repos.commit(repo, {"README.md": "x\n"}, "docs")
    await kube.patch(GITREPO, namespace, "source", {"spec": {"interval": "1m"}})
    await new_commit(kube, namespace, second)
    await wait_for_object(kube, CHART, namespace, "app", at(f"1.0.0+{second[:12]}.1"))


async def test_a_file_dependency_is_packaged_inside_the_chart(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    repo: str,
    tmp_path: Path,
) -> None:
    files = chart_files("charts/library", "0.3.0")
    files["charts/library/Chart.yaml"] = chart_yaml("library", "0.3.0")
    files.update(chart_files("charts/app", "2.0.0"))
    dependency = {"name": "library", "version": "~0.3", "repository": "file://../library"}
    files["charts/app/Chart.yaml"] = chart_yaml("app", "2.0.0", [dependency])
    git_repos.commit(repo, files, "umbrella")
    await kube.create(GITREPO, gitrepository(namespace, git_daemon.url(repo)))
    await kube.create(CHART, helmchart("app", namespace, "GitRepository", "charts/app"))
    obj = await wait_for_object(kube, CHART, namespace, "app", at("2.0.0"))
    archive = await saved_chart(obj, tmp_path / "umbrella")
    documents = list(
        yaml.safe_load_all(helm("template", "r", str(archive), home=tmp_path / "helm"))
    )
    names = sorted(d["metadata"]["name"] for d in documents if d)
    assert names == ["app", "library"]

    # A dependency whose version does not satisfy the constraint stalls the chart.
    dependency["version"] = "~1.0"
    git_repos.commit(
        repo, {"charts/app/Chart.yaml": chart_yaml("app", "2.0.1", [dependency])}, "bad"
    )
    await kube.patch(GITREPO, namespace, "source", {"spec": {"interval": "1m"}})
    obj = await wait_for_object(
        kube, CHART, namespace, "app", lambda o: condition(o, "FetchFailed") is not None
    )
    failed = condition(obj, "FetchFailed")
    assert failed is not None
    assert failed["reason"] == "DependencyBuildError"
    assert "can't get a valid version for constraint '~1.0'" in failed["message"]
    assert obj["status"]["artifact"]["revision"] == "2.0.0"


async def test_a_dependency_from_a_helm_repository_of_the_namespace_is_packaged_inside(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    repo: str,
    charts: ChartRepository,
    plain: str,
    tmp_path: Path,
) -> None:
    charts.add("podinfo", "1.2.0")
    files = chart_files("charts/app", "1.0.0")
    dependency = {"name": "podinfo", "version": "1.x", "repository": f"{plain}/"}
    files["charts/app/Chart.yaml"] = chart_yaml("app", "1.0.0", [dependency])
    git_repos.commit(repo, files, "umbrella")
    await kube.create(GITREPO, gitrepository(namespace, git_daemon.url(repo)))
    await kube.create(CHART, helmchart("app", namespace, "GitRepository", "charts/app"))
    # No HelmRepository for the URL yet: retried, not stalled.
    obj = await wait_for_object(
        kube,
        CHART,
        namespace,
        "app",
        lambda o: (condition(o, "FetchFailed") or {}).get("reason") == "DependencyBuildError",
    )
    failed = condition(obj, "FetchFailed")
    assert failed is not None
    assert failed["reason"] == "DependencyBuildError"
    assert f"no HelmRepository for '{plain}'" in failed["message"]
    assert not stalled(obj)

    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.patch(CHART, namespace, "app", {"spec": {"interval": "5m"}})
    obj = await wait_for_object(kube, CHART, namespace, "app", at("1.0.0"))
    archive = await saved_chart(obj, tmp_path / "umbrella")
    shown = helm("show", "chart", str(archive), home=tmp_path / "helm")
    assert yaml.safe_load(shown)["dependencies"][0]["name"] == "podinfo"
    documents = list(
        yaml.safe_load_all(helm("template", "r", str(archive), home=tmp_path / "helm"))
    )
    kinds = {d["kind"] for d in documents if d}
    assert {"ConfigMap", "Deployment"} <= kinds  # the app's and podinfo's


@pytest.mark.parametrize(
    ("path", "dependency", "words"),
    [
        pytest.param("../outside", None, "is outside the source artifact", id="chart-path"),
        pytest.param("/charts/app", None, "must be relative", id="absolute-path"),
        pytest.param(
            "charts/app",
            {"name": "escape", "version": "*", "repository": "file://../../../etc"},
            "is outside the source artifact",
            id="file-dependency",
        ),
        pytest.param(
            "charts/app",
            {"name": "remote", "version": "1.x", "repository": "oci://registry.example.com/c"},
            "dependencies from OCI registries are not supported yet",
            id="remote-dependency",
        ),
    ],
)
async def test_what_cannot_be_built_stalls(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
    repo: str,
    path: str,
    dependency: dict[str, str] | None,
    words: str,
) -> None:
    files = chart_files("charts/app", "1.0.0")
    if dependency is not None:
        files["charts/app/Chart.yaml"] = chart_yaml("app", "1.0.0", [dependency])
    git_repos.commit(repo, files, "first")
    await kube.create(GITREPO, gitrepository(namespace, git_daemon.url(repo)))
    await kube.create(CHART, helmchart("app", namespace, "GitRepository", path))
    obj = await wait_for_object(kube, CHART, namespace, "app", stalled)
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    assert words in ready["message"], ready["message"]
    assert (obj.get("status") or {}).get("artifact") is None


async def test_a_chart_in_a_bucket_is_packaged_with_the_revision_hash(
    kube: KubeClient,
    namespace: str,
    sources: Sources,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    name = namespace
    s3_server.create_bucket(name)
    for key, content in chart_files("app", "3.0.0").items():
        s3_server.put_object(name, key, content)
    await kube.create(
        BUCKET,
        {
            "apiVersion": BUCKET.api_version,
            "kind": BUCKET.kind,
            "metadata": {"name": "source", "namespace": namespace},
            "spec": {
                "bucketName": name,
                "endpoint": s3_server.endpoint,
                "interval": "10m",
                "insecure": True,
                "secretRef": {"name": "s3"},
            },
        },
    )
    await kube.create(
        SECRET,
        {
            "metadata": {"name": "s3", "namespace": namespace},
            "stringData": {"accesskey": s3_server.access_key, "secretkey": s3_server.secret_key},
        },
    )
    await kube.create(
        CHART, helmchart("app", namespace, "Bucket", "app", reconcileStrategy="Revision")
    )
    bucket = await wait_for_object(kube, BUCKET, namespace, "source", is_ready)
    revision = bucket["status"]["artifact"]["revision"]
    assert revision.startswith("sha256:")
    version = f"3.0.0+{revision.removeprefix('sha256:')[:12]}"
    obj = await wait_for_object(kube, CHART, namespace, "app", at(version))
    archive = await saved_chart(obj, tmp_path / "bucket")
    shown = yaml.safe_load(helm("show", "chart", str(archive), home=tmp_path / "helm"))
    assert shown["version"] == version
