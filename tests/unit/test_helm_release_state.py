"""The release decisions added to Flux's atomic release beyond remediation: a pending release
is unlocked, a release in sync is tested when tests are enabled (and a counted test failure
is remediated), a change of postRenderers or commonMetadata upgrades, and forceAt/resetAt
requests are handled once each, as fluxcd/pkg's HandleAnnotationRequest does."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.reconcile import REQUESTED_AT
from helm.api_v2 import FORCE_REQUEST_ANNOTATION, HelmRelease
from helm.history import snapshot
from helm.state import handle_request, next_action, post_rendering_digests
from tests.unit.test_helmrelease import CHART, VALUES_DIGEST, helmrelease, release

DEPLOYED = release(1, "deployed")


def in_sync(spec: dict[str, Any] | None = None, **status: Any) -> HelmRelease:
    """A HelmRelease whose latest snapshot is DEPLOYED, made with the same values."""
    entry = snapshot(DEPLOYED, "install").to_dict()
    entry["configDigest"] = VALUES_DIGEST
    tested = status.pop("test_hooks", None)
    if tested is not None:
        entry["testHooks"] = tested
    return helmrelease(spec, history=[entry], observedGeneration=1, **status)


def test_a_release_in_sync_needs_nothing() -> None:
    assert next_action(in_sync(), DEPLOYED, CHART, VALUES_DIGEST) == "none"


@pytest.mark.parametrize("pending", ["pending-install", "pending-upgrade", "pending-rollback"])
def test_a_pending_release_is_unlocked_first(pending: str) -> None:
    assert next_action(in_sync(), release(2, pending), CHART, VALUES_DIGEST) == "unlock"


def test_force_upgrades_a_release_in_sync_and_goes_past_exhausted_retries() -> None:
    assert next_action(in_sync(), DEPLOYED, CHART, VALUES_DIGEST, force=True) == "upgrade"
    exhausted = in_sync({"upgrade": {"remediation": {"retries": 0}}}, upgradeFailures=1)
    new_values = "sha256:" + "0" * 64
    assert next_action(exhausted, DEPLOYED, CHART, new_values) == "stalled"
    assert next_action(exhausted, DEPLOYED, CHART, new_values, force=True) == "upgrade"


def test_tests_run_once_then_a_counted_failure_is_remediated() -> None:
    spec = {"test": {"enable": True}, "install": {"remediation": {"retries": 2}}}
    assert next_action(in_sync(spec), DEPLOYED, CHART, VALUES_DIGEST) == "test"

    passed = {"t": {"phase": "Succeeded"}}
    done = in_sync(spec, test_hooks=passed)
    assert next_action(done, DEPLOYED, CHART, VALUES_DIGEST) == "none"

    failed = {"t": {"phase": "Failed"}}
    counted = in_sync(
        spec, test_hooks=failed, lastAttemptedReleaseAction="install", installFailures=1
    )
    assert next_action(counted, DEPLOYED, CHART, VALUES_DIGEST) == "uninstall"

    ignored = in_sync(
        {**spec, "test": {"enable": True, "ignoreFailures": True}},
        test_hooks=failed,
        lastAttemptedReleaseAction="install",
        installFailures=1,
    )
    assert next_action(ignored, DEPLOYED, CHART, VALUES_DIGEST) == "none"


def test_a_new_generation_with_other_post_renderers_upgrades() -> None:
    patched = {"postRenderers": [{"kustomize": {"images": [{"name": "nginx", "newTag": "2"}]}}]}
    obj = in_sync(patched)
    obj.metadata.generation = 2
    assert next_action(obj, DEPLOYED, CHART, VALUES_DIGEST) == "upgrade"

    # Recorded after the run that saw them: the next one is in sync.
    obj.status.observed_post_renderers_digest, obj.status.observed_common_metadata_digest = (
        post_rendering_digests(obj)
    )
    assert next_action(obj, DEPLOYED, CHART, VALUES_DIGEST) == "none"

    metadata = in_sync({"commonMetadata": {"labels": {"team": "a"}}})
    metadata.metadata.generation = 2
    assert next_action(metadata, DEPLOYED, CHART, VALUES_DIGEST) == "upgrade"
    # The same generation: not looked at (Flux records the digests after every run).
    metadata.metadata.generation = 1
    assert next_action(metadata, DEPLOYED, CHART, VALUES_DIGEST) == "none"


def requested(force: str, at: str, **status: Any) -> HelmRelease:
    obj = helmrelease(None, **status)
    obj.metadata.annotations = {FORCE_REQUEST_ANNOTATION: force, REQUESTED_AT: at}
    return obj


def test_a_force_request_is_handled_once_and_only_with_a_matching_reconcile_request() -> None:
    obj = requested("t1", "t1")
    assert handle_request(obj, FORCE_REQUEST_ANNOTATION, "last_handled_force_at")
    assert obj.status.last_handled_force_at == "t1"
    assert not handle_request(obj, FORCE_REQUEST_ANNOTATION, "last_handled_force_at")

    # Another requestedAt: not handled, but recorded as seen.
    other = requested("t2", "t3")
    assert not handle_request(other, FORCE_REQUEST_ANNOTATION, "last_handled_force_at")
    assert other.status.last_handled_force_at == "t2"

    # A reconcile request already handled: not again.
    old = requested("t4", "t4", lastHandledReconcileAt="t4")
    assert not handle_request(old, FORCE_REQUEST_ANNOTATION, "last_handled_force_at")
