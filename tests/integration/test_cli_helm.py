"""The command line's Helm kinds against a real control plane: ``create source helm`` and
``create helmrelease`` print Flux's manifests, an oci HelmRepository is applied and left alone
(static, as in Flux), and ``get``/``export``/``suspend`` of HelmReleases show what the object
holds. The helm controller itself is tested elsewhere: here the status is written as it would."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.kube import KubeClient
from helm.api_v2 import HelmRelease
from tests.integration.cli import Cli, golden

pytestmark = pytest.mark.integration


async def test_create_export_prints_flux_manifests_and_bad_flags_are_usage_errors(
    cli: Cli, tmp_path: Path
) -> None:
    first = tmp_path / "values.yaml"
    first.write_text("replicaCount: 2\nimage:\n  tag: 6.0.0\n  pullPolicy: Always\n")
    second = tmp_path / "more.yaml"
    second.write_text("image:\n  tag: 6.1.0\n")
    made = [
        await cli(
            "create",
            "source",
            "helm",
            "podinfo",
            "--url=https://charts.example/podinfo",
            "--secret-ref=basic",
            "--pass-credentials",
            "--export",
        ),
        await cli(
            "create",
            "source",
            "helm",
            "registry",
            "--url=oci://registry.example/charts",
            "--oci-provider=aws",
            "--export",
        ),
        await cli(
            "create",
            "hr",
            "podinfo",
            "--source=helmrepository/podinfo.sources",
            "--chart=podinfo",
            "--chart-version=>=6.0.0",
            f"--values={first},{second}",
            "--values-from=Secret/podinfo-values",
            "--values-from=configmap/podinfo-defaults",
            "--target-namespace=apps",
            "--create-target-namespace",
            "--depends-on=infra/cert-manager",
            "--export",
        ),
        await cli(
            "create", "helmrelease", "from-oci", "--chart-ref=OCIRepository/podinfo", "--export"
        ),
    ]
    assert [result.code for result in made] == [0, 0, 0, 0], [result.err for result in made]
    golden("create-helm-export.yaml", cli.normalized("".join(r.out for r in made)))

    refused = {
        "no-chart": await cli("create", "hr", "x", "--export"),
        "both": await cli(
            "create",
            "hr",
            "x",
            "--chart=c",
            "--source=HelmRepository/r",
            "--chart-ref=HelmChart/c",
            "--export",
        ),
        "source-kind": await cli(
            "create", "hr", "x", "--chart=c", "--source=OCIRepository/r", "--export"
        ),
        "values-kind": await cli(
            "create", "hr", "x", "--chart-ref=HelmChart/c", "--values-from=Pod/p", "--export"
        ),
        "values-file": await cli(
            "create",
            "hr",
            "x",
            "--chart-ref=HelmChart/c",
            f"--values={tmp_path / 'none'}",
            "--export",
        ),
        "scheme": await cli("create", "source", "helm", "x", "--url=git://h/r", "--export"),
    }
    assert {name: result.code for name, result in refused.items()} == dict.fromkeys(refused, 2)
    assert refused["source-kind"].err.startswith(
        "✗ --source 'OCIRepository/r': expected KIND/NAME[.NAMESPACE], KIND one of HelmRepository"
    )


async def test_an_oci_helm_repository_is_static_applied_and_not_waited_for(cli: Cli) -> None:
    created = await cli(
        "create", "source", "helm", "registry", "--url=oci://registry.example/charts"
    )
    assert created.code == 0, created.err
    assert "static: no controller reconciles it" in created.err
    reconciled = await cli("reconcile", "source", "helm", "registry")
    assert reconciled.code == 0, reconciled.err
    assert "is static" in reconciled.err


async def test_get_export_and_suspend_of_a_helmrelease(
    cli: Cli, kube: KubeClient, namespace: str
) -> None:
    await kube.create(
        HelmRelease.info,
        {
            "apiVersion": HelmRelease.info.api_version,
            "kind": "HelmRelease",
            "metadata": {
                "name": "podinfo",
                "namespace": namespace,
                "annotations": {"reconcile.fluxcd.io/forceAt": "2026-01-01T00:00:00Z"},
            },
            "spec": {
                "interval": "5m",
                "chart": {
                    "spec": {
                        "chart": "podinfo",
                        "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
                    }
                },
            },
        },
    )
    # As the helm controller writes it once the release is installed.
    status = {
        "observedGeneration": 1,
        "lastAttemptedRevision": "6.1.0",
        "history": [
            {
                "name": "podinfo",
                "namespace": namespace,
                "version": 2,
                "status": "deployed",
                "chartName": "podinfo",
                "chartVersion": "6.1.0",
                "firstDeployed": "2026-01-01T00:00:00Z",
                "lastDeployed": "2026-01-01T00:00:00Z",
                "configDigest": "sha256:" + "0" * 64,
                "digest": "sha256:" + "1" * 64,
            }
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "UpgradeSucceeded",
                "message": "Helm upgrade succeeded for release podinfo with chart podinfo@6.1.0",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    await kube.patch(
        HelmRelease.info, namespace, "podinfo", {"status": status}, subresource="status"
    )

    listed = await cli("get", "hr")
    assert listed.code == 0, listed.err
    exported = await cli("export", "helmrelease", "podinfo")
    assert exported.code == 0, exported.err
    suspended = await cli("suspend", "helmreleases", "podinfo")
    assert suspended.code == 0, suspended.err
    after = await cli("get", "helmrelease", "podinfo")
    golden(
        "get-export-helmrelease.txt",
        cli.normalized(listed.out + exported.out + after.out),
    )
    refused = await cli("reconcile", "kustomization", "podinfo", "--force")
    assert refused.code == 2
    # The status above was written by hand, for a generation suspend has moved past: not one
    # for the namespace fixture's kstatus check.
    await kube.delete(HelmRelease.info, namespace, "podinfo")
