"""OCIRepository against real registries (docker-registry), the real API server and the real
artifact server."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controllers.artifact import fetch_artifact
from controllers.kinds import SECRET, SERVICE_ACCOUNT
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from source.api_v1 import OCIRepository
from tests.integration.conftest import SourceController
from tests.integration.harness import (
    assert_new_revision_reported,
    conditions_written,
    is_ready,
    wait_for_deletion,
    wait_for_object,
)
from tests.proxyserver import TinyProxy
from tests.registry import (
    FLUX_CONTENT,
    Blob,
    OCIRegistries,
    RegistryServer,
    bomb_tar_gz,
    symlink_tar_gz,
    tar_gz,
    traversal_tar_gz,
)

pytestmark = pytest.mark.integration

OCIREPO = OCIRepository.info
OTHER_CONTENT = "application/vnd.example.other.v1.tar+gzip"
ANNOTATIONS = {
    "org.opencontainers.image.source": "https://github.com/example/app",
    "org.opencontainers.image.revision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
}


def ocirepository(
    name: str, namespace: str, server: RegistryServer, repository: str, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": server.url(repository), "interval": "10m", **spec}
    if server.insecure:
        body["insecure"] = True
    return {
        "apiVersion": OCIREPO.api_version,
        "kind": "OCIRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def app_layer(replicas: int) -> Blob:
    return Blob(FLUX_CONTENT, tar_gz({"deploy/app.yaml": f"replicas: {replicas}\n"}))


async def secret(
    kube: KubeClient, namespace: str, name: str, data: dict[str, str], type_: str = "Opaque"
) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {"metadata": {"name": name, "namespace": namespace}, "type": type_, "data": encoded}
    await kube.create(SECRET, body)


def docker_config(host: str, username: str, password: str) -> dict[str, str]:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {".dockerconfigjson": json.dumps({"auths": {host: {"auth": auth}}})}


async def ready(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await wait_for_object(kube, OCIREPO, namespace, name, is_ready)


async def failed(kube: KubeClient, namespace: str, name: str) -> dict[str, str]:
    """The Ready condition once it is False for the object's generation."""
    obj = await wait_for_object(kube, OCIREPO, namespace, name, not_ready)
    return condition(obj, "Ready")


def not_ready(obj: dict[str, Any]) -> bool:
    ready_condition = condition(obj, "Ready")
    return ready_condition.get("status") == "False" and ready_condition.get(
        "observedGeneration"
    ) == obj["metadata"].get("generation")


def handled(value: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastHandledReconcileAt") == value

    return check


def revision_is(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return bool(is_ready(obj) and obj["status"]["artifact"]["revision"] == revision)

    return check


def condition(obj: dict[str, Any], type_: str) -> dict[str, str]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


async def files_of(obj: dict[str, Any], dest: Path) -> dict[str, str]:
    """The artifact's files, downloaded and digest-verified as a consumer would."""
    artifact = obj["status"]["artifact"]
    await fetch_artifact(artifact["url"], artifact["digest"], dest)
    return read_tree(dest)


def read_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


async def request_reconcile(kube: KubeClient, namespace: str, name: str, value: str) -> None:
    annotations = {REQUESTED_AT: value}
    await kube.patch(OCIREPO, namespace, name, {"metadata": {"annotations": annotations}})


@pytest.fixture
async def releases(oci_registry: OCIRegistries, namespace: str) -> dict[str, str]:
    """Repository ``<namespace>/app`` on the plain registry: tag to manifest digest.

    v1.0.0 (1 replica), v1.1.0 and latest (2), v2.0.0-rc.1 (3), v1.2.0-rc.1 (4), and a tag
    that is no version.
    """
    plain, repository = oci_registry.plain, f"{namespace}/app"
    digests: dict[str, str] = {}
    for tags, replicas in (
        (["v1.0.0"], 1),
        (["v1.1.0", "latest"], 2),
        (["v2.0.0-rc.1"], 3),
        (["v1.2.0-rc.1"], 4),
        (["not-a-version"], 5),
    ):
        digest = await plain.push(repository, tags, [app_layer(replicas)], annotations=ANNOTATIONS)
        digests |= dict.fromkeys(tags, digest)
    return digests


@pytest.mark.parametrize(
    ("ref", "tag", "replicas"),
    [
        pytest.param(None, "latest", 2, id="default-latest"),
        pytest.param({"tag": "v1.0.0"}, "v1.0.0", 1, id="tag"),
        pytest.param({"semver": ">=1.0.0 <2.0.0"}, "v1.1.0", 2, id="semver"),
        pytest.param({"semver": "~1.0"}, "v1.0.0", 1, id="semver-patch"),
        pytest.param(
            {"semver": ">=1.0.0-0", "semverFilter": ".*-rc.*"},
            "v2.0.0-rc.1",
            3,
            id="semver-filter",
        ),
        pytest.param(
            {"semver": ">=1.0.0-0 <2.0.0-0", "semverFilter": "-rc"},
            "v1.2.0-rc.1",
            4,
            id="semver-filter-range",
        ),
        pytest.param({"tag": "v1.1.0", "semver": "1.0.x"}, "v1.0.0", 1, id="semver-wins"),
        pytest.param({"digest": "v1.0.0", "tag": "latest"}, None, 1, id="digest-wins"),
    ],
)
async def test_refs(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    releases: dict[str, str],
    tmp_path: Path,
    ref: dict[str, str] | None,
    tag: str | None,
    replicas: int,
) -> None:
    spec: dict[str, Any] = {}
    if ref is not None:
        # A digest parameter names the tag whose digest it is.
        spec["ref"] = {k: releases[v] if k == "digest" else v for k, v in ref.items()}
    digest = releases[tag] if tag else spec["ref"]["digest"]
    plain = oci_registry.plain
    await kube.create(OCIREPO, ocirepository("app", namespace, plain, f"{namespace}/app", **spec))

    obj = await ready(kube, namespace, "app")

    revision = f"{tag}@{digest}" if tag else digest
    artifact = obj["status"]["artifact"]
    assert artifact["revision"] == revision
    hex_digest = digest.removeprefix("sha256:")
    assert artifact["path"] == f"ocirepository/{namespace}/app/{hex_digest}.tar.gz"
    assert artifact["metadata"] == ANNOTATIONS
    assert obj["status"]["url"] == artifact["url"]
    assert condition(obj, "Ready")["message"] == f"stored artifact for digest '{revision}'"
    assert condition(obj, "ArtifactInStorage")["reason"] == "Succeeded"
    files = await files_of(obj, tmp_path / "out")
    assert files == {"deploy/app.yaml": f"replicas: {replicas}\n"}


@pytest.mark.parametrize(
    ("ref", "reason", "text"),
    [
        pytest.param({"tag": "v9.9.9"}, "OCIArtifactPullFailed", "MANIFEST_UNKNOWN", id="no-tag"),
        pytest.param(
            {"semver": ">=3.0.0"}, "ReadOperationFailed", "no match found for semver", id="semver"
        ),
        pytest.param(
            {"semver": ">=1.0.0", "semverFilter": "(unclosed"},
            "ReadOperationFailed",
            "invalid semverFilter",
            id="bad-filter",
        ),
        pytest.param(
            {"digest": "sha256:" + "0" * 64},
            "OCIArtifactPullFailed",
            "not found",
            id="unknown-digest",
        ),
    ],
)
async def test_unresolvable_refs(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    releases: dict[str, str],
    ref: dict[str, str],
    reason: str,
    text: str,
) -> None:
    plain = oci_registry.plain
    await kube.create(OCIREPO, ocirepository("app", namespace, plain, f"{namespace}/app", ref=ref))

    ready_condition = await failed(kube, namespace, "app")

    assert (ready_condition["reason"], text in ready_condition["message"]) == (reason, True), (
        ready_condition
    )
    current = await kube.get(OCIREPO, namespace, "app")
    assert condition(current, "FetchFailed")["reason"] == reason
    assert condition(current, "Reconciling")["reason"] == "ProgressingWithRetry"


async def test_layer_selector_extract_and_copy(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/layers"
    other = Blob(OTHER_CONTENT, tar_gz({"other.yaml": "kind: other\n"}))
    flux = Blob(FLUX_CONTENT, tar_gz({"deploy/app.yaml": "replicas: 1\n", "README.md": "hi\n"}))
    digest = await plain.push(repository, ["v1"], [other, flux])
    hex_digest = digest.removeprefix("sha256:")
    ref = {"tag": "v1"}

    # No selector: the first layer, extracted.
    await kube.create(OCIREPO, ocirepository("first", namespace, plain, repository, ref=ref))
    first = await ready(kube, namespace, "first")
    assert await files_of(first, tmp_path / "first") == {"other.yaml": "kind: other\n"}
    assert "observedLayerSelector" not in first["status"]

    # By media type, extracted and archived again with the ignore rules.
    selector = {"mediaType": FLUX_CONTENT, "operation": "extract"}
    await kube.create(
        OCIREPO,
        ocirepository(
            "extract",
            namespace,
            plain,
            repository,
            ref=ref,
            layerSelector=selector,
            ignore="*.md\n",
        ),
    )
    extracted = await ready(kube, namespace, "extract")
    assert await files_of(extracted, tmp_path / "extract") == {"deploy/app.yaml": "replicas: 1\n"}
    assert extracted["status"]["observedLayerSelector"] == selector
    assert extracted["status"]["observedIgnore"] == "*.md\n"

    # Copied: the stored file is the layer blob itself, ignore rules do not apply.
    selector = {"mediaType": FLUX_CONTENT, "operation": "copy"}
    await kube.create(
        OCIREPO,
        ocirepository("copy", namespace, plain, repository, ref=ref, layerSelector=selector),
    )
    copied = await ready(kube, namespace, "copy")
    assert copied["status"]["artifact"]["digest"] == flux.digest
    assert copied["status"]["artifact"]["size"] == len(flux.data)
    assert copied["status"]["artifact"]["path"].endswith(f"/copy/{hex_digest}.tar.gz")
    assert await files_of(copied, tmp_path / "copy") == {
        "deploy/app.yaml": "replicas: 1\n",
        "README.md": "hi\n",
    }

    # A new selector on the same revision builds a new artifact.
    pulls = source_controller.oci.stats["pulls"]
    await kube.patch(
        OCIREPO, namespace, "first", {"spec": {"layerSelector": {"mediaType": FLUX_CONTENT}}}
    )
    rebuilt = await ready(kube, namespace, "first")
    assert source_controller.oci.stats["pulls"] == pulls + 1
    assert rebuilt["status"]["artifact"]["revision"] == first["status"]["artifact"]["revision"]
    assert await files_of(rebuilt, tmp_path / "rebuilt") == {
        "deploy/app.yaml": "replicas: 1\n",
        "README.md": "hi\n",
    }

    # No such layer: a reason and a message to act on.
    await kube.patch(
        OCIREPO, namespace, "first", {"spec": {"layerSelector": {"mediaType": "text/nope"}}}
    )
    missing = await failed(kube, namespace, "first")
    assert missing["reason"] == "OCIArtifactLayerOperationFailed"
    assert missing["message"] == "failed to find layer with media type 'text/nope' in artifact"


async def test_basic_auth_over_https(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    registry, repository = oci_registry.basic, f"{namespace}/private"
    digest = await registry.push(repository, ["latest"], [app_layer(7)])
    username, password = oci_registry.username, oci_registry.password
    await secret(kube, namespace, "tls", oci_registry.tls.secret_data())
    await secret(kube, namespace, "basic", {"username": username, "password": password})
    await secret(
        kube,
        namespace,
        "dockercfg",
        docker_config(f"https://{registry.host}/v1/", username, password),
        "kubernetes.io/dockerconfigjson",
    )
    await secret(kube, namespace, "wrong", {"username": username, "password": "wrong-password-42"})
    # The image pull secrets of a ServiceAccount count too.
    account = {
        "metadata": {"name": "puller", "namespace": namespace},
        "imagePullSecrets": [{"name": "dockercfg"}],
    }
    await kube.create(SERVICE_ACCOUNT, account)
    tls = {"certSecretRef": {"name": "tls"}}
    for name, extra in (
        ("basic", {"secretRef": {"name": "basic"}, **tls}),
        ("dockercfg", {"secretRef": {"name": "dockercfg"}, **tls}),
        ("account", {"serviceAccountName": "puller", **tls}),
        ("wrong", {"secretRef": {"name": "wrong"}, **tls}),
        ("anonymous", tls),
        ("no-ca", {"secretRef": {"name": "basic"}}),
    ):
        await kube.create(OCIREPO, ocirepository(name, namespace, registry, repository, **extra))

    for name in ("basic", "dockercfg", "account"):
        obj = await ready(kube, namespace, name)
        assert obj["status"]["artifact"]["revision"] == f"latest@{digest}"
        assert await files_of(obj, tmp_path / name) == {"deploy/app.yaml": "replicas: 7\n"}
    wrong = await failed(kube, namespace, "wrong")
    assert wrong["reason"] == "AuthenticationFailed", wrong
    assert "refused the credentials" in wrong["message"]
    anonymous = await failed(kube, namespace, "anonymous")
    assert anonymous["reason"] == "AuthenticationFailed", anonymous
    assert "spec.secretRef" in anonymous["message"]
    no_ca = await failed(kube, namespace, "no-ca")
    assert no_ca["reason"] == "OCIArtifactPullFailed", no_ca
    assert "CERTIFICATE_VERIFY_FAILED" in no_ca["message"]
    for obj in (await kube.list(OCIREPO, namespace))["items"]:
        for c in obj["status"]["conditions"]:
            assert password not in c["message"]
            assert "wrong-password-42" not in c["message"]


async def test_token_auth(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    registry, repository = oci_registry.token, f"{namespace}/tokened"
    token_server = oci_registry.token_server
    digest = await registry.push(repository, ["v1"], [app_layer(8)])
    user, password = token_server.username, token_server.password
    await secret(kube, namespace, "good", docker_config(registry.host, user, password))
    await secret(kube, namespace, "wrong", docker_config(registry.host, user, "wrong-password-43"))
    ref = {"tag": "v1"}
    for name in ("good", "wrong"):
        await kube.create(
            OCIREPO,
            ocirepository(name, namespace, registry, repository, ref=ref, secretRef={"name": name}),
        )

    obj = await ready(kube, namespace, "good")
    assert obj["status"]["artifact"]["revision"] == f"v1@{digest}"
    assert await files_of(obj, tmp_path / "good") == {"deploy/app.yaml": "replicas: 8\n"}
    wrong = await failed(kube, namespace, "wrong")
    assert wrong["reason"] == "AuthenticationFailed", wrong
    assert "token server" in wrong["message"]
    assert "wrong-password-43" not in wrong["message"]
    scope = f"repository:{repository}:pull"
    assert any(r.user == user and r.scopes == (scope,) for r in token_server.requests)


async def test_client_certificate(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    registry, repository = oci_registry.mtls, f"{namespace}/mutual"
    digest = await registry.push(repository, ["latest"], [app_layer(9)])
    await secret(kube, namespace, "client", oci_registry.tls.secret_data(client=True))
    await secret(kube, namespace, "ca-only", oci_registry.tls.secret_data())
    await secret(kube, namespace, "half", {"tls.crt": oci_registry.tls.client_cert.read_text()})
    for name in ("client", "ca-only", "half"):
        await kube.create(
            OCIREPO,
            ocirepository(name, namespace, registry, repository, certSecretRef={"name": name}),
        )

    obj = await ready(kube, namespace, "client")
    assert obj["status"]["artifact"]["revision"] == f"latest@{digest}"
    ca_only = await failed(kube, namespace, "ca-only")
    assert ca_only["reason"] == "OCIArtifactPullFailed", ca_only
    half = await failed(kube, namespace, "half")
    assert half["reason"] == "AuthenticationFailed", half
    assert "'tls.crt' and 'tls.key' must be given together" in half["message"]


@pytest.mark.parametrize(
    ("hostile", "text"),
    [
        pytest.param("symlink", "is a symlink to '/etc/passwd'", id="symlink-to-etc-passwd"),
        pytest.param("write-through", "is a symlink to", id="symlink-write-through"),
        pytest.param("traversal", "has a '..' component", id="dot-dot-path"),
        pytest.param("bomb", "unpacks to more than 104857600 bytes", id="gzip-bomb-200MiB"),
    ],
)
async def test_hostile_layers_are_refused(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    tmp_path: Path,
    hostile: str,
    text: str,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/hostile"
    outside = tmp_path / "outside"
    outside.mkdir()
    escape = Path("/tmp") / f"weir-oci-escape-{uuid.uuid4().hex}.yaml"
    layers: dict[str, Callable[[], bytes]] = {
        "symlink": lambda: symlink_tar_gz("passwd.yaml", "/etc/passwd"),
        "write-through": lambda: symlink_tar_gz(
            "deploy", str(outside), {"deploy/pwned.yaml": "pwned: true\n"}
        ),
        "traversal": lambda: traversal_tar_gz("../" * 20 + escape.relative_to("/").as_posix()),
        "bomb": lambda: bomb_tar_gz(200 * 1024 * 1024),
    }
    good = await plain.push(repository, ["good"], [app_layer(1)])
    await plain.push(repository, ["evil"], [Blob(FLUX_CONTENT, layers[hostile]())])
    await kube.create(
        OCIREPO, ocirepository("app", namespace, plain, repository, ref={"tag": "good"})
    )
    before = await ready(kube, namespace, "app")

    await kube.patch(OCIREPO, namespace, "app", {"spec": {"ref": {"tag": "evil"}}})

    ready_condition = await failed(kube, namespace, "app")
    assert ready_condition["reason"] == "OCIArtifactLayerOperationFailed"
    assert ready_condition["message"].startswith("failed to extract layer contents from artifact")
    assert text in ready_condition["message"]
    after = await kube.get(OCIREPO, namespace, "app")
    assert after["status"]["artifact"] == before["status"]["artifact"]
    assert after["status"]["artifact"]["revision"] == f"good@{good}"
    assert condition(after, "FetchFailed")["reason"] == "OCIArtifactLayerOperationFailed"
    # The previous artifact is still served, and nothing was written outside the storage.
    assert await files_of(after, tmp_path / "still") == {"deploy/app.yaml": "replicas: 1\n"}
    assert list(outside.iterdir()) == []
    assert not escape.exists()
    stored = source_controller.storage.root / "ocirepository" / namespace / "app"
    assert sorted(p.name for p in stored.iterdir() if not p.name.startswith(".")) == [
        f"{good.removeprefix('sha256:')}.tar.gz"
    ]


async def test_unchanged_digest_new_push_and_deletion(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    tmp_path: Path,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/moving"
    first_digest = await plain.push(repository, ["latest"], [app_layer(1)])
    await kube.create(OCIREPO, ocirepository("app", namespace, plain, repository))
    first = await ready(kube, namespace, "app")
    stats = source_controller.oci.stats

    # The same digest: looked up, not downloaded again.
    pulls, skipped = stats["pulls"], stats["skipped"]
    await request_reconcile(kube, namespace, "app", "first")
    again = await wait_for_object(kube, OCIREPO, namespace, "app", handled("first"))
    assert (stats["pulls"], stats["skipped"]) == (pulls, skipped + 1)
    assert again["status"]["artifact"] == first["status"]["artifact"]

    # A new push to the tag: a new revision after a reconcile request.
    second_digest = await plain.push(repository, ["latest"], [app_layer(2)])
    assert second_digest != first_digest
    await request_reconcile(kube, namespace, "app", "second")
    newer = await wait_for_object(
        kube, OCIREPO, namespace, "app", revision_is(f"latest@{second_digest}")
    )
    assert stats["pulls"] == pulls + 1
    assert await files_of(newer, tmp_path / "newer") == {"deploy/app.yaml": "replicas: 2\n"}

    # Deleting the object removes its artifacts from storage.
    stored = source_controller.storage.root / "ocirepository" / namespace / "app"
    assert stored.is_dir()
    await kube.delete(OCIREPO, namespace, "app")
    await wait_for_deletion(kube, OCIREPO, namespace, "app")
    assert not stored.exists()


async def test_a_new_revision_is_reported_while_its_artifact_is_built(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/progress"
    await plain.push(repository, ["latest"], [app_layer(1)])
    await kube.create(OCIREPO, ocirepository("app", namespace, plain, repository))
    await ready(kube, namespace, "app")
    since = (await kube.get(OCIREPO, namespace, "app"))["metadata"]["resourceVersion"]

    digest = await plain.push(repository, ["latest"], [app_layer(2)])
    await request_reconcile(kube, namespace, "app", "new")
    revision = f"latest@{digest}"
    written = await conditions_written(
        kube, OCIREPO, namespace, "app", since, revision_is(revision)
    )

    new = f"new revision '{revision}' for '{plain.host}/{repository}:latest'"
    assert_new_revision_reported(written, new)


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        pytest.param(
            {"url": "oci://127.0.0.1:1/app:v1"},
            "URLInvalid",
            "URL must not contain a tag",
            id="tag-in-url",
        ),
        pytest.param(
            {"url": "oci://127.0.0.1:1/App"},
            "URLInvalid",
            "invalid repository name",
            id="uppercase-name",
        ),
        pytest.param(
            {"url": "oci://127.0.0.1:1/app", "verify": {"provider": "cosign"}},
            "VerificationError",
            "not supported yet",
            id="verify",
        ),
        pytest.param(
            {"url": "oci://127.0.0.1:1/app", "provider": "aws"},
            "AuthenticationFailed",
            "not supported yet",
            id="cloud-provider",
        ),
    ],
)
async def test_stalls_on_what_retrying_cannot_fix(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    spec: dict[str, Any],
    reason: str,
    text: str,
) -> None:
    body = {
        "apiVersion": OCIREPO.api_version,
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"interval": "10m", "insecure": True, **spec},
    }
    await kube.create(OCIREPO, body)

    ready_condition = await failed(kube, namespace, "app")

    assert ready_condition["reason"] == reason
    assert text in ready_condition["message"]
    obj = await kube.get(OCIREPO, namespace, "app")
    assert condition(obj, "Stalled")["reason"] == reason
    assert "Reconciling" not in {c["type"] for c in obj["status"]["conditions"]}


async def test_through_an_http_proxy(
    kube: KubeClient,
    namespace: str,
    source_controller: SourceController,
    oci_registry: OCIRegistries,
    http_proxy: TinyProxy,
) -> None:
    plain = oci_registry.plain
    await plain.push(f"{namespace}/app", ["v1.0.0"], [app_layer(1)], annotations=ANNOTATIONS)
    proxy = {"address": http_proxy.address, "username": http_proxy.username}
    await secret(kube, namespace, "proxy", {**proxy, "password": http_proxy.password})
    before = http_proxy.requests_to(plain.port)
    await kube.create(
        OCIREPO,
        ocirepository(
            "app",
            namespace,
            plain,
            f"{namespace}/app",
            ref={"tag": "v1.0.0"},
            proxySecretRef={"name": "proxy"},
        ),
    )
    await ready(kube, namespace, "app")
    assert http_proxy.requests_to(plain.port) > before, "nothing went through the proxy"
