"""ImageRepository scans against real registries (docker-registry) and the real API server: tags
listed across pages, exclusion, Flux's scan summary, the stored full list, authentication, and a
registry that refuses or is gone leaving the previous scan in place."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from image_automation.api_v1 import ImageRepository
from image_automation.imagerepository import ImageRepositoryReconciler
from image_automation.tags import TagStore, config_map_name
from tests.integration.harness import (
    is_ready,
    options,
    running,
    wait_for_deletion,
    wait_for_object,
)
from tests.registry import FLUX_CONTENT, Blob, OCIRegistries, RegistryServer, tar_gz

pytestmark = pytest.mark.integration

IMGREPO = ImageRepository.info
NAME = "image-automation-controller"
VERSION_TAGS = ["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0"]
TIMESTAMP_TAGS = ["main-a1b2c3-1700000000", "main-d4e5f6-1700000100", "main-0a0b0c-1700000200"]
SIGNATURE_TAG = "sha256-0123456789abcdef.sig"
# Small pages, so that every scan here follows the registry's Link header several times.
PAGE_SIZE = 3


def image_repository(
    name: str, namespace: str, server: RegistryServer, repository: str, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"image": f"{server.host}/{repository}", "interval": "10m", **spec}
    if server.insecure:
        body["insecure"] = True
    return {
        "apiVersion": IMGREPO.api_version,
        "kind": IMGREPO.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


async def push_tags(server: RegistryServer, repository: str, tags: list[str]) -> None:
    layer = Blob(FLUX_CONTENT, tar_gz({"app.yaml": f"repository: {repository}\n"}))
    await server.push(repository, tags, [layer])


def flux_revision(tags: list[str]) -> str:
    lines = "".join(f"{tag}\n" for tag in sorted(tags, reverse=True))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def not_ready_since(value: str) -> Callable[[dict[str, Any]], bool]:
    """Ready=False once the run for the reconcile request ``value`` has ended."""

    def check(obj: dict[str, Any]) -> bool:
        handled = (obj.get("status") or {}).get("lastHandledReconcileAt") == value
        return handled and condition(obj, "Ready").get("status") == "False"

    return check


async def request_reconcile(kube: KubeClient, namespace: str, name: str, value: str) -> None:
    patch = {"metadata": {"annotations": {REQUESTED_AT: value}}}
    await kube.patch(IMGREPO, namespace, name, patch)


async def secret(kube: KubeClient, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {"metadata": {"name": name, "namespace": namespace}, "data": encoded}
    if await kube.get_or_none(SECRET, namespace, name) is None:
        await kube.create(SECRET, body)
    else:
        await kube.patch(SECRET, namespace, name, {"data": encoded})


def ca_pem(registries: OCIRegistries) -> str:
    return registries.tls.ca.read_text()


def docker_config(host: str, username: str, password: str) -> dict[str, str]:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {".dockerconfigjson": json.dumps({"auths": {host: {"auth": auth}}})}


class ImageController:
    """The ImageRepository reconciler with its tag store, as ``python -m image_automation``
    runs them; a new one is a restarted process (nothing kept in memory)."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self.opts = options(control_plane, namespace, name=NAME)
        self.store = TagStore(field_manager=NAME)
        self.reconciler = ImageRepositoryReconciler(self.store, page_size=PAGE_SIZE)


@pytest.fixture
async def image_controller(
    control_plane: ControlPlane, namespace: str
) -> AsyncIterator[ImageController]:
    controller = ImageController(control_plane, namespace)
    async with running(controller.opts, [controller.reconciler]):
        yield controller


async def test_scan_lists_every_page_excludes_signatures_and_stores_the_full_list(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    image_controller: ImageController,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await push_tags(plain, repository, [*VERSION_TAGS, *TIMESTAMP_TAGS, SIGNATURE_TAG])
    await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))

    obj = await wait_for_object(kube, IMGREPO, namespace, "app", is_ready)

    kept = VERSION_TAGS + TIMESTAMP_TAGS  # 7 tags: three pages of three
    status = obj["status"]
    assert status["canonicalImageName"] == f"{plain.host}/{repository}"
    assert status["observedExclusionList"] == [r"^.*\.sig$"]
    result = status["lastScanResult"]
    assert result["tagCount"] == len(kept)
    assert result["revision"] == flux_revision(kept)
    assert result["latestTags"] == sorted(kept, reverse=True)[:10]
    assert result["scanTime"]
    ready = condition(obj, "Ready")
    assert ready["reason"] == "ReconciliationSucceeded"
    assert ready["message"] == (
        f"successful scan: found {len(kept)} tags with checksum {flux_revision(kept)}"
    )

    # The full list, as the ImagePolicy reconciler reads it: in this process, and from the
    # ConfigMap the ImageRepository owns (what another process would read).
    for store in (image_controller.store, TagStore()):
        scan = await store.tags_of(kube, namespace, "app", revision=result["revision"])
        assert scan is not None
        assert scan.tags == tuple(sorted(kept, reverse=True))
        assert scan.revision == result["revision"]
        assert scan.scan_time == result["scanTime"]
    config_map = await kube.get(CONFIG_MAP, namespace, config_map_name("app"))
    [owner] = config_map["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "ImageRepository",
        "app",
        obj["metadata"]["uid"],
    )


async def test_more_tags_than_pages_are_followed_to_the_end(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    image_controller: ImageController,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/many"
    tags = [f"build-{number:03d}" for number in range(40)]
    await push_tags(plain, repository, tags)
    await kube.create(IMGREPO, image_repository("many", namespace, plain, repository))

    obj = await wait_for_object(kube, IMGREPO, namespace, "many", is_ready)

    assert obj["status"]["lastScanResult"]["tagCount"] == 40
    assert obj["status"]["lastScanResult"]["revision"] == flux_revision(tags)
    scan = await image_controller.store.tags_of(kube, namespace, "many")
    assert scan is not None
    assert set(scan.tags) == set(tags)


async def test_refused_credentials_fail_with_an_actionable_message_and_keep_the_scan(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    image_controller: ImageController,
) -> None:
    basic, repository = oci_registry.basic, f"{namespace}/private"
    await push_tags(basic, repository, VERSION_TAGS)
    await secret(kube, namespace, "registry-ca", {"ca.crt": ca_pem(oci_registry)})
    creds = docker_config(basic.host, oci_registry.username, oci_registry.password)
    await secret(kube, namespace, "registry-auth", creds)
    body = image_repository(
        "private",
        namespace,
        basic,
        repository,
        secretRef={"name": "registry-auth"},
        certSecretRef={"name": "registry-ca"},
    )
    await kube.create(IMGREPO, body)
    scanned = await wait_for_object(kube, IMGREPO, namespace, "private", is_ready)
    previous = scanned["status"]["lastScanResult"]
    assert previous["tagCount"] == len(VERSION_TAGS)

    wrong = docker_config(basic.host, oci_registry.username, "not-the-password")
    await secret(kube, namespace, "registry-auth", wrong)
    await request_reconcile(kube, namespace, "private", "after-password-change")
    failed = await wait_for_object(
        kube, IMGREPO, namespace, "private", not_ready_since("after-password-change")
    )

    ready = condition(failed, "Ready")
    assert ready["reason"] == "ReadOperationFailed"
    assert ready["message"].startswith("scan failed: ")
    assert "refused the credentials (HTTP 401)" in ready["message"]
    assert "not-the-password" not in json.dumps(failed)
    assert failed["status"]["lastScanResult"] == previous
    scan = await image_controller.store.tags_of(kube, namespace, "private")
    assert scan is not None
    assert scan.revision == previous["revision"]


async def test_anonymous_access_refused_names_the_field_to_set(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    image_controller: ImageController,
) -> None:
    basic, repository = oci_registry.basic, f"{namespace}/private"
    await push_tags(basic, repository, VERSION_TAGS)
    await secret(kube, namespace, "registry-ca", {"ca.crt": ca_pem(oci_registry)})
    body = image_repository(
        "anonymous", namespace, basic, repository, certSecretRef={"name": "registry-ca"}
    )
    await kube.create(IMGREPO, body)

    failed = await wait_for_object(
        kube,
        IMGREPO,
        namespace,
        "anonymous",
        lambda obj: condition(obj, "Ready").get("status") == "False",
    )

    message = condition(failed, "Ready")["message"]
    assert "the registry requires authentication" in message
    assert "set spec.secretRef" in message
    assert "lastScanResult" not in failed["status"]


async def test_a_registry_that_is_down_keeps_the_previous_scan(
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    image_controller: ImageController,
) -> None:
    server = RegistryServer("doomed", tmp_path / "registry")
    server.start()
    try:
        await push_tags(server, "team/app", VERSION_TAGS)
        await kube.create(IMGREPO, image_repository("app", namespace, server, "team/app"))
        scanned = await wait_for_object(kube, IMGREPO, namespace, "app", is_ready)
    finally:
        server.stop()
    previous = scanned["status"]["lastScanResult"]

    await request_reconcile(kube, namespace, "app", "registry-gone")
    failed = await wait_for_object(
        kube, IMGREPO, namespace, "app", not_ready_since("registry-gone")
    )

    ready = condition(failed, "Ready")
    assert ready["reason"] == "ReadOperationFailed"
    assert ready["message"].startswith(f"scan failed: GET http://{server.host}/v2/team/app/tags/")
    assert "ConnectError" in ready["message"]
    assert failed["status"]["lastScanResult"] == previous
    assert condition(failed, "Reconciling")["reason"] == "ProgressingWithRetry"


async def test_a_restarted_controller_keeps_the_scan_without_scanning_again(
    kube: KubeClient,
    control_plane: ControlPlane,
    namespace: str,
    oci_registry: OCIRegistries,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await push_tags(plain, repository, VERSION_TAGS)
    first = ImageController(control_plane, namespace)
    async with running(first.opts, [first.reconciler]):
        await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))
        scanned = await wait_for_object(kube, IMGREPO, namespace, "app", is_ready)
    assert first.reconciler.stats["scans"] == 1

    # Meanwhile the registry has a new tag: a restarted controller that lost the scan would
    # scan again and find it.
    await push_tags(plain, repository, ["3.0.0"])
    second = ImageController(control_plane, namespace)
    async with running(second.opts, [second.reconciler]):
        # A new generation that asks for no scan (not the image, not the exclusion list).
        await kube.patch(IMGREPO, namespace, "app", {"spec": {"timeout": "30s"}})
        current = await wait_for_object(
            kube,
            IMGREPO,
            namespace,
            "app",
            lambda obj: is_ready(obj) and obj["metadata"]["generation"] == 2,
        )
        scan = await second.store.tags_of(kube, namespace, "app")
    assert second.reconciler.stats["scans"] == 0
    assert current["status"]["lastScanResult"] == scanned["status"]["lastScanResult"]
    assert scan is not None
    assert scan.tags == tuple(sorted(VERSION_TAGS, reverse=True))


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        pytest.param(
            {"image": "ghcr.io/app:1.0.0"},
            "ImageURLInvalid",
            "image 'ghcr.io/app:1.0.0' should not include a tag; remove ':1.0.0'",
            id="tag",
        ),
        pytest.param(
            {"image": "https://ghcr.io/app"},
            "ImageURLInvalid",
            "image 'https://ghcr.io/app' should not include URL scheme; remove 'https://'",
            id="scheme",
        ),
        pytest.param(
            {"image": "ghcr.io/app", "provider": "aws"},
            "AuthenticationFailed",
            "failed to configure authentication options: provider 'aws' is not supported yet",
            id="provider",
        ),
    ],
)
async def test_what_no_retry_can_fix_stalls(
    kube: KubeClient,
    namespace: str,
    image_controller: ImageController,
    spec: dict[str, str],
    reason: str,
    message: str,
) -> None:
    body = {
        "apiVersion": IMGREPO.api_version,
        "kind": IMGREPO.kind,
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"interval": "10m", **spec},
    }
    await kube.create(IMGREPO, body)

    obj = await wait_for_object(
        kube, IMGREPO, namespace, "bad", lambda o: condition(o, "Stalled").get("status") == "True"
    )

    assert condition(obj, "Stalled")["reason"] == reason
    assert condition(obj, "Ready")["message"].startswith(message)
    assert image_controller.reconciler.stats["scans"] == 0


async def test_deleting_the_repository_removes_its_stored_scan(
    kube: KubeClient,
    namespace: str,
    oci_registry: OCIRegistries,
    image_controller: ImageController,
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await push_tags(plain, repository, VERSION_TAGS)
    await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))
    await wait_for_object(kube, IMGREPO, namespace, "app", is_ready)
    assert await kube.get_or_none(CONFIG_MAP, namespace, config_map_name("app")) is not None

    await kube.delete(IMGREPO, namespace, "app")

    await wait_for_deletion(kube, IMGREPO, namespace, "app")
    assert await kube.get_or_none(CONFIG_MAP, namespace, config_map_name("app")) is None
    assert await image_controller.store.tags_of(kube, namespace, "app") is None
