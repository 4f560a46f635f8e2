"""The HelmRelease CRD rendered from helm/api_v2.py, installed in the real API server: Flux's
documented manifests are stored, what Flux's CRD refuses is refused with Flux's message, and
what the server stores (defaults filled in) reads back into the model unchanged."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from controllers.crd import render_yaml
from controllers.envtest import ControlPlane
from controllers.kube import ApiError, KubeClient
from helm.api_v2 import HelmRelease
from tests.unit.test_helm_api import DOCUMENTED, FRAGMENTS, base, manifest, with_fragment

pytestmark = pytest.mark.integration

HR = HelmRelease.info


@pytest.fixture
def helmrelease_crd(control_plane: ControlPlane, tmp_path: Path) -> None:
    # Server-side apply: the same as the crds/ file the bundle will carry, once it exists.
    path = tmp_path / "helmreleases.yaml"
    path.write_text(render_yaml([HelmRelease]))
    control_plane.install_crds([path])


def examples() -> list[Any]:
    return [pytest.param(manifest(text), id=name) for name, text in DOCUMENTED.items()] + [
        pytest.param(with_fragment(text), id=name) for name, text in FRAGMENTS.items()
    ]


@pytest.mark.usefixtures("helmrelease_crd")
@pytest.mark.parametrize("obj", examples())
async def test_flux_manifests_are_stored_and_read_back(
    kube: KubeClient, namespace: str, obj: dict[str, Any]
) -> None:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    status = obj.pop("status", None)

    stored = await kube.create(HR, obj)
    if status is not None:
        name = obj["metadata"]["name"]
        stored = await kube.patch(HR, namespace, name, {"status": status}, subresource="status")

    release = HelmRelease.from_dict(stored)
    assert release.to_dict() == HelmRelease.from_dict(release.to_dict()).to_dict()
    # The server's defaults are the model's: reading what was sent gives the same spec.
    assert release.to_dict()["spec"] == HelmRelease.from_dict(obj).to_dict()["spec"]
    if status is None:
        assert stored["status"] == {"observedGeneration": -1}
    else:
        assert stored["status"] == {"observedGeneration": -1, **status}


@pytest.mark.usefixtures("helmrelease_crd")
@pytest.mark.parametrize(
    ("obj", "message"),
    [
        pytest.param(
            base(chart=manifest(DOCUMENTED["chart-template"])["spec"]["chart"]),
            "either chart or chartRef must be set",
            id="chart-and-chartRef",
        ),
        pytest.param(base(chartRef=None), "either chart or chartRef must be set", id="neither"),
        pytest.param(
            base(install={"strategy": {"name": "RemediateOnFailure", "retryInterval": "1m"}}),
            ".retryInterval cannot be set when .name is 'RemediateOnFailure'",
            id="install-retryInterval",
        ),
        pytest.param(
            base(upgrade={"strategy": {"name": "RemediateOnFailure", "retryInterval": "1m"}}),
            ".retryInterval can only be set when .name is 'RetryOnFailure'",
            id="upgrade-retryInterval",
        ),
        pytest.param(
            base(kubeConfig={"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}),
            "exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef",
            id="kubeConfig-both",
        ),
        pytest.param(base(kubeConfig={}), "exactly one of", id="kubeConfig-none"),
        pytest.param(base(releaseName="r" * 54), "spec.releaseName", id="releaseName-too-long"),
        pytest.param(
            base(valuesFrom=[{"kind": "Secret", "name": "v", "targetPath": "a=b"}]),
            "spec.valuesFrom[0].targetPath",
            id="targetPath-pattern",
        ),
        pytest.param(base(upgrade={"crds": "Replace"}), "spec.upgrade.crds", id="crds-enum"),
    ],
)
async def test_what_flux_refuses_the_api_server_refuses(
    kube: KubeClient, namespace: str, obj: dict[str, Any], message: str
) -> None:
    obj["metadata"]["namespace"] = namespace

    with pytest.raises(ApiError) as refused:
        await kube.create(HR, obj)

    assert refused.value.status == 422
    assert message in refused.value.message
