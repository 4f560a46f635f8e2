"""The kustomize.toolkit.fluxcd.io/v1 Kustomization model and its CRD."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controllers.crd import render_crd
from kustomize.api_v1 import Kustomization

# A Kustomization using every field, as the API server returns it (defaults filled in).
PODINFO = """
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: podinfo
  namespace: apps
  generation: 3
spec:
  interval: 10m0s
  retryInterval: 2m0s
  timeout: 5m
  path: ./kustomize
  prune: true
  deletionPolicy: WaitForTermination
  force: false
  wait: true
  suspend: false
  sourceRef:
    apiVersion: source.toolkit.fluxcd.io/v1
    kind: GitRepository
    name: podinfo
    namespace: flux-system
  dependsOn:
    - name: infra-controllers
      namespace: flux-system
    - name: databases
      readyExpr: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')
  healthChecks:
    - apiVersion: apps/v1
      kind: Deployment
      name: podinfo
      namespace: apps
  healthCheckExprs:
    - apiVersion: kustomize.toolkit.fluxcd.io/v1
      kind: Kustomization
      current: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')
      failed: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')
  serviceAccountName: podinfo-reconciler
  targetNamespace: apps
  namePrefix: prod-
  nameSuffix: -v1
  commonMetadata:
    labels:
      app.kubernetes.io/part-of: podinfo
    annotations:
      owner: team-a
  patches:
    - patch: |-
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: not-used
        spec:
          replicas: 3
      target:
        kind: Deployment
        labelSelector: app.kubernetes.io/name=podinfo
    - patch: |
        - op: add
          path: /metadata/annotations/checked
          value: "true"
      target:
        group: apps
        version: v1
        kind: Deployment
        name: podinfo
        namespace: apps
        annotationSelector: checked!=false
  images:
    - name: ghcr.io/stefanprodan/podinfo
      newName: registry.example.com/podinfo
      newTag: 6.5.0
    - name: busybox
      digest: sha256:24a0c4b4a4c0eb97a1aabb8e29f18e917d05abfe1b7a7c07857230879ce7d3d3
  components:
    - ../components/monitoring
  ignoreMissingComponents: true
  buildMetadata:
    - originAnnotations
  postBuild:
    substituteStrategy: Always
    substitute:
      cluster_env: prod
      cluster_region: eu-central-1
    substituteFrom:
      - kind: ConfigMap
        name: cluster-vars
        optional: false
      - kind: Secret
        name: cluster-secret-vars
        optional: true
  decryption:
    provider: sops
    serviceAccountName: sops-kms
    secretRef:
      name: sops-age
  kubeConfig:
    secretRef:
      name: prod-kubeconfig
      key: value.yaml
  ignore:
    - paths: ["/spec/replicas"]
      target:
        kind: Deployment
status:
  observedGeneration: 3
  lastHandledReconcileAt: "2025-06-01T10:00:00.123456789Z"
  lastAppliedRevision: main@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc
  lastAppliedOriginRevision: v6.5.0@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc
  lastAttemptedRevision: main@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc
  conditions:
    - type: Ready
      status: "True"
      reason: ReconciliationSucceeded
      message: "Applied revision: main@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc"
      observedGeneration: 3
      lastTransitionTime: "2025-06-01T10:00:05Z"
  inventory:
    entries:
      - id: apps_prod-podinfo-v1_apps_Deployment
        v: v1
      - id: apps_prod-podinfo-v1__Service
        v: v1
  history:
    - digest: sha256:2f0a6ea6a4f1a2cf5aa2d1e9bd5e8c6de3d8e47c8b0a5c9c9d2f1e4f5a6b7c8d
      firstReconciled: "2025-06-01T09:00:05Z"
      lastReconciled: "2025-06-01T10:00:05Z"
      lastReconciledDuration: 1.234s
      lastReconciledStatus: ReconciliationSucceeded
      totalReconciliations: 2
      metadata:
        revision: main@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc
"""


def podinfo() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PODINFO)
    return loaded


def minimal(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            **spec,
        },
    }


def test_a_full_flux_kustomization_round_trips() -> None:
    obj = Kustomization.from_dict(podinfo())

    assert obj.to_dict() == podinfo()
    assert obj.key == "apps/podinfo"
    assert obj.spec.source_ref.kind == "GitRepository"
    assert obj.status.inventory is not None
    assert [entry.v for entry in obj.status.inventory.entries] == ["v1", "v1"]


def test_a_minimal_kustomization_gets_flux_defaults_only() -> None:
    obj = Kustomization.from_dict(minimal())

    assert obj.to_dict()["spec"] == {
        "interval": "10m",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        "force": False,
    }
    assert obj.deletion_policy == "MirrorPrune"
    assert obj.substitute_strategy == "WithVariables"
    assert not obj.suspended


def without(path: str) -> dict[str, Any]:
    obj = podinfo()
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node[key]
    del node[last]
    return obj


def changed(path: str, value: Any) -> dict[str, Any]:
    obj = podinfo()
    *parents, last = path.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = copy.deepcopy(value)
    return obj


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(without("spec.interval"), id="interval-required"),
        pytest.param(without("spec.prune"), id="prune-required"),
        pytest.param(without("spec.sourceRef"), id="sourceRef-required"),
        pytest.param(without("spec.sourceRef.name"), id="sourceRef-name-required"),
        pytest.param(changed("spec.interval", "10 minutes"), id="interval-pattern"),
        pytest.param(changed("spec.retryInterval", "1d"), id="retryInterval-pattern"),
        pytest.param(changed("spec.timeout", "-5m"), id="timeout-pattern"),
        pytest.param(changed("spec.sourceRef.kind", "HelmRepository"), id="source-kind-enum"),
        pytest.param(changed("spec.deletionPolicy", "Keep"), id="deletionPolicy-enum"),
        pytest.param(changed("spec.targetNamespace", "n" * 64), id="targetNamespace-max-63"),
        pytest.param(changed("spec.targetNamespace", ""), id="targetNamespace-min-1"),
        pytest.param(changed("spec.namePrefix", ""), id="namePrefix-min-1"),
        pytest.param(changed("spec.nameSuffix", "s" * 201), id="nameSuffix-max-200"),
        pytest.param(changed("spec.buildMetadata", ["managedByLabel"]), id="buildMetadata-enum"),
        pytest.param(changed("spec.decryption.provider", "vault"), id="decryption-provider"),
        pytest.param(changed("spec.patches.0", {"target": {"kind": "X"}}), id="patch-required"),
        pytest.param(changed("spec.images.0", {"newTag": "1"}), id="image-name-required"),
        pytest.param(
            changed("spec.postBuild.substituteFrom.0.kind", "Bucket"), id="substituteFrom-kind"
        ),
        pytest.param(
            changed("spec.postBuild.substituteFrom.0.name", ""), id="substituteFrom-name-min-1"
        ),
        pytest.param(
            changed("spec.postBuild.substituteStrategy", "Never"), id="substituteStrategy-enum"
        ),
        pytest.param(changed("spec.healthCheckExprs.0.current", None), id="healthCheck-current"),
        pytest.param(changed("spec.kubeConfig", {}), id="kubeConfig-needs-a-reference"),
        pytest.param(
            changed(
                "spec.kubeConfig",
                {"secretRef": {"name": "kubeconfig"}, "configMapRef": {"name": "cluster"}},
            ),
            id="kubeConfig-one-reference-only",
        ),
        pytest.param(changed("status.inventory.entries.0", {"id": "x"}), id="inventory-needs-v"),
        pytest.param(
            changed("status.history.0.totalReconciliations", "many"), id="history-count-integer"
        ),
    ],
)
def test_invalid_kustomizations_are_rejected(obj: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Kustomization.from_dict(obj)


@pytest.mark.parametrize(
    ("spec", "timeout", "retry"),
    [
        pytest.param({"interval": "10m"}, 570.0, 600.0, id="interval-less-30s"),
        pytest.param({"interval": "40s"}, 30.0, 40.0, id="floored-at-30s"),
        pytest.param({"interval": "1h", "timeout": "2m"}, 120.0, 3600.0, id="explicit-timeout"),
        pytest.param({"interval": "1h", "timeout": "5s"}, 30.0, 3600.0, id="explicit-floored"),
        pytest.param({"interval": "5m", "retryInterval": "30s"}, 270.0, 30.0, id="retryInterval"),
    ],
)
def test_timeout_and_retry_interval_as_flux_derives_them(
    spec: dict[str, Any], timeout: float, retry: float
) -> None:
    obj = Kustomization.from_dict(minimal(**spec))

    assert obj.timeout_seconds == timeout
    assert obj.retry_interval_seconds == retry


def test_the_crd_names_and_columns_are_flux_ones() -> None:
    crd = render_crd([Kustomization])

    assert crd["metadata"]["name"] == "kustomizations.kustomize.toolkit.fluxcd.io"
    assert crd["spec"]["names"]["shortNames"] == ["ks"]
    assert crd["spec"]["names"]["categories"] == ["all", "fluxcd", "fluxcd-appliers"]
    (version,) = crd["spec"]["versions"]
    assert [column["name"] for column in version["additionalPrinterColumns"]] == [
        "Age",
        "Ready",
        "Status",
    ]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["status"]["default"] == {"observedGeneration": -1}
    assert sorted(schema["spec"]["required"]) == ["interval", "prune", "sourceRef"]
    rules = schema["spec"]["properties"]["kubeConfig"]["x-kubernetes-validations"]
    assert rules[0]["rule"] == "has(self.configMapRef) != has(self.secretRef)"
