"""HelmRelease action settings that Helm's library carries out: ``disableSchemaValidation``,
``upgrade.preserveValues``, ``install.replace`` and ``upgrade.chartNameChangeStrategy``. The
source controller and the helm controller run as processes; what Helm stored is read with the
Go-built ``helm`` CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controllers.binaries import find_binary
from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP
from controllers.kube import KubeClient
from tests.helmcli import helm_env
from tests.integration.harness import wait_for_deletion
from tests.integration.kinds import DEPLOYMENT
from tests.integration.processes import Controllers
from tests.integration.test_helmrelease import (
    HR,
    controllers,
    helm_cli,
    helmrelease,
    released,
)
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
    reasons_once,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRelease tests.
__all__ = ["charts", "controllers", "plain"]

# Helm's values.schema.json: at most two replicas (no "$schema": nothing to fetch).
AT_MOST_TWO_REPLICAS = {
    "type": "object",
    "properties": {"replicaCount": {"type": "integer", "maximum": 2}},
}


def failed_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    """The Released condition has ``reason``, for the current generation's attempt."""

    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, "Released") or {}
        status = obj.get("status") or {}
        return (
            found.get("reason") == reason
            and status.get("lastAttemptedGeneration") == obj["metadata"]["generation"]
        )

    return check


def ready(obj: dict[str, Any]) -> bool:
    found = condition(obj, "Ready") or {}
    status = obj.get("status") or {}
    return (
        found.get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


def helm_text(control_plane: ControlPlane, home: Path, *args: str) -> str:
    """The Go-built ``helm`` for a command without JSON output (``uninstall``)."""
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    env = helm_env(home, inherit=False)
    done = subprocess.run(
        [str(binary), f"--kubeconfig={control_plane.admin_kubeconfig}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def chart_spec(chart: str) -> dict[str, Any]:
    return {
        "spec": {
            "chart": chart,
            "version": "1.x",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
        }
    }


def history(control_plane: ControlPlane, home: Path, name: str, namespace: str) -> list[Any]:
    entries = helm_cli(control_plane, home, "history", name, f"--namespace={namespace}")
    return [(h["revision"], h["status"], h["chart"]) for h in entries]


async def test_disable_schema_validation_lets_values_the_schema_refuses_through(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    charts.helm("create", "strict")
    (charts.work / "strict" / "values.schema.json").write_text(json.dumps(AT_MOST_TWO_REPLICAS))
    charts.add("strict", "1.0.0")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    obj = helmrelease("app", namespace, values={"replicaCount": 3})
    obj["spec"]["chart"] = chart_spec("strict")
    await kube.create(HR, obj)

    # Without it, Helm refuses the values before storing anything: retried, nothing released.
    failed = await controllers.wait_for(
        kube, HR, namespace, "app", failed_with("InstallFailed"), "install refused", 150
    )
    message = (condition(failed, "Released") or {})["message"]
    assert "schema" in message
    assert "replicaCount" in message
    assert helm_cli(control_plane, tmp_path / "cli", "list", f"--namespace={namespace}") == []

    await kube.patch(HR, namespace, "app", {"spec": {"install": {"disableSchemaValidation": True}}})
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {namespace}/app.v1 with chart strict@1.0.0"),
        "installed without the schema",
        timeout=150,
    )
    assert (await kube.get(DEPLOYMENT, namespace, "app-strict"))["spec"]["replicas"] == 3

    # The upgrade has a setting of its own: unset, the schema holds again.
    await kube.patch(HR, namespace, "app", {"spec": {"values": {"replicaCount": 4}}})
    failed = await controllers.wait_for(
        kube, HR, namespace, "app", failed_with("UpgradeFailed"), "upgrade refused", 150
    )
    assert "replicaCount" in (condition(failed, "Released") or {})["message"]
    await kube.patch(HR, namespace, "app", {"spec": {"upgrade": {"disableSchemaValidation": True}}})
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm upgrade succeeded for release {namespace}/app.v2 with chart strict@1.0.0"),
        "upgraded without the schema",
        timeout=150,
    )
    assert (await kube.get(DEPLOYMENT, namespace, "app-strict"))["spec"]["replicas"] == 4
    assert history(control_plane, tmp_path / "cli", "app", namespace) == [
        (1, "superseded", "strict-1.0.0"),
        (2, "deployed", "strict-1.0.0"),
    ]


# A ConfigMap with a field the API server does not know, when the values ask for it.
UNKNOWN_FIELD_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-extra
data:
  greeting: hello
{{- if .Values.bogus }}
bogus: true
{{- end }}
"""


async def test_objects_with_unknown_fields_are_refused_whatever_disable_openapi_validation(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    # weir never runs Helm's client-side OpenAPI probe (helm.options): the API server checks
    # every object strictly instead, with or without disableOpenAPIValidation.
    charts.helm("create", "fields")
    (charts.work / "fields" / "templates" / "extra.yaml").write_text(UNKNOWN_FIELD_TEMPLATE)
    charts.add("fields", "1.0.0")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    obj = helmrelease("app", namespace, values={"bogus": True})
    obj["spec"]["chart"] = chart_spec("fields")
    obj["spec"]["install"] = {"disableOpenAPIValidation": True}
    await kube.create(HR, obj)

    failed = await controllers.wait_for(
        kube, HR, namespace, "app", failed_with("InstallFailed"), "install refused", 150
    )
    message = (condition(failed, "Released") or {})["message"]
    assert ".bogus: field not declared in schema" in message, message

    await kube.patch(HR, namespace, "app", {"spec": {"values": {"bogus": False}}})
    await controllers.wait_for(kube, HR, namespace, "app", ready, "installed", timeout=150)
    extra = await kube.get(CONFIG_MAP, namespace, "app-extra")
    assert extra["data"] == {"greeting": "hello"}


async def test_preserve_values_keeps_values_set_by_hand(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """A value set with ``helm upgrade --reuse-values --set`` by hand survives the next upgrade
    with ``preserveValues``, and is dropped without it (Flux's reset-values)."""
    home = tmp_path / "cli"
    chart = str(charts.root / "podinfo-1.0.0.tgz")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    first = {"podAnnotations": {"weir.test/round": "one"}}
    for name, preserve in (("keep", True), ("reset", False)):
        await kube.create(
            HR, helmrelease(name, namespace, values=first, upgrade={"preserveValues": preserve})
        )
    for name in ("keep", "reset"):
        await controllers.wait_for(
            kube,
            HR,
            namespace,
            name,
            released(
                f"Helm install succeeded for release {namespace}/{name}.v1 with chart podinfo@1.0.0"
            ),
            "installed",
            timeout=150,
        )
        # A value no template reads: the objects stay as weir applied them.
        helm_cli(
            control_plane,
            home,
            "upgrade",
            name,
            chart,
            f"--namespace={namespace}",
            "--reuse-values",
            "--set=byHand=kept",
        )

    second = {"podAnnotations": {"weir.test/round": "two"}}
    for name in ("keep", "reset"):
        await kube.patch(HR, namespace, name, {"spec": {"values": second}})
    for name in ("keep", "reset"):
        await controllers.wait_for(
            kube,
            HR,
            namespace,
            name,
            released(
                f"Helm upgrade succeeded for release {namespace}/{name}.v3 with chart podinfo@1.0.0"
            ),
            "upgraded with new values",
            timeout=150,
        )
    kept = helm_cli(control_plane, home, "get", "values", "keep", f"--namespace={namespace}")
    assert kept == {**second, "byHand": "kept"}
    reset = helm_cli(control_plane, home, "get", "values", "reset", f"--namespace={namespace}")
    assert reset == second


async def test_install_replace_reuses_the_name_of_an_uninstalled_release(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    home = tmp_path / "cli"
    chart = str(charts.root / "podinfo-1.0.0.tgz")
    helm_cli(control_plane, home, "install", "app", chart, f"--namespace={namespace}")
    helm_text(control_plane, home, "uninstall", "app", f"--namespace={namespace}", "--keep-history")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(HR, helmrelease("app", namespace))

    # Helm keeps the name of an uninstalled release it has the history of...
    failed = await controllers.wait_for(
        kube, HR, namespace, "app", failed_with("InstallFailed"), "install refused", 150
    )
    assert (
        "cannot reuse a name that is still in use"
        in (condition(failed, "Released") or {})["message"]
    )
    # ... unless told to replace it.
    await kube.patch(HR, namespace, "app", {"spec": {"install": {"replace": True}}})
    await controllers.wait_for(kube, HR, namespace, "app", ready, "installed", timeout=150)
    # Helm's replace supersedes the uninstalled revision.
    assert history(control_plane, home, "app", namespace) == [
        (1, "superseded", "podinfo-1.0.0"),
        (2, "deployed", "podinfo-1.0.0"),
    ]


async def test_a_renamed_chart_is_reinstalled_unless_updated_in_place(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """Flux 2.9: a new chart name uninstalls the release and installs it again (the default,
    ``Reinstall``); ``InPlaceUpdate`` upgrades it."""
    home = tmp_path / "cli"
    charts.add("webapp", "1.0.0")
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    strategies = {"default": None, "reinstall": "Reinstall", "inplace": "InPlaceUpdate"}
    for name, strategy in strategies.items():
        upgrade = {"chartNameChangeStrategy": strategy} if strategy else {}
        await kube.create(HR, helmrelease(name, namespace, upgrade=upgrade))
    for name in strategies:
        await controllers.wait_for(
            kube,
            HR,
            namespace,
            name,
            released(
                f"Helm install succeeded for release {namespace}/{name}.v1 with chart podinfo@1.0.0"
            ),
            "installed",
            timeout=150,
        )
    for name in strategies:
        await kube.patch(HR, namespace, name, {"spec": {"chart": chart_spec("webapp")}})

    for name in ("default", "reinstall"):
        obj = await controllers.wait_for(
            kube,
            HR,
            namespace,
            name,
            released(
                f"Helm install succeeded for release {namespace}/{name}.v1 with chart webapp@1.0.0"
            ),
            "reinstalled",
            timeout=150,
        )
        assert history(control_plane, home, name, namespace) == [(1, "deployed", "webapp-1.0.0")]
        assert [(s["version"], s["chartName"]) for s in obj["status"]["history"]] == [(1, "webapp")]
        reasons = await reasons_once(kube, namespace, name, "InstallSucceeded", 2)
        assert reasons.count("UninstallSucceeded") == 1
        assert "UpgradeSucceeded" not in reasons
        assert await kube.get_or_none(DEPLOYMENT, namespace, f"{name}-podinfo") is None
        assert await kube.get_or_none(DEPLOYMENT, namespace, f"{name}-webapp") is not None

    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "inplace",
        released(
            f"Helm upgrade succeeded for release {namespace}/inplace.v2 with chart webapp@1.0.0"
        ),
        "upgraded in place",
        timeout=150,
    )
    assert history(control_plane, home, "inplace", namespace) == [
        (1, "superseded", "podinfo-1.0.0"),
        (2, "deployed", "webapp-1.0.0"),
    ]
    reasons = await reasons_once(kube, namespace, "inplace", "UpgradeSucceeded", 1)
    assert "UninstallSucceeded" not in reasons
    # The old chart's Deployment goes with the upgrade (the new manifest no longer has it).
    await wait_for_deletion(kube, DEPLOYMENT, namespace, "inplace-podinfo", timeout=30)
