"""HelmRelease values against the real things: referenced ConfigMaps and Secrets in the real API
server, and the Go-built helm as the judge of the --set parser and of go-yaml's encoding."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controllers.binaries import find_binary
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from helm.api_v2 import HelmRelease
from helm.values import ValuesError, compose_values, encode_values, set_path_value
from tests.helmcli import helm_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm-home")
    return helm_env(home)


def render(env: dict[str, str], tmp_path: Path, template: str, *args: str) -> str:
    """What a chart whose only template is ``template`` renders to, with helm's ``args``."""
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "values.yaml").write_text(template)
    binary = find_binary("helm")
    assert binary is not None, "helm is built before the first integration test"
    done = subprocess.run(
        [str(binary), "template", "probe", str(chart), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("# Source: probe/templates/values.yaml\n", 1)[1]


# targetPath, value, literal: set as Flux does and as helm --set/--set-string/--set-literal does.
SET_CASES = [
    pytest.param("a.b", "1", False, id="int"),
    pytest.param("a.b", "TRUE", False, id="bool"),
    pytest.param("a.b", "0x10", False, id="hex-stays-string"),
    pytest.param("a.b", "-12", False, id="negative"),
    pytest.param("a.b", "9223372036854775808", False, id="beyond-int64"),
    pytest.param("a.b", "1.5", False, id="float-stays-string"),
    pytest.param("a.b", "{x,2,false}", False, id="inline-list"),
    pytest.param("a.b", "x,c=2", False, id="second-assignment"),
    pytest.param("a.b", r"x\,y", False, id="escaped-comma"),
    pytest.param("a[2].b", "x", False, id="list-of-maps"),
    pytest.param("a[1][0]", "x", False, id="nested-list"),
    pytest.param(r"a\.b.c", "x", False, id="escaped-dot"),
    pytest.param("a.b", '"123"', False, id="quoted-is-string"),
    pytest.param("a.b", "x=y", False, id="equals"),
    pytest.param("a.b", "", False, id="empty"),
    pytest.param("a.b", "a,b={c}[0]\\", True, id="literal"),
]


def helm_flag(path: str, value: str, literal: bool) -> str:
    if literal:
        return f"--set-literal={path}={value}"
    for quote in "'\"":
        if value.startswith(quote) and value.endswith(quote):
            return f"--set-string={path}={value.strip(chr(39) + chr(34))}"
    return f"--set={path}={value}"


@pytest.mark.parametrize(("path", "value", "literal"), SET_CASES)
def test_target_paths_are_set_as_helm_sets_them(
    helm_home: dict[str, str], tmp_path: Path, path: str, value: str, literal: bool
) -> None:
    ours: dict[str, Any] = {}
    set_path_value(ours, path, value, literal=literal)

    rendered = render(
        helm_home, tmp_path, "{{ toJson .Values }}\n", helm_flag(path, value, literal)
    )

    assert json.loads(rendered) == ours


ENCODED = {
    "image": {"repository": "nginx", "tag": "1.27"},
    "strings": ["yes", "no", "on", "~", "2024-01-02", "1e3", "0x1F", "012", "+1", ".5", "1:30"],
    "awkward": ["", " lead", "trail ", "a: b", "#x", "- y", "@z", "'q'", '"d"', "tab\there"],
    "multiLine": "first line\nsecond line\n",
    "keepTrailing": "end\n\n",
    "long": "word " * 30 + "end",
    "unicode": "héllo wörld ✓",
    "numbers": [0, -3, 2.5, 1e-7, 123456789.5, 1e21],
    "empty": {"map": {}, "list": []},
    "nested": [[1, [2]], {"k": [{"a": True}]}],
}


def test_values_are_encoded_as_helms_go_yaml(helm_home: dict[str, str], tmp_path: Path) -> None:
    # toYaml is sigs.k8s.io/yaml over go.yaml.in/yaml/v2, the encoder Flux digests with; its key
    # order differs from Flux's only for keys with digits, which this document has none of.
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(ENCODED))

    rendered = render(helm_home, tmp_path, "{{ toYaml .Values }}\n", f"--values={values_file}")

    assert rendered == encode_values(ENCODED).decode()


def configmap(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"metadata": {"name": name, "namespace": namespace}, "data": encoded}


def release(namespace: str, values_from: list[dict[str, Any]], values: Any) -> HelmRelease:
    return HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "interval": "5m",
                "chart": {
                    "spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "r"}}
                },
                "valuesFrom": values_from,
                "values": values,
            },
        }
    )


async def test_values_are_composed_from_references_in_order(
    kube: KubeClient, namespace: str
) -> None:
    await kube.create(
        CONFIG_MAP,
        configmap(
            namespace,
            "defaults",
            {
                "values.yaml": "replicas: 1\nimage: {repository: nginx, tag: '1.0'}\n"
                "ports: [80]\nlabels: {team: a}\n",
                "prod.yaml": "replicas: 3\nimage: {tag: '2.0'}\n",
                "port": "8080",
            },
        ),
    )
    await kube.create(
        SECRET, secret(namespace, "creds", {"password": "hunter2", "values.yaml": "db: {user: u}"})
    )
    obj = release(
        namespace,
        [
            {"kind": "ConfigMap", "name": "defaults"},
            {"kind": "ConfigMap", "name": "defaults", "valuesKey": "prod.yaml"},
            {"kind": "Secret", "name": "absent", "optional": True},
            {"kind": "Secret", "name": "creds"},
            {"kind": "Secret", "name": "creds", "valuesKey": "password", "targetPath": "db.pass"},
            {
                "kind": "ConfigMap",
                "name": "defaults",
                "valuesKey": "port",
                "targetPath": "ports[0]",
            },
            # Flux skips an optional reference's missing key too (its docs say otherwise).
            {"kind": "ConfigMap", "name": "defaults", "valuesKey": "absent", "optional": True},
        ],
        {"replicas": 5, "labels": {"tier": "web"}},
    )

    values = await compose_values(kube, obj)

    assert values == {
        "replicas": 5,  # spec.values last
        "image": {"repository": "nginx", "tag": "2.0"},  # later references win, maps merge
        "ports": [8080],  # --set typing
        "labels": {"team": "a", "tier": "web"},
        "db": {"user": "u", "pass": "hunter2"},
    }
    assert obj.spec.values == {"replicas": 5, "labels": {"tier": "web"}}


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        pytest.param({"kind": "Secret", "name": "absent"}, "resource not found", id="no-object"),
        pytest.param(
            {"kind": "Secret", "name": "creds", "valuesKey": "other"}, "key not found", id="no-key"
        ),
        pytest.param(
            {"kind": "Secret", "name": "creds", "valuesKey": "password", "targetPath": "a"},
            "failed to merge value",
            id="set-syntax-refused",
        ),
        pytest.param(
            {"kind": "Secret", "name": "creds", "valuesKey": "password"},
            "failed to read values data",
            id="not-a-map",
        ),
    ],
)
async def test_an_unusable_reference_names_object_and_key_only(
    kube: KubeClient, namespace: str, ref: dict[str, Any], problem: str
) -> None:
    await kube.create(SECRET, secret(namespace, "creds", {"password": "p4ss,w0rd"}))
    obj = release(namespace, [ref], None)

    with pytest.raises(ValuesError) as caught:
        await compose_values(kube, obj)

    error = caught.value
    key = ref.get("valuesKey", "values.yaml")
    assert (error.reason, error.name, error.key) == (
        "ValuesError",
        f"{namespace}/{ref['name']}",
        key,
    )
    assert problem in str(error)
    assert "p4ss" not in str(error)
    assert "w0rd" not in str(error)
