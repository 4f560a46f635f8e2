"""The HelmRelease reconciler's decisions: the next release action, the settings refused, the
HelmChart made from the template, the digests and snapshots kept in status."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import helm.__main__ as helm_main
from controllers.target import TargetOptions, target_options
from helm.api_v2 import HelmRelease, Snapshot
from helm.chart import (
    ChartMetadata,
    ChartNotReady,
    InvalidChart,
    artifact_of,
    chart_metadata,
    helm_chart_template,
    releases_of_changed_chart,
)
from helm.client import Release, install_options_json, upgrade_options_json
from helm.helmrelease import cross_namespace_reference
from helm.history import config_digest, kube_time, release_digest, snapshot, truncate
from helm.options import install_options, upgrade_options
from helm.settings import unsupported_settings
from helm.state import must_reinstall, next_action

CHART = ChartMetadata("podinfo", "6.0.0")
VALUES_DIGEST = config_digest({"replicas": 2})


def helmrelease(spec: dict[str, Any] | None = None, **status: Any) -> HelmRelease:
    return HelmRelease.from_dict(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps", "generation": 1},
            "spec": {
                "interval": "5m",
                "chart": {
                    "spec": {
                        "chart": "podinfo",
                        "version": "6.x",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                    }
                },
                **(spec or {}),
            },
            "status": status,
        }
    )


def release(version: int = 1, status: str = "deployed", **changes: Any) -> Release:
    fields: dict[str, Any] = {
        "name": "app",
        "namespace": "apps",
        "version": version,
        "status": status,
        "chart_name": "podinfo",
        "chart_version": "6.0.0",
        "app_version": "6.0.0",
        "description": "Install complete",
        "first_deployed": "2026-12-07T21:00:00.123456789+01:00",
        "last_deployed": "2026-12-07T21:00:00.123456789+01:00",
        "notes": "",
        "manifest": "---\nkind: ConfigMap\n",
        "hooks": (),
        "values": {"replicas": 2},
    }
    fields.update(changes)
    return Release(**fields)


def history_of(*releases: Release) -> list[dict[str, Any]]:
    return [snapshot(r, "install").to_dict() for r in releases]


@pytest.mark.parametrize(
    ("status", "stored", "chart", "digest", "expected"),
    [
        pytest.param({}, None, CHART, VALUES_DIGEST, "install", id="absent"),
        pytest.param(
            {"history": history_of(release())},
            release(status="uninstalled"),
            CHART,
            VALUES_DIGEST,
            "install",
            id="uninstalled-with-history",
        ),
        pytest.param(
            {"installFailures": 1, "lastAttemptedReleaseAction": "install"},
            None,
            CHART,
            VALUES_DIGEST,
            "stalled",
            id="absent-after-failed-install",
        ),
        pytest.param({}, release(), CHART, VALUES_DIGEST, "upgrade", id="unmanaged"),
        pytest.param(
            {"history": history_of(release(version=1))},
            release(version=2),
            CHART,
            VALUES_DIGEST,
            "upgrade",
            id="someone-else-upgraded",
        ),
        pytest.param(
            {"history": history_of(release())},
            release(),
            CHART,
            VALUES_DIGEST,
            "none",
            id="in-sync",
        ),
        pytest.param(
            {"history": history_of(release())},
            release(),
            ChartMetadata("podinfo", "6.1.0"),
            VALUES_DIGEST,
            "upgrade",
            id="chart-version",
        ),
        pytest.param(
            {"history": history_of(release())},
            release(),
            CHART,
            config_digest({"replicas": 3}),
            "upgrade",
            id="values",
        ),
        pytest.param(
            {
                "history": history_of(release(status="failed")),
                "lastAttemptedReleaseAction": "upgrade",
                "upgradeFailures": 1,
            },
            release(status="failed"),
            CHART,
            VALUES_DIGEST,
            "stalled",
            id="failed-upgrade-not-retried",
        ),
        pytest.param(
            {
                "history": history_of(release(status="failed")),
                "lastAttemptedReleaseAction": "upgrade",
            },
            release(status="failed"),
            CHART,
            VALUES_DIGEST,
            "upgrade",
            id="failed-desired-state-changed",
        ),
    ],
)
def test_next_action(
    status: dict[str, Any],
    stored: Release | None,
    chart: ChartMetadata,
    digest: str,
    expected: str,
) -> None:
    assert next_action(helmrelease(**status), stored, chart, digest) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, [], id="none"),
        pytest.param(
            {
                "install": {
                    "remediation": {"retries": 3},
                    "crds": "Create",
                    "disableSchemaValidation": True,
                    "replace": True,
                },
                "upgrade": {
                    "remediation": {"strategy": "uninstall", "remediateLastFailure": True},
                    "strategy": {"name": "RetryOnFailure", "retryInterval": "1m"},
                    "serverSideApply": "auto",
                    "disableSchemaValidation": True,
                    "preserveValues": True,
                    "chartNameChangeStrategy": "Reinstall",
                },
                "driftDetection": {"mode": "disabled"},
                "test": {"enable": False},
                "rollback": {"cleanupOnFail": True},
                "uninstall": {"keepHistory": True},
                "waitStrategy": {"name": "poller"},
                "serviceAccountName": "deployer",
                "kubeConfig": {"secretRef": {"name": "remote", "key": "value.yaml"}},
            },
            [],
            id="off-defaults-and-implemented",
        ),
        pytest.param(
            {
                "targetNamespace": "elsewhere",
                "serviceAccountName": "deployer",
                "kubeConfig": {"configMapRef": {"name": "cluster"}},
                "postRenderers": [{"kustomize": {"images": [{"name": "x"}]}}],
                "test": {"enable": True},
                "driftDetection": {"mode": "warn"},
                "install": {"remediation": {"retries": 3}, "crds": "CreateReplace"},
                "upgrade": {"remediation": {"strategy": "uninstall"}, "crds": "CreateReplace"},
                "waitStrategy": {"name": "legacy"},
            },
            # postRenderers, tests and drift detection are implemented: not named.
            [
                "spec.targetNamespace (other than the storage namespace)",
                "spec.kubeConfig.configMapRef",
                "spec.waitStrategy.name",
                "spec.install.crds",
                "spec.upgrade.crds",
            ],
            id="refused",
        ),
    ],
)
def test_unsupported_settings(spec: dict[str, Any], expected: list[str]) -> None:
    assert unsupported_settings(helmrelease(spec)) == expected


def test_helm_chart_template_is_fluxs_with_owner_labels() -> None:
    obj = helmrelease(
        {
            "chart": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {
                    "chart": "podinfo",
                    "version": "6.x",
                    "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "src"},
                    "valuesFiles": ["values-prod.yaml"],
                },
            }
        }
    )
    assert helm_chart_template(obj) == {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {
            "name": "apps-app",
            "namespace": "src",
            "labels": {
                "team": "a",
                "helm.toolkit.fluxcd.io/name": "app",
                "helm.toolkit.fluxcd.io/namespace": "apps",
            },
            "annotations": {"note": "x"},
        },
        "spec": {
            "chart": "podinfo",
            "version": "6.x",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            "interval": "5m",
            "reconcileStrategy": "ChartVersion",
            "valuesFiles": ["values-prod.yaml"],
        },
    }


def chart_object(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "apps-app", "namespace": "apps", "generation": 2},
        "status": status,
    }


READY = {"type": "Ready", "status": "True", "reason": "ChartPullSucceeded", "message": "ok"}
ARTIFACT = {"revision": "6.0.0", "digest": "sha256:ab", "url": "http://x/c.tgz"}


@pytest.mark.parametrize(
    ("chart", "problem"),
    [
        pytest.param(
            chart_object(observedGeneration=2, conditions=[READY], artifact=ARTIFACT),
            None,
            id="ready",
        ),
        pytest.param(
            chart_object(observedGeneration=1, conditions=[READY], artifact=ARTIFACT),
            "latest generation of object has not been reconciled",
            id="old-generation",
        ),
        pytest.param(
            chart_object(
                observedGeneration=2,
                conditions=[
                    {"type": "Ready", "status": "False", "reason": "X", "message": "no"},
                    {"type": "Stalled", "status": "True", "reason": "X", "message": "bad spec"},
                ],
            ),
            "bad spec",
            id="stalled",
        ),
        pytest.param(
            chart_object(observedGeneration=2, conditions=[READY]),
            "does not have an artifact",
            id="no-artifact",
        ),
    ],
)
def test_artifact_of(chart: dict[str, Any], problem: str | None) -> None:
    if problem is None:
        assert artifact_of(chart) == ARTIFACT
        return
    with pytest.raises(ChartNotReady) as caught:
        artifact_of(chart)
    assert str(caught.value) == f"HelmChart 'apps/apps-app' is not ready: {problem}"


def test_a_changed_chart_requeues_the_releases_using_it() -> None:
    old = chart_object(observedGeneration=2, conditions=[READY], artifact=ARTIFACT)
    new = chart_object(
        observedGeneration=2, conditions=[READY], artifact={**ARTIFACT, "revision": "6.1.0"}
    )
    releases = [
        helmrelease(helmChart="apps/apps-app").to_dict(),  # app: by its status
        {
            "metadata": {"name": "ref", "namespace": "apps"},
            "spec": {"chartRef": {"kind": "HelmChart", "name": "apps-app"}},
        },
        {
            "metadata": {"name": "other", "namespace": "apps"},
            "spec": {"chartRef": {"kind": "HelmChart", "name": "else"}},
        },
    ]
    assert releases_of_changed_chart(old, new, releases) == ["apps/app", "apps/ref"]
    assert releases_of_changed_chart(old, old, releases) == []


def test_config_digest_is_the_sorted_yaml() -> None:
    text = b"a:\n  c: 3\n  d: 2\nb:\n- x\n"
    assert config_digest({"b": ["x"], "a": {"d": 2, "c": 3}}) == (
        f"sha256:{hashlib.sha256(text).hexdigest()}"
    )
    assert config_digest({}) == f"sha256:{hashlib.sha256(b'').hexdigest()}"


def test_snapshot_of_a_release() -> None:
    entry = snapshot(release(), "install")
    assert entry.to_dict() == {
        "apiVersion": "v2",
        "digest": release_digest(release()),
        "name": "app",
        "namespace": "apps",
        "version": 1,
        "status": "deployed",
        "action": "install",
        "chartName": "podinfo",
        "chartVersion": "6.0.0",
        "appVersion": "6.0.0",
        "configDigest": VALUES_DIGEST,
        "firstDeployed": "2026-12-07T20:00:00Z",
        "lastDeployed": "2026-12-07T20:00:00Z",
    }
    assert entry.full_release_name == "apps/app.v1"
    # The digest tells a changed stored release from the one the snapshot was taken of.
    assert release_digest(release(manifest="other")) != entry.digest
    assert kube_time("2026-12-07T21:00:00Z") == "2026-12-07T21:00:00Z"


def test_history_keeps_back_to_the_previous_successful_release() -> None:
    entries = [
        Snapshot.model_validate(snapshot(release(v, s), "upgrade").to_dict())
        for v, s in [(1, "superseded"), (2, "superseded"), (3, "failed"), (4, "deployed")]
    ]
    assert [e.version for e in truncate(entries)] == [4, 3, 2]
    assert [e.version for e in truncate(entries[:1])] == [1]


def test_action_options_follow_flux() -> None:
    obj = helmrelease(
        {
            "timeout": "2m",
            "maxHistory": 3,
            "targetNamespace": "target",
            "storageNamespace": "target",
            "install": {"createNamespace": True, "disableWait": True, "crds": "Skip"},
            "upgrade": {"timeout": "1m", "serverSideApply": "disabled", "force": True},
        }
    )
    install = install_options(obj)
    assert (install.timeout, install.wait, install.wait_for_jobs) == (120, False, True)
    assert (install.create_namespace, install.skip_crds, install.take_ownership) == (
        True,
        True,
        True,
    )
    upgrade = upgrade_options(obj)
    assert (upgrade.timeout, upgrade.server_side_apply, upgrade.force) == (60, False, True)
    assert (upgrade.max_history, upgrade.skip_crds) == (3, True)
    # createNamespace only for a targetNamespace, as Flux.
    assert not install_options(helmrelease({"install": {"createNamespace": True}})).create_namespace


@pytest.mark.parametrize(
    ("spec", "install_keys", "upgrade_keys"),
    [
        pytest.param(
            {},
            # Flux always forces conflicts with server-side apply.
            {"skip_schema_validation": False, "replace": False, "force_conflicts": True},
            {
                "skip_schema_validation": False,
                "reset_values": True,
                "reuse_values": False,
                "force_conflicts": True,
            },
            id="defaults",
        ),
        pytest.param(
            {"install": {"serverSideApply": False}, "upgrade": {"serverSideApply": "disabled"}},
            {"force_conflicts": None, "force_replace": None},
            {"force_conflicts": None, "force_replace": None},
            id="client-side-apply-not-forced",
        ),
        pytest.param(
            {
                "install": {"disableSchemaValidation": True, "replace": True},
                "upgrade": {"disableSchemaValidation": True, "preserveValues": True},
            },
            {"skip_schema_validation": True, "replace": True},
            # Flux's ResetValues = !preserveValues, ReuseValues = preserveValues.
            {"skip_schema_validation": True, "reset_values": False, "reuse_values": True},
            id="set",
        ),
    ],
)
def test_settings_reach_helms_options(
    spec: dict[str, Any],
    install_keys: dict[str, bool | None],
    upgrade_keys: dict[str, bool | None],
) -> None:
    obj = helmrelease(spec)
    install = json.loads(install_options_json("apps", install_options(obj)))
    upgrade = json.loads(upgrade_options_json("apps", upgrade_options(obj)))
    assert {k: install.get(k) for k in install_keys} == install_keys
    assert {k: upgrade.get(k) for k in upgrade_keys} == upgrade_keys


RECORDED = {"storageNamespace": "apps", "history": history_of(release())}


@pytest.mark.parametrize(
    ("spec", "status", "chart_name", "expected"),
    [
        pytest.param({}, RECORDED, "podinfo", "", id="same-target"),
        pytest.param({}, {}, "other", "", id="nothing-recorded"),
        pytest.param(
            {}, {"history": RECORDED["history"]}, "other", "", id="no-storage-namespace-recorded"
        ),
        # Flux 2.9's default strategy is Reinstall.
        pytest.param({}, RECORDED, "other", "chart name", id="chart-renamed"),
        pytest.param(
            {"upgrade": {"chartNameChangeStrategy": "Reinstall"}},
            RECORDED,
            "other",
            "chart name",
            id="chart-renamed-reinstall",
        ),
        pytest.param(
            {"upgrade": {"chartNameChangeStrategy": "InPlaceUpdate"}},
            RECORDED,
            "other",
            "",
            id="chart-renamed-in-place",
        ),
        pytest.param(
            {"upgrade": {"chartNameChangeStrategy": "InPlaceUpdate"}, "releaseName": "renamed"},
            RECORDED,
            "podinfo",
            "release name",
            id="release-renamed-whatever-the-strategy",
        ),
        pytest.param(
            {"storageNamespace": "elsewhere"},
            RECORDED,
            "podinfo",
            "storage namespace",
            id="storage-moved",
        ),
    ],
)
def test_must_reinstall(
    spec: dict[str, Any], status: dict[str, Any], chart_name: str, expected: str
) -> None:
    assert must_reinstall(helmrelease(spec, **status), chart_name) == expected


def packaged(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "chart.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_chart_metadata_reads_chart_yaml(tmp_path: Path) -> None:
    path = packaged(
        tmp_path,
        {
            "podinfo/templates/Chart.yaml": b"name: wrong\nversion: 0.0.0\n",
            "podinfo/Chart.yaml": b"apiVersion: v2\nname: podinfo\nversion: 6.0.0\n",
        },
    )
    assert chart_metadata(path) == ChartMetadata("podinfo", "6.0.0")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InvalidChart, match=r"no Chart\.yaml"):
        chart_metadata(packaged(other, {"podinfo/values.yaml": b""}))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, "", id="same-namespace"),
        pytest.param(
            {
                "chart": {
                    "spec": {
                        "chart": "podinfo",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "x"},
                    }
                }
            },
            "can't access 'HelmRepository/x/charts', cross-namespace references have been blocked",
            id="template-source",
        ),
        pytest.param(
            {"chart": None, "chartRef": {"kind": "HelmChart", "name": "c", "namespace": "y"}},
            "can't access 'HelmChart/y/c', cross-namespace references have been blocked",
            id="chart-ref",
        ),
    ],
)
def test_cross_namespace_reference(spec: dict[str, Any], expected: str) -> None:
    raw = helmrelease().to_dict()
    raw["spec"].update(spec)
    raw["spec"] = {k: v for k, v in raw["spec"].items() if v is not None}
    assert cross_namespace_reference(HelmRelease.from_dict(raw)) == expected


def test_the_process_takes_the_bundles_flags() -> None:
    args = helm_main.parser().parse_args(
        [
            "--no-cross-namespace-refs",
            "--default-service-account=default",
            "--insecure-kubeconfig-exec",
            "--insecure-kubeconfig-tls",
        ]
    )
    assert (args.no_cross_namespace_refs, args.default_service_account) == (True, "default")
    assert target_options(args) == TargetOptions("default", True, True)
