"""The image automation kinds on the command line, as a user runs it, against the real control
plane, ``python -m image_automation`` as a process and docker-registry: ``create image
repository`` and ``create image policy`` wait until the controller reports Ready, ``get images
all`` shows Flux's columns, ``reconcile``, ``suspend``, ``resume`` and ``export`` work on them.
(The manifests of every flag, and ``create image update``'s, are in tests/unit/test_cli_image.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from controllers.envtest import ControlPlane
from tests.integration.cli import Cli
from tests.integration.processes import ControllerProcess, _common
from tests.integration.test_imagerepository import push_tags
from tests.registry import OCIRegistries

pytestmark = pytest.mark.integration


@pytest.fixture
async def image_controller(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[ControllerProcess]:
    process = ControllerProcess("image_automation", _common(control_plane), tmp_path, namespace)
    try:
        await process.start()
        yield process
    finally:
        code = await process.stop()
        print(process.log_path.read_text())
    assert code == 0


def table(text: str) -> list[list[str]]:
    """The rows of a table, split on runs of two spaces or more."""
    return [
        [cell.strip() for cell in line.split("  ") if cell.strip()]
        for line in text.splitlines()
        if line.strip()
    ]


async def test_create_get_reconcile_suspend_resume_and_export_images(
    cli: Cli,
    namespace: str,
    oci_registry: OCIRegistries,
    image_controller: ControllerProcess,
) -> None:
    registry, path = oci_registry.plain, f"{namespace}/app"
    await push_tags(registry, path, ["1.0.0", "1.1.0", "2.0.0-rc.1"])
    image = f"{registry.host}/{path}"

    repository = await cli(
        "create", "image", "repository", "app", f"--image={image}", "--insecure", "--interval=10m"
    )
    assert repository.code == 0, repository.err
    assert repository.err.splitlines()[-1] == f"✔ ImageRepository {namespace}/app is ready"
    policy = await cli(
        "create", "image", "policy", "app", "--image-ref=app", "--select-semver=>=1.0.0"
    )
    assert policy.code == 0, policy.err

    shown = await cli("get", "images", "all")
    assert shown.code == 0, shown.err
    repositories, policies = shown.out.split("\n\n")
    (header, row) = table(repositories)
    assert header == ["NAME", "LAST SCAN", "SUSPENDED", "READY", "MESSAGE"]
    assert row[0] == "imagerepository/app"
    assert row[2:4] == ["False", "True"]
    resolved = f"Latest image tag for {image} resolved to 1.1.0"
    assert table(policies) == [
        ["NAME", "IMAGE", "TAG", "READY", "MESSAGE"],
        ["imagepolicy/app", image, "1.1.0", "True", resolved],
    ]

    await push_tags(registry, path, ["1.2.0"])
    rescanned = await cli("reconcile", "image", "repository", "app")
    assert rescanned.code == 0, rescanned.err
    reconciled = await cli("reconcile", "image", "policy", "app")
    assert reconciled.code == 0, reconciled.err
    (_, (_, _, tag, _, _)) = table((await cli("get", "image", "policy", "app")).out)
    assert tag == "1.2.0"

    suspended = await cli("suspend", "image", "repository", "app")
    assert suspended.code == 0, suspended.err
    (_, (_, _, now_suspended, suspended_by, _, _)) = table(
        (await cli("get", "image", "repository")).out
    )
    assert (now_suspended, suspended_by) == ("True", "weir-admin, <1m ago")
    refused = await cli("reconcile", "image", "repository", "app")
    assert refused.code == 1
    resumed = await cli("resume", "image", "repository", "app")
    assert resumed.code == 0, resumed.err

    exported = await cli("export", "image", "policy", "--all")
    assert exported.code == 0, exported.err
    assert list(yaml.safe_load_all(exported.out)) == [
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImagePolicy",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "imageRepositoryRef": {"name": "app"},
                "policy": {"semver": {"range": ">=1.0.0"}},
                "digestReflectionPolicy": "Never",
            },
        }
    ]
