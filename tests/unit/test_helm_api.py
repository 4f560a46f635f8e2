"""The helm.toolkit.fluxcd.io/v2 HelmRelease model, its accessors and its CRD."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controllers.crd import render_crd, render_yaml
from helm.api_v2 import (
    MAX_RELEASE_NAME_LENGTH,
    HelmRelease,
    InstallRemediation,
    InstallStrategy,
    UpgradeRemediation,
    UpgradeStrategy,
    shorten_release_name,
)

FLUX_CRD_SUMMARY = Path(__file__).parent / "fixtures" / "flux_helmrelease_v2_crd.yaml"

# Examples from Flux's HelmRelease documentation (helm-controller docs/spec/v2/helmreleases.md).
# Where the documentation shows a fragment ("spec: ...omitted for brevity") it sits on BASE.

BASE = """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 10m
  chartRef:
    kind: OCIRepository
    name: podinfo
"""

DOCUMENTED = {
    "chart-template": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 15m
  timeout: 5m
  chart:
    spec:
      chart: podinfo
      version: '6.5.*'
      sourceRef:
        kind: HelmRepository
        name: podinfo
      interval: 5m
  releaseName: podinfo
  install:
    remediation:
      retries: 3
  upgrade:
    remediation:
      retries: 3
  test:
    enable: true
  driftDetection:
    mode: enabled
    ignore:
    - paths: ["/spec/replicas"]
      target:
        kind: Deployment
  values:
    replicaCount: 2
""",
    "chart-ref-oci": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 10m
  chartRef:
    kind: OCIRepository
    name: podinfo
    namespace: default
  values:
    replicaCount: 2
""",
    "chart-ref-helmchart": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 10m
  chartRef:
    kind: HelmChart
    name: podinfo
    namespace: default
  values:
    replicaCount: 2
""",
    "depends-on-ready-expr": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: frontend
  namespace: default
spec:
  interval: 10m
  chartRef:
    kind: OCIRepository
    name: frontend
  values:
    app:
      version: v1.2.3
  dependsOn:
    - name: backend
      readyExpr: >
        dep.spec.values.app.version == self.spec.values.app.version &&
        dep.status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True') &&
        dep.metadata.generation == dep.status.observedGeneration
""",
    "health-check-exprs": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: sealed-secrets
spec:
  interval: 10m
  chartRef:
    kind: OCIRepository
    name: sealed-secrets-chart
  values:
    replicaCount: 2
  healthCheckExprs:
    - apiVersion: bitnami.com/v1alpha1
      kind: SealedSecret
      failed: status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'False')
      current: status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'True')
""",
    "retry-on-failure": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: webapp
  namespace: apps
spec:
  releaseName: webapp
  chartRef:
    kind: OCIRepository
    name: webapp-chart
  interval: 30m
  driftDetection:
    mode: enabled
  install:
    strategy:
      name: RetryOnFailure
      retryInterval: 5m
  upgrade:
    crds: CreateReplace
    strategy:
      name: RetryOnFailure
      retryInterval: 5m
  valuesFrom:
    - kind: ConfigMap
      name: webapp-values
    - kind: Secret
      name: webapp-secret-values
""",
    "crds-create-replace": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: my-operator
  namespace: default
spec:
  interval: 15m
  chart:
    spec:
      chart: my-operator
      version: "1.0.1"
      sourceRef:
        kind: HelmRepository
        name: my-operator-repo
      interval: 5m
  install:
    crds: CreateReplace
  upgrade:
    crds: CreateReplace
""",
    "service-account": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
 name: podinfo
 namespace: webapp
spec:
 serviceAccountName: webapp-reconciler
 interval: 15m
 chart:
   spec:
     chart: podinfo
     sourceRef:
       kind: HelmRepository
       name: podinfo
""",
    # The documentation's Cluster API example has no interval, which Flux's own CRD requires.
    "kubeconfig-cluster-api": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: kube-prometheus-stack
  namespace: capi-stage
spec:
  interval: 10m
  kubeConfig:
    secretRef:
      name: stage-kubeconfig
  chart:
    spec:
      chart: prometheus
      version: ">=4.0.0 <5.0.0"
      sourceRef:
        kind: HelmRepository
        name: prometheus-community
  install:
    remediation:
      retries: -1
""",
    "status-history-inventory": """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 10m
  chartRef:
    kind: OCIRepository
    name: podinfo
status:
  observedGeneration: 2
  helmChart: flux-system/default-podinfo
  storageNamespace: default
  lastAttemptedReleaseAction: upgrade
  lastAttemptedReleaseActionDuration: 2.51s
  lastAttemptedRevision: 6.6.1+0cc9a8446c95
  lastAttemptedRevisionDigest:
    sha256:0cc9a8446c95009ef382f5eade883a67c257f77d50f84e78ecef2aac9428d1e5
  lastAttemptedConfigDigest: sha256:e15c415d62760896bd8bec192a44c5716dc224db9e0fc609b9ac14718f8f9e56
  lastAttemptedGeneration: 2
  lastHandledForceAt: "2024-05-07T04:54:00Z"
  lastHandledResetAt: "2024-05-07T04:54:00Z"
  lastHandledReconcileAt: "2024-05-07T04:54:00Z"
  observedPostRenderersDigest: sha256:1f5e6b8c2d
  observedCommonMetadataDigest: sha256:9a8b7c6d5e
  history:
    - appVersion: 6.6.1
      chartName: podinfo
      chartVersion: 6.6.1+0cc9a8446c95
      configDigest: sha256:e15c415d62760896bd8bec192a44c5716dc224db9e0fc609b9ac14718f8f9e56
      digest: sha256:e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9
      firstDeployed: "2024-05-07T04:54:21Z"
      lastDeployed: "2024-05-07T04:54:55Z"
      name: podinfo
      namespace: podinfo
      ociDigest: sha256:0cc9a8446c95009ef382f5eade883a67c257f77d50f84e78ecef2aac9428d1e5
      status: deployed
      action: upgrade
      apiVersion: v2
      testHooks:
        podinfo-grpc-test-goyey:
          lastCompleted: "2024-05-07T04:55:11Z"
          lastStarted: "2024-05-07T04:55:09Z"
          phase: Succeeded
      version: 2
    - appVersion: 6.6.0
      chartName: podinfo
      chartVersion: 6.6.0+cdd538a0167e
      configDigest: sha256:e15c415d62760896bd8bec192a44c5716dc224db9e0fc609b9ac14718f8f9e56
      digest: sha256:9be0d34ced6b890a72026749bc0f1f9e3c1a89673e17921bbcc0f27774f31c3a
      firstDeployed: "2024-05-07T04:54:21Z"
      lastDeployed: "2024-05-07T04:54:21Z"
      name: podinfo
      namespace: podinfo
      ociDigest: sha256:cdd538a0167e4b51152b71a477e51eb6737553510ce8797dbcc537e1342311bb
      status: superseded
      action: install
      testHooks:
        podinfo-grpc-test-q0ucx:
          lastCompleted: "2024-05-07T04:54:25Z"
          lastStarted: "2024-05-07T04:54:23Z"
          phase: Succeeded
      version: 1
  inventory:
    entries:
      - id: default_podinfo__Service
        v: v1
      - id: default_podinfo_apps_Deployment
        v: v1
      - id: default_podinfo_autoscaling_HorizontalPodAutoscaler
        v: v2
""",
}

FRAGMENTS = {
    "values-from": """
valuesFrom:
  - kind: ConfigMap
    name: prod-env-values
    valuesKey: values-prod.yaml
  - kind: Secret
    name: prod-tls-values
    valuesKey: crt
    targetPath: tls.crt
    optional: true
  - kind: ConfigMap
    name: app-config-source
    valuesKey: application.yml
    targetPath: 'externalConfig.application\\.yml.content'
    literal: true
""",
    "post-render-strategy": "postRenderStrategy: combined",
    "test-ignore-failures": "test: {enable: true, ignoreFailures: true}",
    "test-filters": """
test:
  enable: true
  filters:
    - name: my-release-test-connection
      exclude: false
    - name: my-release-test-migration
      exclude: true
""",
    "drift-ignore-everywhere": """
driftDetection:
  mode: enabled
  ignore:
    - paths: ["/spec/replicas"]
""",
    "post-renderer-patch": """
postRenderers:
  - kustomize:
      patches:
        - target:
            version: v1
            kind: Deployment
            name: my-app
          patch: |
            - op: add
              path: /metadata/annotations/helm.toolkit.fluxcd.io~1driftDetection
              value: disabled
""",
    "post-renderer-images": """
postRenderers:
  - kustomize:
      patches:
        - target:
            version: v1
            kind: Deployment
            name: metrics-server
          patch: |
            - op: add
              path: /metadata/labels/environment
              value: production
      images:
        - name: docker.io/bitnami/metrics-server
          newName: docker.io/bitnami/metrics-server
          newTag: 0.4.1-debian-10-r54
""",
    "wait-strategy": "waitStrategy: {name: poller}",
    "uninstall-disable-hooks": "uninstall: {disableHooks: true}",
    "suspend": "suspend: true",
    "kubeconfig-config-map": "kubeConfig: {configMapRef: {name: kubeconfig}}",
    # Every other field, with values Flux's API allows.
    "everything-else": """
targetNamespace: apps
storageNamespace: helm-storage
maxHistory: 0
persistentClient: false
commonMetadata: {labels: {team: a}, annotations: {owner: b}}
install:
  timeout: 10m
  remediation: {retries: 2, ignoreTestFailures: true, remediateLastFailure: true}
  strategy: {name: RemediateOnFailure}
  disableTakeOwnership: true
  disableWait: true
  disableWaitForJobs: true
  disableHooks: true
  disableOpenAPIValidation: true
  disableSchemaValidation: true
  replace: true
  skipCRDs: true
  crds: Skip
  createNamespace: true
  serverSideApply: false
upgrade:
  timeout: 10m
  remediation: {retries: -1, ignoreTestFailures: false, remediateLastFailure: false,
                strategy: uninstall}
  strategy: {name: RemediateOnFailure}
  disableTakeOwnership: true
  disableWait: true
  disableWaitForJobs: true
  disableHooks: true
  disableOpenAPIValidation: true
  disableSchemaValidation: true
  force: true
  preserveValues: true
  cleanupOnFail: true
  crds: Create
  serverSideApply: auto
  chartNameChangeStrategy: InPlaceUpdate
test: {enable: true, timeout: 1m, ignoreFailures: false}
rollback:
  timeout: 3m
  disableWait: true
  disableWaitForJobs: true
  disableHooks: true
  recreate: true
  force: true
  cleanupOnFail: true
  serverSideApply: disabled
uninstall: {timeout: 2m, disableHooks: true, keepHistory: true, disableWait: true,
            deletionPropagation: foreground}
""",
    "chart-template-everything": """
chartRef: null
chart:
  metadata:
    labels: {team: a}
    annotations: {owner: b}
  spec:
    chart: ./charts/podinfo
    version: "6.x"
    sourceRef: {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: repo,
                namespace: flux-system}
    interval: 1m
    reconcileStrategy: Revision
    valuesFiles: [values.yaml, values-prod.yaml]
    ignoreMissingValuesFiles: true
    verify: {provider: notation, secretRef: {name: trust}}
""",
}


def manifest(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def base(**spec: Any) -> dict[str, Any]:
    """BASE with ``spec`` merged over its spec; a None value removes the field."""
    obj = manifest(BASE)
    for key, value in spec.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = copy.deepcopy(value)
    return obj


def with_fragment(text: str) -> dict[str, Any]:
    return base(**manifest(text))


def flux_examples() -> list[Any]:
    return [pytest.param(manifest(text), id=name) for name, text in DOCUMENTED.items()] + [
        pytest.param(with_fragment(text), id=name) for name, text in FRAGMENTS.items()
    ]


def contains(whole: Any, part: Any) -> bool:
    """True if every field of ``part`` is in ``whole`` with the same value (``whole`` may have
    more fields: the CRD's defaults)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and contains(whole[key], value) for key, value in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(whole, list)
            and len(whole) == len(part)
            and all(contains(w, p) for w, p in zip(whole, part, strict=True))
        )
    return bool(whole == part)


@pytest.mark.parametrize("obj", flux_examples())
def test_flux_manifests_are_read_and_written_back(obj: dict[str, Any]) -> None:
    release = HelmRelease.from_dict(obj)
    written = release.to_dict()

    assert contains(written, obj)
    assert HelmRelease.from_dict(written).to_dict() == written


def test_the_crd_defaults_are_the_only_fields_added() -> None:
    obj = with_fragment(FRAGMENTS["chart-template-everything"])
    del obj["spec"]["chart"]["spec"]["version"]
    del obj["spec"]["chart"]["spec"]["reconcileStrategy"]
    del obj["spec"]["chart"]["spec"]["verify"]["provider"]
    obj["spec"]["uninstall"] = {}

    spec = HelmRelease.from_dict(obj).to_dict()["spec"]

    assert spec["chart"]["spec"]["version"] == "*"
    assert spec["chart"]["spec"]["reconcileStrategy"] == "ChartVersion"
    assert spec["chart"]["spec"]["verify"]["provider"] == "cosign"
    assert spec["uninstall"] == {"deletionPropagation": "background"}
    assert HelmRelease.from_dict(base()).to_dict()["spec"] == base()["spec"]


def test_values_are_kept_verbatim_including_nulls() -> None:
    # A null removes a key of the chart's default values in Helm: it must survive.
    values = {"a": None, "b": {"c": [1, "two", None, {"d": False}]}, "e": 1.5}

    release = HelmRelease.from_dict(base(values=values))

    assert release.to_dict()["spec"]["values"] == values
    assert release.values == values


def changed(path: str, value: Any, obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """``obj`` (BASE by default) with the dotted ``path`` set to ``value``, creating maps."""
    obj = copy.deepcopy(obj) if obj is not None else base()
    *parents, last = path.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[int(last) if last.isdigit() else last] = copy.deepcopy(value)
    return obj


CHART = manifest(DOCUMENTED["chart-template"])
STATUS = manifest(DOCUMENTED["status-history-inventory"])


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        pytest.param(base(chart=CHART["spec"]["chart"]), "either chart or chartRef", id="both"),
        pytest.param(base(chartRef=None), "either chart or chartRef", id="neither"),
        pytest.param(base(interval=None), "interval", id="interval-required"),
        pytest.param(base(interval="10 minutes"), "pattern", id="interval-pattern"),
        pytest.param(base(interval="1d"), "pattern", id="interval-days"),
        pytest.param(base(timeout="1000000000h"), "at most", id="timeout-past-go"),
        pytest.param(changed("spec.chartRef.kind", "GitRepository"), "kind", id="chartRef-kind"),
        pytest.param(changed("spec.chartRef.name", ""), "at least 1", id="chartRef-name-empty"),
        pytest.param(changed("spec.chartRef.namespace", "n" * 64), "at most 63", id="chartRef-ns"),
        pytest.param(
            changed("spec.chart.spec.sourceRef.kind", "OCIRepository", CHART),
            "kind",
            id="chart-source-kind",
        ),
        pytest.param(
            changed("spec.chart.spec.chart", "", CHART), "at least 1", id="chart-name-empty"
        ),
        pytest.param(
            changed("spec.chart.spec.reconcileStrategy", "Digest", CHART),
            "reconcileStrategy",
            id="chart-reconcile-strategy",
        ),
        pytest.param(
            changed("spec.chart.spec.verify.provider", "gpg", CHART), "provider", id="verify"
        ),
        pytest.param(changed("spec.chart", {"metadata": {}}, CHART), "spec", id="chart-spec"),
        pytest.param(base(releaseName="r" * 54), "at most 53", id="releaseName-max-53"),
        pytest.param(base(releaseName=""), "at least 1", id="releaseName-empty"),
        pytest.param(base(targetNamespace="t" * 64), "at most 63", id="targetNamespace-max"),
        pytest.param(base(storageNamespace=""), "at least 1", id="storageNamespace-empty"),
        pytest.param(base(serviceAccountName="s" * 254), "at most 253", id="serviceAccount-max"),
        pytest.param(base(driftDetection={"mode": "on"}), "mode", id="drift-mode"),
        pytest.param(
            base(driftDetection={"ignore": [{"target": {"kind": "Deployment"}}]}),
            "paths",
            id="drift-ignore-paths",
        ),
        pytest.param(
            base(install={"strategy": {"name": "RemediateOnFailure", "retryInterval": "1m"}}),
            "cannot be set when .name is 'RemediateOnFailure'",
            id="install-retryInterval",
        ),
        pytest.param(
            base(upgrade={"strategy": {"name": "RemediateOnFailure", "retryInterval": "1m"}}),
            "can only be set when .name is 'RetryOnFailure'",
            id="upgrade-retryInterval",
        ),
        pytest.param(base(install={"strategy": {}}), "name", id="strategy-name-required"),
        pytest.param(
            base(upgrade={"remediation": {"strategy": "retry"}}), "strategy", id="remediation"
        ),
        pytest.param(base(install={"crds": "Replace"}), "crds", id="install-crds"),
        pytest.param(
            base(upgrade={"serverSideApply": True}), "serverSideApply", id="upgrade-ssa-is-a-mode"
        ),
        pytest.param(
            base(install={"serverSideApply": "enabled"}),
            "serverSideApply",
            id="install-ssa-is-a-bool",
        ),
        pytest.param(
            base(upgrade={"chartNameChangeStrategy": "Uninstall"}),
            "chartNameChangeStrategy",
            id="chart-name-change",
        ),
        pytest.param(base(test={"filters": [{"name": ""}]}), "at least 1", id="test-filter-name"),
        pytest.param(
            base(uninstall={"deletionPropagation": "Background"}),
            "deletionPropagation",
            id="deletion-propagation-case",
        ),
        pytest.param(
            base(valuesFrom=[{"kind": "Bucket", "name": "v"}]), "kind", id="valuesFrom-kind"
        ),
        pytest.param(base(valuesFrom=[{"kind": "Secret"}]), "name", id="valuesFrom-name"),
        pytest.param(
            base(valuesFrom=[{"kind": "Secret", "name": "v", "valuesKey": "a b"}]),
            "pattern",
            id="valuesKey-pattern",
        ),
        pytest.param(
            base(valuesFrom=[{"kind": "Secret", "name": "v", "targetPath": "a=b"}]),
            "pattern",
            id="targetPath-pattern",
        ),
        pytest.param(
            base(valuesFrom=[{"kind": "Secret", "name": "v", "targetPath": "a" * 251}]),
            "at most 250",
            id="targetPath-max",
        ),
        pytest.param(base(values=[1, 2]), "values", id="values-not-a-map"),
        pytest.param(base(kubeConfig={}), "exactly one of", id="kubeConfig-none"),
        pytest.param(
            base(kubeConfig={"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}),
            "exactly one of",
            id="kubeConfig-both",
        ),
        pytest.param(base(postRenderStrategy="all"), "postRenderStrategy", id="post-render"),
        pytest.param(base(waitStrategy={"name": "kstatus"}), "name", id="wait-strategy"),
        pytest.param(
            base(healthCheckExprs=[{"apiVersion": "v1", "kind": "X"}]),
            "current",
            id="health-check-current",
        ),
        pytest.param(
            base(postRenderers=[{"kustomize": {"images": [{"newTag": "1"}]}}]),
            "name",
            id="image-name",
        ),
        pytest.param(
            base(postRenderers=[{"kustomize": {"patches": [{"target": {"kind": "X"}}]}}]),
            "patch",
            id="patch-required",
        ),
        pytest.param(base(dependsOn=[{"namespace": "x"}]), "name", id="dependsOn-name"),
        pytest.param(
            changed("status.lastAttemptedReleaseAction", "rollback", STATUS),
            "lastAttemptedReleaseAction",
            id="last-action-install-or-upgrade",
        ),
        pytest.param(
            changed("status.history.0", {"name": "podinfo"}, STATUS), "digest", id="snapshot"
        ),
        pytest.param(
            changed("status.inventory.entries.0", {"id": "x"}, STATUS), "v", id="inventory"
        ),
        pytest.param(
            changed("status.storageNamespace", "s" * 64, STATUS), "at most 63", id="status-ns"
        ),
    ],
)
def test_invalid_helmreleases_are_refused(obj: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason.replace(".", r"\.").replace("'", "'")):
        HelmRelease.from_dict(obj)


def test_defaults_of_a_minimal_helmrelease_are_flux_ones() -> None:
    release = HelmRelease.from_dict(base())

    assert release.interval_seconds == 600.0
    assert not release.suspended
    assert release.timeout_seconds == 300.0
    assert release.max_history == 5
    assert release.persistent_client is True
    assert release.release_name == release.helm_release_name == "podinfo"
    assert release.release_namespace == release.storage_namespace == "default"
    assert release.helm_chart_name == "default-podinfo"
    assert release.drift_detection.effective_mode == "disabled"
    assert not release.drift_detection.detects_changes
    assert release.install.remediation_settings.retry_count == 0
    assert not release.install.remediation_settings.must_remediate_last_failure
    assert release.install.remediation_settings.effective_strategy == "uninstall"
    assert release.upgrade.remediation_settings.effective_strategy == "rollback"
    assert not release.upgrade.remediation_settings.must_remediate_last_failure
    assert release.upgrade.effective_chart_name_change_strategy == "Reinstall"
    assert release.uninstall.deletion_propagation == "background"
    assert not release.test.enable
    assert release.install.timeout_seconds(release.timeout_seconds) == 300.0
    assert release.active_remediation is None
    assert release.active_retry(default_to_retry_on_failure=True) is None
    assert release.values == {}
    assert release.status.helm_chart_key == ("", "")
    assert release.status.latest_snapshot is None


def test_settings_given_replace_the_defaults() -> None:
    release = HelmRelease.from_dict(with_fragment(FRAGMENTS["everything-else"]))

    assert release.timeout_seconds == 300.0
    assert release.max_history == 0
    assert release.persistent_client is False
    assert release.release_name == "apps-podinfo"
    assert release.release_namespace == "apps"
    assert release.storage_namespace == "helm-storage"
    timeouts = [
        action.timeout_seconds(release.timeout_seconds)
        for action in (
            release.install,
            release.upgrade,
            release.test,
            release.rollback,
            release.uninstall,
        )
    ]
    assert timeouts == [600.0, 600.0, 60.0, 180.0, 120.0]
    assert release.upgrade.remediation_settings.effective_strategy == "uninstall"
    assert release.upgrade.remediation_settings.uninstalls_after_upgrade
    assert release.uninstall.deletion_propagation == "foreground"


def test_status_accessors() -> None:
    release = HelmRelease.from_dict(STATUS)

    latest = release.status.latest_snapshot
    assert latest is not None
    assert latest.full_release_name == "podinfo/podinfo.v2"
    assert latest.versioned_chart_name == "podinfo@6.6.1+0cc9a8446c95"
    assert latest.has_been_tested
    assert latest.has_test_in_phase("Succeeded")
    assert not latest.has_test_in_phase("Failed")
    assert release.status.helm_chart_key == ("flux-system", "default-podinfo")


@pytest.mark.parametrize(
    ("hooks", "tested"),
    [
        pytest.param(None, False, id="never-tested"),
        pytest.param({}, True, id="no-tests-selected"),
        pytest.param({"a": {"phase": "Succeeded"}, "b": {"phase": "Running"}}, False, id="running"),
        pytest.param({"a": {"phase": "Failed"}, "b": {"phase": "Running"}}, True, id="one-failed"),
        pytest.param({"a": {"phase": "Succeeded"}, "b": {"phase": "Succeeded"}}, True, id="passed"),
    ],
)
def test_a_snapshot_has_been_tested_as_flux_decides(
    hooks: dict[str, Any] | None, tested: bool
) -> None:
    obj = changed("status.history.0.testHooks", hooks, STATUS)

    latest = HelmRelease.from_dict(obj).status.latest_snapshot

    assert latest is not None
    assert latest.has_been_tested is tested


@pytest.mark.parametrize(
    ("name", "short"),
    [
        # Flux's own cases (internal/release/name_test.go).
        pytest.param("release-name", "release-name", id="short"),
        pytest.param(
            "release-name-with-very-long-name-which-is-longer-than-53-characters",
            "release-name-with-very-long-name-which-i-788ca0d0d7b0",
            id="long",
        ),
        pytest.param(
            "another-release-name-with-very-long-name-which-is-longer-than-53-characters",
            "another-release-name-with-very-long-name-7e72150d5a36",
            id="another-long",
        ),
        pytest.param("", "", id="empty"),
        pytest.param("r" * 53, "r" * 53, id="exactly-53"),
    ],
)
def test_release_names_are_shortened_as_flux_does(name: str, short: str) -> None:
    assert shorten_release_name(name) == short
    assert len(shorten_release_name(name)) <= MAX_RELEASE_NAME_LENGTH


@pytest.mark.parametrize(
    ("name", "spec", "release_name", "helm_release_name"),
    [
        pytest.param("podinfo", {}, "podinfo", "podinfo", id="name"),
        pytest.param(
            "podinfo", {"targetNamespace": "apps"}, "apps-podinfo", "apps-podinfo", id="target"
        ),
        pytest.param(
            "podinfo",
            {"targetNamespace": "apps", "releaseName": "web"},
            "web",
            "web",
            id="releaseName-wins",
        ),
        pytest.param(
            "which-is-longer-than-53-characters",
            {"targetNamespace": "release-name-with-very-long-name"},
            "release-name-with-very-long-name-which-is-longer-than-53-characters",
            "release-name-with-very-long-name-which-i-788ca0d0d7b0",
            id="long-target-and-name",
        ),
    ],
)
def test_release_name(
    name: str, spec: dict[str, Any], release_name: str, helm_release_name: str
) -> None:
    obj = base(**spec)
    obj["metadata"]["name"] = name

    release = HelmRelease.from_dict(obj)

    assert release.release_name == release_name
    assert release.helm_release_name == helm_release_name


@pytest.mark.parametrize(
    ("remediation", "default", "ignores_tests", "remediates_last"),
    [
        pytest.param(InstallRemediation(), False, False, False, id="install-unset"),
        pytest.param(InstallRemediation(), True, True, False, id="install-test-default"),
        pytest.param(
            InstallRemediation(retries=3), False, False, False, id="install-retries-no-last"
        ),
        pytest.param(
            InstallRemediation(ignore_test_failures=False, remediate_last_failure=True),
            True,
            False,
            True,
            id="install-explicit",
        ),
        pytest.param(UpgradeRemediation(), False, False, False, id="upgrade-unset"),
        pytest.param(UpgradeRemediation(retries=3), False, False, True, id="upgrade-retries"),
        pytest.param(UpgradeRemediation(retries=-1), False, False, False, id="upgrade-unlimited"),
        pytest.param(
            UpgradeRemediation(retries=3, remediate_last_failure=False, ignore_test_failures=True),
            False,
            True,
            False,
            id="upgrade-explicit",
        ),
    ],
)
def test_remediation_defaults(
    remediation: InstallRemediation | UpgradeRemediation,
    default: bool,
    ignores_tests: bool,
    remediates_last: bool,
) -> None:
    assert remediation.must_ignore_test_failures(default) is ignores_tests
    assert remediation.must_remediate_last_failure is remediates_last


@pytest.mark.parametrize(
    ("retries", "failures", "exhausted"),
    [
        pytest.param(None, 0, False, id="no-retries-no-failure"),
        pytest.param(None, 1, True, id="no-retries-one-failure"),
        pytest.param(2, 2, False, id="retries-left"),
        pytest.param(2, 3, True, id="retries-used"),
        pytest.param(-1, 1000, False, id="unlimited"),
    ],
)
def test_retries_are_exhausted_when_failures_outnumber_them(
    retries: int | None, failures: int, exhausted: bool
) -> None:
    obj = changed("status.installFailures", failures, base(install={"remediation": {}}))
    obj = changed("status.upgradeFailures", failures, obj)
    if retries is not None:
        obj = changed("spec.install.remediation.retries", retries, obj)
        obj = changed("spec.upgrade.remediation.retries", retries, obj)
    release = HelmRelease.from_dict(obj)

    for remediation in (
        release.install.remediation_settings,
        release.upgrade.remediation_settings,
    ):
        assert remediation.failure_count(release.status) == failures
        assert remediation.retries_exhausted(release.status) is exhausted


@pytest.mark.parametrize(
    ("action", "spec", "gate", "retry_interval"),
    [
        pytest.param(None, {"install": {"strategy": {"name": "RetryOnFailure"}}}, True, None),
        pytest.param("install", {}, False, None, id="install-remediates"),
        pytest.param("install", {}, True, 300.0, id="install-gate-defaults-to-retry"),
        pytest.param(
            "install",
            {"install": {"strategy": {"name": "RemediateOnFailure"}}},
            True,
            None,
            id="install-explicit-remediate-beats-gate",
        ),
        pytest.param(
            "install",
            {"install": {"strategy": {"name": "RetryOnFailure", "retryInterval": "1m"}}},
            False,
            60.0,
            id="install-retry",
        ),
        pytest.param(
            "upgrade",
            {"install": {"strategy": {"name": "RetryOnFailure"}}},
            False,
            None,
            id="upgrade-ignores-install-strategy",
        ),
        pytest.param(
            "upgrade",
            {"upgrade": {"strategy": {"name": "RetryOnFailure"}}},
            False,
            300.0,
            id="upgrade-retry-default-interval",
        ),
    ],
)
def test_the_active_retry_follows_the_last_action(
    action: str | None, spec: dict[str, Any], gate: bool, retry_interval: float | None
) -> None:
    obj = base(**spec)
    if action is not None:
        obj["status"] = {"lastAttemptedReleaseAction": action}

    retry = HelmRelease.from_dict(obj).active_retry(default_to_retry_on_failure=gate)

    if retry_interval is None:
        assert retry is None
    else:
        assert isinstance(retry, InstallStrategy if action == "install" else UpgradeStrategy)
        assert retry.retry_interval_seconds == retry_interval


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("install", InstallRemediation(retries=1), id="install"),
        pytest.param("upgrade", UpgradeRemediation(retries=2), id="upgrade"),
    ],
)
def test_the_active_remediation_follows_the_last_action(
    action: str | None, expected: InstallRemediation | UpgradeRemediation | None
) -> None:
    obj = base(install={"remediation": {"retries": 1}}, upgrade={"remediation": {"retries": 2}})
    if action is not None:
        obj["status"] = {"lastAttemptedReleaseAction": action}

    assert HelmRelease.from_dict(obj).active_remediation == expected


# The CRD against Flux's


def crd_summary(crd: dict[str, Any]) -> dict[str, Any]:
    """What of a HelmRelease CRD must match Flux's: names, the version's columns and
    subresources, and every schema node's validation keywords (no descriptions)."""
    (version,) = crd["spec"]["versions"]
    keywords = (
        "type",
        "enum",
        "default",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "format",
        "required",
        "x-kubernetes-validations",
        "x-kubernetes-preserve-unknown-fields",
    )
    schema = {
        path or ".": {key: node[key] for key in keywords if key in node}
        for path, node in schema_nodes(version["schema"]["openAPIV3Schema"], "")
    }
    columns = ("name", "served", "storage", "subresources", "additionalPrinterColumns")
    return {
        "names": crd["spec"]["names"],
        "scope": crd["spec"]["scope"],
        "version": {key: version[key] for key in columns},
        "schema": schema,
    }


def schema_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")


# Where weir's CRD says something else than Flux's, on purpose: path -> keyword -> (Flux, weir).
DELIBERATE_DIFFERENCES: dict[str, dict[str, tuple[Any, Any]]] = {
    # Every weir kind requires its spec (the model cannot do without one); Flux's Go struct
    # marks it omitempty, so its CRD accepts a HelmRelease with no spec at all.
    ".": {"required": (None, ["spec"])},
    # Helm values are a map: weir's CRD says so. Flux's accepts any JSON there and then reads
    # a non-map as no values.
    ".spec.values": {"type": (None, "object")},
    # weir's shared Condition model carries no int64 format; the value range is the same.
    ".status.conditions[].observedGeneration": {"format": ("int64", None)},
}


def test_the_crd_matches_flux_but_for_the_deliberate_differences() -> None:
    flux = yaml.safe_load(FLUX_CRD_SUMMARY.read_text())
    weir = crd_summary(render_crd([HelmRelease]))

    assert weir["names"] == flux["names"]
    assert weir["scope"] == flux["scope"]
    assert weir["version"] == flux["version"]
    assert set(weir["schema"]) == set(flux["schema"])
    differences = {}
    for path, flux_node in flux["schema"].items():
        weir_node = weir["schema"][path]
        keys = set(flux_node) | set(weir_node)
        found = {
            key: (flux_node.get(key), weir_node.get(key))
            for key in keys
            if flux_node.get(key) != weir_node.get(key)
        }
        if found:
            differences[path] = found
    assert differences == DELIBERATE_DIFFERENCES


def test_the_crd_renders_as_yaml_with_descriptions() -> None:
    crd = yaml.safe_load(render_yaml([HelmRelease]))
    (version,) = crd["spec"]["versions"]

    undocumented = [
        path
        for path, node in schema_nodes(
            version["schema"]["openAPIV3Schema"]["properties"]["spec"], ""
        )
        if path and not path.endswith(("[]", ".*")) and "description" not in node
    ]
    assert crd["metadata"]["name"] == "helmreleases.helm.toolkit.fluxcd.io"
    assert undocumented == []
