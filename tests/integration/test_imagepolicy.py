"""ImagePolicies choosing from real scans (docker-registry, the real API server): semver ranges
with and without prereleases, alphabetical and numerical orders with tag filters, digests,
a newer tag moving the policy, cross-namespace access, and what cannot work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.kinds import NAMESPACE
from controllers.kube import KubeClient
from controllers.reconcile import Reconciler
from image_automation.api_v1 import ImagePolicy
from image_automation.imagepolicy import ImagePolicyReconciler
from image_automation.imagerepository import ImageRepositoryReconciler
from image_automation.tags import TagStore
from tests.integration.harness import is_ready, options, running, wait_for_object
from tests.integration.test_imagerepository import (
    IMGREPO,
    NAME,
    PAGE_SIZE,
    TIMESTAMP_TAGS,
    VERSION_TAGS,
    condition,
    image_repository,
    push_tags,
    request_reconcile,
)
from tests.registry import FLUX_CONTENT, Blob, OCIRegistries, RegistryServer, tar_gz

pytestmark = pytest.mark.integration

IMGPOL = ImagePolicy.info


def image_policy(name: str, namespace: str, policy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": IMGPOL.api_version,
        "kind": IMGPOL.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"imageRepositoryRef": {"name": "app"}, "policy": policy, **spec},
    }


def latest(tag: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ref = (obj.get("status") or {}).get("latestRef") or {}
        return is_ready(obj) and ref.get("tag") == tag

    return check


def not_ready(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return ready.get("status") == "False" and ready.get("reason") == reason

    return check


@asynccontextmanager
async def both(control_plane: ControlPlane, namespace: str, **opts: Any) -> AsyncIterator[TagStore]:
    """Both reconcilers of ``python -m image_automation`` sharing one tag store."""
    store = TagStore(field_manager=NAME)
    reconcilers: list[Reconciler[Any, Any]] = [
        ImageRepositoryReconciler(store, page_size=PAGE_SIZE),
        ImagePolicyReconciler(store, requeue_dependency=1.0),
    ]
    async with running(options(control_plane, namespace, name=NAME, **opts), reconcilers):
        yield store


@pytest.fixture
async def controllers(control_plane: ControlPlane, namespace: str) -> AsyncIterator[TagStore]:
    async with both(control_plane, namespace) as store:
        yield store


async def test_policies_pick_the_expected_tags_and_follow_new_ones(
    kube: KubeClient, namespace: str, oci_registry: OCIRegistries, controllers: TagStore
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await push_tags(plain, repository, [*VERSION_TAGS, *TIMESTAMP_TAGS, "latest"])
    await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))
    image = f"{plain.host}/{repository}"

    policies = {
        "stable": ({"semver": {"range": ">=1.0.0 <2.0.0"}}, {}, "1.1.0"),
        "prereleases": ({"semver": {"range": ">=1.0.0-0"}}, {}, "2.0.0"),
        "rc": ({"semver": {"range": ">=1.2.0-0 <2.0.0"}}, {}, "1.2.0-rc.1"),
        "alphabetical": (
            {"alphabetical": {"order": "desc"}},
            {"filterTags": {"pattern": "^main-"}},
            "main-0a0b0c-1700000200",  # desc: the first in byte order
        ),
        "timestamp": (
            {"numerical": {"order": "asc"}},
            {"filterTags": {"pattern": r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "extract": "$ts"}},
            "main-0a0b0c-1700000200",
        ),
    }
    for name, (policy, spec, _) in policies.items():
        await kube.create(IMGPOL, image_policy(name, namespace, policy, **spec))
    for name, (_, _, tag) in policies.items():
        obj = await wait_for_object(kube, IMGPOL, namespace, name, latest(tag), timeout=60)
        assert obj["status"]["latestRef"] == {"name": image, "tag": tag}
        assert condition(obj, "Ready")["message"] == (
            f"Latest image tag for {image} resolved to {tag}"
        )

    # A newer tag, once scanned, moves the policies it qualifies for; the previous is kept.
    await push_tags(plain, repository, ["1.3.0", "main-ffffff-1700000300"])
    await request_reconcile(kube, namespace, "app", "rescan")
    stable = await wait_for_object(kube, IMGPOL, namespace, "stable", latest("1.3.0"), timeout=60)
    assert stable["status"]["observedPreviousRef"] == {"name": image, "tag": "1.1.0"}
    assert condition(stable, "Ready")["message"] == (
        f"Latest image tag for {image} resolved to 1.3.0 (previously {image}:1.1.0)"
    )
    await wait_for_object(
        kube, IMGPOL, namespace, "timestamp", latest("main-ffffff-1700000300"), timeout=60
    )
    prereleases = await kube.get(IMGPOL, namespace, "prereleases")
    assert prereleases["status"]["latestRef"]["tag"] == "2.0.0"


async def test_digests_are_reflected_when_asked(
    kube: KubeClient, namespace: str, oci_registry: OCIRegistries, controllers: TagStore
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await push_tags(plain, repository, ["1.0.0", "2.0.0"])
    layer = Blob(FLUX_CONTENT, tar_gz({"app.yaml": "version: 1.1.0\n"}))
    digest = await plain.push(repository, ["1.1.0"], [layer])
    await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))
    semver = {"semver": {"range": "1.x"}}
    await kube.create(IMGPOL, image_policy("never", namespace, semver))
    await kube.create(
        IMGPOL, image_policy("once", namespace, semver, digestReflectionPolicy="IfNotPresent")
    )
    once = await wait_for_object(kube, IMGPOL, namespace, "once", latest("1.1.0"), timeout=60)
    never = await wait_for_object(kube, IMGPOL, namespace, "never", latest("1.1.0"), timeout=60)

    assert once["status"]["latestRef"]["digest"] == digest
    assert "digest" not in never["status"]["latestRef"]
    assert condition(once, "Ready")["message"].endswith(f"resolved to 1.1.0 with digest {digest}")


async def test_a_policy_waits_for_a_scan_and_refuses_what_cannot_work(
    kube: KubeClient, namespace: str, oci_registry: OCIRegistries, controllers: TagStore
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await kube.create(IMGPOL, image_policy("early", namespace, {"semver": {"range": "1.x"}}))
    missing = await wait_for_object(
        kube, IMGPOL, namespace, "early", not_ready("DependencyNotReady"), timeout=30
    )
    assert "referenced ImageRepository does not exist" in condition(missing, "Ready")["message"]

    await push_tags(plain, repository, VERSION_TAGS)
    await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))
    await wait_for_object(kube, IMGPOL, namespace, "early", latest("1.1.0"), timeout=60)

    await kube.create(IMGPOL, image_policy("bad", namespace, {"semver": {"range": "not-a-range"}}))
    bad = await wait_for_object(
        kube, IMGPOL, namespace, "bad", lambda o: condition(o, "Stalled").get("status") == "True"
    )
    assert condition(bad, "Stalled")["reason"] == "InvalidPolicy"

    await kube.create(IMGPOL, image_policy("none", namespace, {"semver": {"range": ">=9.0.0"}}))
    none = await wait_for_object(kube, IMGPOL, namespace, "none", not_ready("Failure"), timeout=30)
    assert "unable to determine latest version" in condition(none, "Ready")["message"]


async def test_another_namespace_needs_its_access_from(
    kube: KubeClient, namespace: str, oci_registry: OCIRegistries, control_plane: ControlPlane
) -> None:
    plain, repository = oci_registry.plain, f"{namespace}/app"
    await push_tags(plain, repository, VERSION_TAGS)
    other = f"{namespace}-team"
    await kube.create(NAMESPACE, {"metadata": {"name": other, "labels": {"team": "a"}}})
    try:
        async with both(control_plane, namespace, watch_all_namespaces=True):
            await _cross_namespace(kube, namespace, other, plain, repository)
    finally:
        await kube.delete(NAMESPACE, None, other)


async def _cross_namespace(
    kube: KubeClient, namespace: str, other: str, plain: RegistryServer, repository: str
) -> None:
    await kube.create(IMGREPO, image_repository("app", namespace, plain, repository))
    await wait_for_object(kube, IMGREPO, namespace, "app", is_ready)
    body = image_policy("shared", other, {"semver": {"range": "1.x"}})
    body["spec"]["imageRepositoryRef"]["namespace"] = namespace
    await kube.create(IMGPOL, body)
    denied = await wait_for_object(
        kube, IMGPOL, other, "shared", not_ready("AccessDenied"), timeout=30
    )
    assert "missing ACL labels on 'accessFrom'" in condition(denied, "Ready")["message"]

    allowed = {"accessFrom": {"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}}
    await kube.patch(IMGREPO, namespace, "app", {"spec": allowed})
    await wait_for_object(kube, IMGPOL, other, "shared", latest("1.1.0"), timeout=60)
    await kube.delete(IMGPOL, other, "shared")
