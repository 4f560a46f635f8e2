"""GitRepository against real Git servers, the real API server and the real artifact server."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controllers.artifact import fetch_artifact
from controllers.envtest import ControlPlane, free_port
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from source.gitrepository import GitRepositoryReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.gitserver import (
    GitDaemon,
    GitHTTPServer,
    Gitlink,
    GitRepos,
    GitSSHServer,
    GpgKey,
    Symlink,
)
from tests.integration.harness import (
    assert_new_revision_reported,
    conditions_written,
    is_ready,
    options,
    running,
    wait_for_deletion,
    wait_for_object,
)
from tests.integration.kinds import GITREPO
from tests.proxyserver import TinyProxy

pytestmark = pytest.mark.integration


@dataclass
class Source:
    reconciler: GitRepositoryReconciler
    storage: ArtifactStorage


@pytest.fixture
async def source(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Source]:
    """The source controller's GitRepository reconciler and its artifact server."""
    port = free_port()
    storage = ArtifactStorage(tmp_path / "storage", f"127.0.0.1:{port}")
    server = await start_artifact_server(tmp_path / "storage", "127.0.0.1", port)
    reconciler = GitRepositoryReconciler(storage)
    opts = options(control_plane, namespace, name="source-controller")
    try:
        async with running(opts, [reconciler]):
            yield Source(reconciler, storage)
    finally:
        await server.cleanup()


def gitrepository(name: str, namespace: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GITREPO.api_version,
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": url, "interval": "10m", "ref": {"branch": "main"}, **spec},
    }


async def secret(kube: KubeClient, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {"metadata": {"name": name, "namespace": namespace}, "data": encoded}
    await kube.create(SECRET, body)


async def ready(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await wait_for_object(kube, GITREPO, namespace, name, is_ready)


async def failed(kube: KubeClient, namespace: str, name: str) -> dict[str, str]:
    """The Ready condition once it is False."""
    obj = await wait_for_object(kube, GITREPO, namespace, name, lambda o: _ready(o) == "False")
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def artifact_at(commit: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        revision = (obj.get("status") or {}).get("artifact", {}).get("revision", "")
        return str(revision).endswith(commit)

    return check


def verification_mentions(commit: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "SourceVerified" and commit in c["message"] for c in conditions)

    return check


def _ready(obj: dict[str, Any]) -> str | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Ready"), None)


async def files_of(obj: dict[str, Any], dest: Path) -> dict[str, str]:
    """The artifact's files, downloaded and digest-verified as a consumer would."""
    artifact = obj["status"]["artifact"]
    await fetch_artifact(artifact["url"], artifact["digest"], dest)
    return _read_tree(dest)


def _read_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def repo(git_repos: GitRepos, namespace: str) -> str:
    """A repository with two commits on main, tags v1.0.0 (light) and v1.1.0 (annotated)."""
    name = f"app-{namespace}"
    git_repos.create(name)
    git_repos.commit(name, {"deploy/app.yaml": "replicas: 1\n", "README.md": "app\n"}, "first")
    git_repos.tag(name, "v1.0.0", annotated=False)
    git_repos.commit(name, {"deploy/app.yaml": "replicas: 2\n"}, "scale to two")
    git_repos.tag(name, "v1.1.0", message="release 1.1.0")
    git_repos.tag(name, "v2.0.0-rc.1", message="a prerelease")
    git_repos.commit(name, {"feature.txt": "wip\n"}, "feature work", branch="feature")
    return name


@pytest.mark.parametrize(
    ("ref", "revision_ref", "replicas"),
    [
        pytest.param({"branch": "main"}, ("main", "main"), "2", id="branch"),
        pytest.param({"tag": "v1.0.0"}, ("v1.0.0", "v1.0.0"), "1", id="lightweight-tag"),
        pytest.param({"tag": "v1.1.0"}, ("v1.1.0", "v1.1.0"), "2", id="annotated-tag"),
        pytest.param({"semver": ">=1.0.0 <2.0.0"}, ("v1.1.0", "v1.1.0"), "2", id="semver"),
        pytest.param({"semver": "~1.0"}, ("v1.0.0", "v1.0.0"), "1", id="semver-patch"),
        pytest.param(
            {"name": "refs/heads/feature"}, ("refs/heads/feature", "feature"), "2", id="name"
        ),
    ],
)
async def test_refs_over_git_daemon(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    repo: str,
    tmp_path: Path,
    ref: dict[str, str],
    revision_ref: tuple[str, str],
    replicas: str,
) -> None:
    name, rev = revision_ref
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(repo), ref=ref))
    obj = await ready(kube, namespace, "app")
    commit = git_repos.resolve(repo, f"{rev}^{{commit}}")
    assert obj["status"]["artifact"]["revision"] == f"{name}@sha1:{commit}"
    assert obj["status"]["artifact"]["path"] == f"gitrepository/{namespace}/app/{commit}.tar.gz"
    files = await files_of(obj, tmp_path / "out")
    assert files["deploy/app.yaml"] == f"replicas: {replicas}\n"
    ready_condition = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["message"] == f"stored artifact for revision '{name}@sha1:{commit}'"


async def test_pinned_commit(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    repo: str,
    tmp_path: Path,
) -> None:
    first = git_repos.resolve(repo, "v1.0.0^{commit}")
    assert first is not None
    await kube.create(
        GITREPO, gitrepository("pinned", namespace, git_daemon.url(repo), ref={"commit": first})
    )
    await kube.create(
        GITREPO,
        gitrepository(
            "on-branch", namespace, git_daemon.url(repo), ref={"branch": "main", "commit": first}
        ),
    )
    pinned = await ready(kube, namespace, "pinned")
    on_branch = await ready(kube, namespace, "on-branch")
    assert pinned["status"]["artifact"]["revision"] == f"sha1:{first}"
    assert on_branch["status"]["artifact"]["revision"] == f"main@sha1:{first}"
    files = await files_of(pinned, tmp_path / "out")
    assert files["deploy/app.yaml"] == "replicas: 1\n"


async def test_https_with_basic_auth_and_bearer_token(
    kube: KubeClient, namespace: str, source: Source, git_https: GitHTTPServer, repo: str
) -> None:
    await secret(
        kube,
        namespace,
        "basic",
        {
            "username": git_https.username,
            "password": git_https.password,
            "ca.crt": git_https.ca_pem,
        },
    )
    await secret(
        kube, namespace, "token", {"bearerToken": git_https.token, "ca.crt": git_https.ca_pem}
    )
    await secret(
        kube,
        namespace,
        "wrong",
        {"username": git_https.username, "password": "nope", "ca.crt": git_https.ca_pem},
    )
    url = git_https.url(repo)
    await kube.create(GITREPO, gitrepository("basic", namespace, url, secretRef={"name": "basic"}))
    await kube.create(GITREPO, gitrepository("token", namespace, url, secretRef={"name": "token"}))
    await kube.create(GITREPO, gitrepository("wrong", namespace, url, secretRef={"name": "wrong"}))
    await kube.create(GITREPO, gitrepository("no-ca", namespace, url))
    for name in ("basic", "token"):
        obj = await ready(kube, namespace, name)
        assert obj["status"]["artifact"]["revision"].startswith("main@sha1:")
    wrong = await failed(kube, namespace, "wrong")
    assert wrong["reason"] == "AuthenticationFailed", wrong
    assert "nope" not in wrong["message"]
    no_ca = await failed(kube, namespace, "no-ca")
    assert no_ca["reason"] in ("GitOperationFailed", "AuthenticationFailed")
    assert "certificate" in no_ca["message"]


@pytest.mark.parametrize(
    "key_type", [pytest.param("ed25519", id="ed25519"), pytest.param("rsa", id="rsa")]
)
async def test_ssh_with_known_hosts(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_ssh: GitSSHServer,
    git_https: GitHTTPServer,
    repo: str,
    key_type: str,
) -> None:
    await secret(kube, namespace, "ssh", git_ssh.secret_data(key_type))  # type: ignore[arg-type]
    await kube.create(
        GITREPO, gitrepository("ssh", namespace, git_ssh.url(repo), secretRef={"name": "ssh"})
    )
    obj = await ready(kube, namespace, "ssh")
    assert obj["status"]["artifact"]["revision"].startswith("main@sha1:")

    # A host key that is not the server's is refused.
    impostor = dict(git_ssh.secret_data(key_type))  # type: ignore[arg-type]
    real_key = impostor["known_hosts"].split()[-1]
    impostor["known_hosts"] = impostor["known_hosts"].replace(real_key, _other_ed25519_key())
    await secret(kube, namespace, "impostor", impostor)
    await kube.create(
        GITREPO,
        gitrepository("impostor", namespace, git_ssh.url(repo), secretRef={"name": "impostor"}),
    )
    refused = await failed(kube, namespace, "impostor")
    assert "hostkey" in refused["message"] or "host key" in refused["message"], refused


def _other_ed25519_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode().split()[1]


async def test_new_commit_unchanged_remote_and_unknown_branch(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    repo: str,
    tmp_path: Path,
) -> None:
    await kube.create(
        GITREPO, gitrepository("app", namespace, git_daemon.url(repo), ref={"branch": "main"})
    )
    first = await ready(kube, namespace, "app")

    # An unchanged remote is re-checked without a checkout.
    checkouts = source.reconciler.stats["checkouts"]
    annotations = {REQUESTED_AT: "first"}
    await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": annotations}})
    again = await wait_for_object(
        kube,
        GITREPO,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "first",
    )
    assert source.reconciler.stats["checkouts"] == checkouts
    assert again["status"]["artifact"] == first["status"]["artifact"]

    # A new commit shows up as a new artifact right after a reconcile request.
    commit = git_repos.commit(repo, {"deploy/app.yaml": "replicas: 3\n"}, "scale to three")
    annotations = {REQUESTED_AT: "second"}
    await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": annotations}})
    newer = await wait_for_object(
        kube,
        GITREPO,
        namespace,
        "app",
        lambda o: (
            (o.get("status") or {}).get("artifact", {}).get("revision") == f"main@sha1:{commit}"
        ),
    )
    files = await files_of(newer, tmp_path / "out")
    assert files["deploy/app.yaml"] == "replicas: 3\n"

    # An unknown branch: Ready=False with a reason and a message a user can act on; the
    # previous artifact is still served.
    await kube.patch(GITREPO, namespace, "app", {"spec": {"ref": {"branch": "nope"}}})
    condition = await failed(kube, namespace, "app")
    assert condition["reason"] == "GitOperationFailed"
    assert "refs/heads/nope" in condition["message"]
    current = await kube.get(GITREPO, namespace, "app")
    fetch_failed = {c["type"]: c for c in current["status"]["conditions"]}["FetchFailed"]
    assert fetch_failed["status"] == "True"
    still = await files_of(current, tmp_path / "still")
    assert still["deploy/app.yaml"] == "replicas: 3\n"


async def test_verify_signed_and_unsigned_commits(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    tmp_path: Path,
) -> None:
    trusted = GpgKey.generate(tmp_path / "trusted", "Release Bot <release@weir.invalid>")
    stranger = GpgKey.generate(tmp_path / "stranger", "Stranger <stranger@weir.invalid>")
    name = f"signed-{namespace}"
    git_repos.create(name)
    signed = git_repos.commit(name, {"app.yaml": "v: 1\n"}, "signed", sign_with=trusted)
    await secret(kube, namespace, "keys", {"release.asc": trusted.public})
    verify = {"mode": "HEAD", "secretRef": {"name": "keys"}}
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(name), verify=verify))
    obj = await ready(kube, namespace, "app")
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["SourceVerified"]["status"] == "True"
    assert f"commit '{signed}'" in conditions["SourceVerified"]["message"]
    assert trusted.fingerprint in conditions["SourceVerified"]["message"]
    assert obj["status"]["sourceVerificationMode"] == "HEAD"

    for files, key, why in (
        ({"app.yaml": "v: 2\n"}, None, "no PGP signature"),
        ({"app.yaml": "v: 3\n"}, stranger, "not made by any key"),
    ):
        commit = git_repos.commit(name, files, "next", sign_with=key)
        stamp = {REQUESTED_AT: commit}
        await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": stamp}})
        condition = await wait_for_object(
            kube,
            GITREPO,
            namespace,
            "app",
            verification_mentions(commit),
        )
        by_type = {c["type"]: c for c in condition["status"]["conditions"]}
        assert by_type["SourceVerified"]["status"] == "False"
        assert by_type["SourceVerified"]["reason"] == "InvalidCommitSignature"
        assert why in by_type["SourceVerified"]["message"]
        assert by_type["Ready"]["status"] == "False"
        # The last verified artifact is still what consumers get.
        assert condition["status"]["artifact"]["revision"] == f"main@sha1:{signed}"


async def test_ignore_rules_and_a_link_out_of_the_repository(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    tmp_path: Path,
) -> None:
    name = f"ignore-{namespace}"
    git_repos.create(name)
    git_repos.commit(
        name,
        {
            "deploy/app.yaml": "app\n",
            "deploy/secret.yaml": "secret\n",
            "docs/guide.md": "guide\n",
            ".sourceignore": "docs/\n",
            "README.md": "readme\n",
        },
        "tree",
    )
    url = git_daemon.url(name)
    await kube.create(GITREPO, gitrepository("app", namespace, url, ignore="deploy/secret.yaml"))
    obj = await ready(kube, namespace, "app")
    shipped = set(await files_of(obj, tmp_path / "one"))
    assert shipped == {"deploy/app.yaml", "README.md", ".sourceignore"}  # kept, as in Flux
    assert obj["status"]["observedIgnore"] == "deploy/secret.yaml"

    # A changed spec.ignore on the same revision builds a new artifact.
    await kube.patch(GITREPO, namespace, "app", {"spec": {"ignore": "README.md"}})
    obj = await wait_for_object(
        kube,
        GITREPO,
        namespace,
        "app",
        lambda o: is_ready(o) and o["status"].get("observedIgnore") == "README.md",
    )
    shipped = set(await files_of(obj, tmp_path / "two"))
    assert shipped == {"deploy/app.yaml", "deploy/secret.yaml", ".sourceignore"}

    # A symlink out of the repository: refused with a way out, the last artifact kept.
    link = git_repos.commit(name, {"passwd": Symlink("/etc/passwd")}, "hostile link")
    await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: link}}})
    condition = await failed(kube, namespace, "app")
    assert condition["reason"] == "ArchiveOperationFailed"
    assert "symlink 'passwd' points outside the source" in condition["message"]
    current = await kube.get(GITREPO, namespace, "app")
    assert current["status"]["artifact"] == obj["status"]["artifact"]
    assert not any(p.name == "passwd" for p in source.storage.root.rglob("passwd"))


async def test_garbage_collection_and_deletion(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    name = f"gc-{namespace}"
    git_repos.create(name)
    git_repos.commit(name, {"a.yaml": "0\n"}, "commit 0")
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(name)))
    await ready(kube, namespace, "app")
    directory = source.storage.root / "gitrepository" / namespace / "app"
    for i in range(1, 5):
        commit = git_repos.commit(name, {"a.yaml": f"{i}\n"}, f"commit {i}")
        stamp = {REQUESTED_AT: commit}
        await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": stamp}})
        await wait_for_object(
            kube,
            GITREPO,
            namespace,
            "app",
            artifact_at(commit),
        )
    # --artifact-retention-records (2): the newest two are kept, the current one among them.
    tarballs = sorted(p.name for p in directory.glob("*.tar.gz"))
    assert len(tarballs) == 2, tarballs
    assert f"{commit}.tar.gz" in tarballs

    await kube.delete(GITREPO, namespace, "app")
    await wait_for_deletion(kube, GITREPO, namespace, "app")
    assert not directory.exists()


async def test_include_of_another_gitrepository(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    tmp_path: Path,
) -> None:
    shared, app = f"shared-{namespace}", f"app-{namespace}"
    git_repos.create(shared)
    git_repos.commit(shared, {"manifests/crd.yaml": "crd\n", "README.md": "x\n"}, "shared")
    git_repos.create(app)
    git_repos.commit(app, {"app.yaml": "app\n"}, "app")
    include = [
        {"repository": {"name": "shared"}, "fromPath": "manifests", "toPath": "vendor/shared"}
    ]
    await kube.create(
        GITREPO, gitrepository("app", namespace, git_daemon.url(app), include=include)
    )
    waiting = await failed(kube, namespace, "app")
    assert waiting["reason"] == "IncludeUnavailable"
    assert "included GitRepository 'shared' not found" in waiting["message"]

    await kube.create(GITREPO, gitrepository("shared", namespace, git_daemon.url(shared)))
    shared_obj = await ready(kube, namespace, "shared")
    obj = await ready(kube, namespace, "app")
    files = await files_of(obj, tmp_path / "out")
    assert files == {"app.yaml": "app\n", "vendor/shared/crd.yaml": "crd\n"}
    assert obj["status"]["observedInclude"] == include
    included = obj["status"]["includedArtifacts"]
    assert [a["revision"] for a in included] == [shared_obj["status"]["artifact"]["revision"]]


async def test_recurse_submodules(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    tmp_path: Path,
) -> None:
    library, app = f"lib-{namespace}", f"super-{namespace}"
    git_repos.create(library)
    library_commit = git_repos.commit(library, {"lib.yaml": "lib\n"}, "library")
    git_repos.create(app)
    modules = f'[submodule "lib"]\n\tpath = lib\n\turl = {git_daemon.url(library)}\n'
    git_repos.commit(
        app,
        {"app.yaml": "app\n", ".gitmodules": modules, "lib": Gitlink(library_commit)},
        "with a submodule",
    )
    url = git_daemon.url(app)
    await kube.create(GITREPO, gitrepository("flat", namespace, url))
    await kube.create(GITREPO, gitrepository("deep", namespace, url, recurseSubmodules=True))
    flat = await files_of(await ready(kube, namespace, "flat"), tmp_path / "flat")
    deep_obj = await ready(kube, namespace, "deep")
    deep = await files_of(deep_obj, tmp_path / "deep")
    assert "lib/lib.yaml" not in flat
    assert deep["lib/lib.yaml"] == "lib\n"
    assert deep_obj["status"]["observedRecurseSubmodules"] is True


async def test_the_source_controller_process(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    git_daemon: GitDaemon,
    repo: str,
    tmp_path: Path,
) -> None:
    """``python -m source`` as deployed: flags, artifact server, graceful stop."""
    port = free_port()
    with (tmp_path / "source.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "source",
            f"--kubeconfig={control_plane.admin_kubeconfig}",
            "--watch-all-namespaces=false",
            f"--storage-path={tmp_path / 'data'}",
            f"--storage-addr=127.0.0.1:{port}",
            f"--storage-adv-addr=127.0.0.1:{port}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            env={**os.environ, "RUNTIME_NAMESPACE": namespace},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(repo)))
        obj = await ready(kube, namespace, "app")
        assert obj["status"]["artifact"]["url"].startswith(
            f"http://127.0.0.1:{port}/gitrepository/"
        )
        files = await files_of(obj, tmp_path / "out")
        assert files["deploy/app.yaml"] == "replicas: 2\n"
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    "entry", [pytest.param("..", id="dot-dot"), pytest.param(".git", id="dot-git")]
)
async def test_a_tree_entry_leaving_the_checkout_is_refused(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    tmp_path: Path,
    entry: str,
) -> None:
    name = f"hostile-{namespace}"
    git_repos.create(name)
    git_repos.commit(name, {"app.yaml": "good\n"}, "good")
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(name)))
    good = await ready(kube, namespace, "app")

    blob = git_repos.blob(name, "pwned\n")
    inner = git_repos.mktree(name, [f"100644 blob {blob}\tpwned"])
    lines = [f"040000 tree {inner}\t{entry}", f"100644 blob {blob}\tapp.yaml"]
    hostile = git_repos.commit_tree(name, git_repos.mktree(name, lines), "hostile tree")
    stamp = {REQUESTED_AT: hostile}
    await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": stamp}})
    condition = await failed(kube, namespace, "app")
    assert condition["reason"] == "GitOperationFailed"
    assert "invalid path" in condition["message"] or "refusing" in condition["message"]
    current = await kube.get(GITREPO, namespace, "app")
    assert current["status"]["artifact"] == good["status"]["artifact"]
    assert not list(tmp_path.parent.rglob("pwned"))


async def test_https_with_a_client_certificate(
    kube: KubeClient, namespace: str, source: Source, git_mtls: GitHTTPServer, repo: str
) -> None:
    cert, key = git_mtls.client_pair
    credentials = {"username": git_mtls.username, "password": git_mtls.password}
    await secret(
        kube,
        namespace,
        "mtls",
        {**credentials, "ca.crt": git_mtls.ca_pem, "tls.crt": cert, "tls.key": key},
    )
    await secret(kube, namespace, "no-cert", {**credentials, "ca.crt": git_mtls.ca_pem})
    url = git_mtls.url(repo)
    await kube.create(GITREPO, gitrepository("mtls", namespace, url, secretRef={"name": "mtls"}))
    await kube.create(
        GITREPO, gitrepository("no-cert", namespace, url, secretRef={"name": "no-cert"})
    )
    obj = await ready(kube, namespace, "mtls")
    assert obj["status"]["artifact"]["revision"].startswith("main@sha1:")
    refused = await failed(kube, namespace, "no-cert")
    assert refused["reason"] in ("GitOperationFailed", "AuthenticationFailed")
    assert git_mtls.password not in refused["message"]


async def test_a_new_commit_arrives_within_the_interval(
    kube: KubeClient, namespace: str, source: Source, git_daemon: GitDaemon, git_repos: GitRepos
) -> None:
    name = f"interval-{namespace}"
    git_repos.create(name)
    git_repos.commit(name, {"a.yaml": "1\n"}, "one")
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(name), interval="2s"))
    await ready(kube, namespace, "app")
    commit = git_repos.commit(name, {"a.yaml": "2\n"}, "two")
    # No reconcile request: the next periodic run (2s ± 5%) must pick the commit up.
    await wait_for_object(kube, GITREPO, namespace, "app", artifact_at(commit), timeout=10)


async def test_a_new_revision_is_reported_while_its_artifact_is_built(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
    repo: str,
) -> None:
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(repo)))
    await ready(kube, namespace, "app")
    since = (await kube.get(GITREPO, namespace, "app"))["metadata"]["resourceVersion"]

    commit = git_repos.commit(repo, {"deploy/app.yaml": "replicas: 4\n"}, "scale to four")
    await kube.patch(
        GITREPO, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: "new"}}}
    )
    written = await conditions_written(kube, GITREPO, namespace, "app", since, artifact_at(commit))

    revision = f"main@sha1:{commit}"
    assert_new_revision_reported(written, f"new upstream revision '{revision}'")
    assert written[-1]["Ready"]["message"] == f"stored artifact for revision '{revision}'"


async def test_artifact_url_follows_the_storage_address(
    kube: KubeClient, namespace: str, source: Source, git_daemon: GitDaemon, repo: str
) -> None:
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(repo)))
    first = await ready(kube, namespace, "app")
    old = first["status"]["artifact"]["url"]
    # As after a restart with another --storage-adv-addr: the revision is unchanged, the URL not.
    source.storage.advertised_address = "source-controller.flux-system.svc.cluster.local."
    await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: "x"}}})
    moved = await wait_for_object(
        kube,
        GITREPO,
        namespace,
        "app",
        lambda o: o["status"]["artifact"]["url"] != old,
    )
    artifact = moved["status"]["artifact"]
    assert artifact["url"].startswith("http://source-controller.flux-system.svc.cluster.local./")
    assert artifact["digest"] == first["status"]["artifact"]["digest"]


async def test_unreachable_and_silent_servers(
    kube: KubeClient, namespace: str, source: Source
) -> None:
    closed = free_port()  # nothing listens there
    with socket.socket() as silent:
        # Accepts connections (the kernel completes the handshake) but never says a word.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        await kube.create(
            GITREPO, gitrepository("closed", namespace, f"http://127.0.0.1:{closed}/repo.git")
        )
        await kube.create(
            GITREPO,
            gitrepository("silent", namespace, f"http://127.0.0.1:{port}/repo.git", timeout="2s"),
        )
        refused = await failed(kube, namespace, "closed")
        hung = await failed(kube, namespace, "silent")
    assert refused["reason"] == "GitOperationFailed"
    assert "127.0.0.1" in refused["message"]
    assert hung["reason"] == "GitOperationFailed"
    assert "timed out" in hung["message"] or "timeout" in hung["message"]


async def test_an_oversized_file_is_refused_and_the_last_artifact_kept(
    kube: KubeClient, namespace: str, source: Source, git_daemon: GitDaemon, git_repos: GitRepos
) -> None:
    # The limit is scaled down (1 GiB by default): a 2 GiB file would take the same path.
    source.storage.max_content_size = 2**20
    name = f"big-{namespace}"
    git_repos.create(name)
    git_repos.commit(name, {"app.yaml": "small\n"}, "small")
    await kube.create(GITREPO, gitrepository("app", namespace, git_daemon.url(name)))
    small = await ready(kube, namespace, "app")
    big = git_repos.commit(name, {"data/blob.bin": os.urandom(2 * 2**20)}, "add a big file")
    await kube.patch(GITREPO, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: big}}})
    condition = await failed(kube, namespace, "app")
    assert condition["reason"] == "ArchiveOperationFailed"
    assert "exceeds the artifact size limit of 1 MiB at 'data/blob.bin'" in condition["message"]
    current = await kube.get(GITREPO, namespace, "app")
    assert current["status"]["artifact"] == small["status"]["artifact"]


@pytest.mark.parametrize(
    "scheme", [pytest.param("http", id="http"), pytest.param("https", id="https")]
)
async def test_through_an_http_proxy(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_https: GitHTTPServer,
    http_proxy: TinyProxy,
    repo: str,
    scheme: str,
) -> None:
    url, port = (
        (git_https.url(repo), git_https.port)
        if scheme == "https"
        else (git_https.http_url(repo), git_https.http_port)
    )
    credentials = {
        "username": git_https.username,
        "password": git_https.password,
        "ca.crt": git_https.ca_pem,
    }
    await secret(kube, namespace, "git", credentials)
    proxy = {"address": http_proxy.address, "username": http_proxy.username}
    await secret(kube, namespace, "proxy", {**proxy, "password": http_proxy.password})
    await secret(kube, namespace, "bad-proxy", {**proxy, "password": "wrong"})
    before = http_proxy.requests_to(port)
    for name, proxy_secret in (("via-proxy", "proxy"), ("bad-proxy", "bad-proxy")):
        await kube.create(
            GITREPO,
            gitrepository(
                name,
                namespace,
                url,
                secretRef={"name": "git"},
                proxySecretRef={"name": proxy_secret},
            ),
        )
    obj = await ready(kube, namespace, "via-proxy")
    assert obj["status"]["artifact"]["revision"].startswith("main@sha1:")
    assert http_proxy.requests_to(port) > before, "nothing went through the proxy"
    refused = await failed(kube, namespace, "bad-proxy")
    assert "wrong" not in refused["message"]
    assert http_proxy.password not in refused["message"]


async def test_a_cloud_provider_is_refused_until_the_spec_changes(
    kube: KubeClient,
    namespace: str,
    source: Source,
    git_daemon: GitDaemon,
    git_repos: GitRepos,
) -> None:
    # weir has no GitHub App, Azure or AWS credentials: saying so beats fetching anonymously.
    name = f"provider-{namespace}"
    git_repos.create(name)
    git_repos.commit(name, {"app.yaml": "good\n"}, "good")
    obj = gitrepository("app", namespace, git_daemon.url(name))
    obj["spec"]["provider"] = "github"
    await kube.create(GITREPO, obj)
    condition = await failed(kube, namespace, "app")
    assert condition["reason"] == "UnsupportedConfiguration"
    assert "'github' provider is not supported" in condition["message"]
    current = await kube.get(GITREPO, namespace, "app")
    stalled = next(c for c in current["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert "artifact" not in current["status"]
