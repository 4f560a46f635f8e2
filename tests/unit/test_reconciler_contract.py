"""What the runtime reads of each kind (interval, retry interval, suspend) and of each
reconciler (per-run state, watches), through the typed contract rather than by field name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllers.api import CustomResource, ObjectMeta
from controllers.reconcile import Reconciler
from kustomize.api_v1 import Kustomization
from kustomize.buildworker import BuildWorkers
from kustomize.kustomization import KustomizationReconciler, KustomizeRunState
from source.api_v1 import Bucket, GitRepository, OCIRepository
from source.bucket import BucketReconciler, BucketRunState
from source.gitrepository import GitRepositoryReconciler, GitRunState
from source.ocirepository import OCIRepositoryReconciler, OCIRunState
from source.storage import ArtifactStorage

SPECS: dict[type[CustomResource], dict[str, Any]] = {
    GitRepository: {"url": "https://example.com/app.git"},
    OCIRepository: {"url": "oci://registry.example.com/app"},
    Bucket: {"bucketName": "app", "endpoint": "s3.example.com"},
    Kustomization: {"sourceRef": {"kind": "GitRepository", "name": "app"}, "prune": True},
}


def make(kind: type[CustomResource], **spec: Any) -> CustomResource:
    body = {"metadata": {"name": "app", "namespace": "apps"}, "spec": {**SPECS[kind], **spec}}
    return kind.model_validate(body)


@pytest.mark.parametrize("kind", [pytest.param(kind, id=kind.__name__) for kind in SPECS])
def test_every_kind_gives_the_runtime_its_interval_and_suspend(
    kind: type[CustomResource],
) -> None:
    running = make(kind, interval="5m")
    suspended = make(kind, interval="1h30m", suspend=True)

    assert (running.interval_seconds, running.suspended) == (300.0, False)
    assert (suspended.interval_seconds, suspended.suspended) == (5400.0, True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"interval": "5m"}, 300.0, id="the-interval-when-unset"),
        pytest.param({"interval": "5m", "retryInterval": "30s"}, 30.0, id="retry-interval"),
    ],
)
def test_a_kustomization_retries_on_its_retry_interval(
    spec: dict[str, Any], expected: float
) -> None:
    assert make(Kustomization, **spec).retry_interval_seconds == expected


@pytest.mark.parametrize(
    "kind",
    [pytest.param(kind, id=kind.__name__) for kind in (GitRepository, OCIRepository, Bucket)],
)
def test_sources_back_off_per_key_after_a_failure(kind: type[CustomResource]) -> None:
    assert make(kind, interval="5m").retry_interval_seconds is None


def test_a_kind_without_those_fields_has_the_runtimes_defaults() -> None:
    bare = CustomResource(metadata=ObjectMeta(name="app"))

    assert (bare.interval_seconds, bare.retry_interval_seconds, bare.suspended) == (
        None,
        None,
        False,
    )


def test_each_reconciler_makes_a_fresh_state_per_run(tmp_path: Path) -> None:
    storage = ArtifactStorage(tmp_path, "127.0.0.1:9090")
    reconcilers: list[tuple[Reconciler[Any], type]] = [
        (GitRepositoryReconciler(storage), GitRunState),
        (OCIRepositoryReconciler(storage), OCIRunState),
        (BucketReconciler(storage), BucketRunState),
        (
            KustomizationReconciler(
                build_workers=BuildWorkers(tmp_path / "worker", allow_remote_bases=True)
            ),
            KustomizeRunState,
        ),
    ]

    for reconciler, state_type in reconcilers:
        first, second = reconciler.new_state(), reconciler.new_state()
        assert type(first) is state_type
        assert first is not second


def test_only_the_kustomization_reconciler_watches_other_objects(tmp_path: Path) -> None:
    storage = ArtifactStorage(tmp_path, "127.0.0.1:9090")
    sources: list[Reconciler[Any]] = [
        GitRepositoryReconciler(storage),
        OCIRepositoryReconciler(storage),
        BucketReconciler(storage),
    ]
    kustomizations = KustomizationReconciler(
        build_workers=BuildWorkers(tmp_path / "worker", allow_remote_bases=True)
    )

    assert [list(r.watches) for r in sources] == [[], [], []]
    watched = [watch.info.kind for watch in kustomizations.watches]
    assert watched == [
        "GitRepository",
        "OCIRepository",
        "Bucket",
        "Kustomization",
        "ConfigMap",
        "Secret",
    ]
    # The ConfigMaps and Secrets only as --watch-configs-label-selector matches them.
    assert [watch.configs for watch in kustomizations.watches][-2:] == [True, True]
