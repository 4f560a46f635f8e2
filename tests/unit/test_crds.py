"""The CRD pipeline: pydantic models to structural CRDs in crds/, and the GitRepository model."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import Field, ValidationError

from controllers.api import KubeModel, ResourceInfo
from controllers.crd import render_crd, structural_schema
from hack.generate_crds import CRDS_DIR, main, rendered_crds, stale_files, write_crds
from source.api_v1 import GitRepository

# From the Flux GitRepository documentation: an object as the API server returns it.
PODINFO = """
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: podinfo
  namespace: default
  generation: 1
spec:
  interval: 5m0s
  url: https://github.com/stefanprodan/podinfo
  ref:
    branch: master
  timeout: 60s
  ignore: |
    # exclude all
    /*
    # include deploy dir
    !/deploy
  include:
    - repository:
        name: podinfo-config
      fromPath: deploy/overlays
      toPath: config
  verify:
    mode: HEAD
    secretRef:
      name: pgp-public-keys
status:
  artifact:
    digest: sha256:2f0a6ea6a4f1a2cf5aa2d1e9bd5e8c6de3d8e47c8b0a5c9c9d2f1e4f5a6b7c8d
    lastUpdateTime: "2022-02-14T11:23:36Z"
    path: gitrepository/default/podinfo/132f4e719209eb10b9485302f8593fc0e680f4fc.tar.gz
    revision: master@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc
    size: 91318
    url: http://source-controller.flux-system.svc.cluster.local./gitrepository/default/podinfo/132f4e719209eb10b9485302f8593fc0e680f4fc.tar.gz
  conditions:
    - lastTransitionTime: "2022-02-14T11:23:36Z"
      message: stored artifact for revision 'master@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc'
      observedGeneration: 1
      reason: Succeeded
      status: "True"
      type: Ready
  observedGeneration: 1
  observedIgnore: |
    # exclude all
    /*
    # include deploy dir
    !/deploy
  sourceVerificationMode: HEAD
"""


def podinfo() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(PODINFO)
    return manifest


def installed_crds() -> list[dict[str, Any]]:
    """The CRDs as the integration tests install them: every file in crds/."""
    return [yaml.safe_load(path.read_text()) for path in sorted(CRDS_DIR.glob("*.yaml"))]


def schema_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below ``node`` (included), with its path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")


def gitrepository_crd() -> dict[str, Any]:
    (crd,) = (crd for crd in installed_crds() if crd["spec"]["names"]["kind"] == "GitRepository")
    return crd


def gitrepository_schema() -> dict[str, Any]:
    schema: dict[str, Any] = gitrepository_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_crds_dir_is_up_to_date() -> None:
    assert stale_files() == [], "crds/ is stale: run python hack/generate_crds.py"


def test_every_kind_has_a_crd_file() -> None:
    assert sorted(rendered_crds()) == sorted(path.name for path in CRDS_DIR.glob("*.yaml"))
    assert "source.toolkit.fluxcd.io_gitrepositories.yaml" in rendered_crds()


@pytest.mark.parametrize(
    ("damage", "stale"),
    [
        pytest.param(
            lambda d: (d / "source.toolkit.fluxcd.io_gitrepositories.yaml").write_text("---\n"),
            ["source.toolkit.fluxcd.io_gitrepositories.yaml"],
            id="edited",
        ),
        pytest.param(
            lambda d: (d / "source.toolkit.fluxcd.io_gitrepositories.yaml").unlink(),
            ["source.toolkit.fluxcd.io_gitrepositories.yaml"],
            id="missing",
        ),
        pytest.param(
            lambda d: (d / "source.toolkit.fluxcd.io_buckets.yaml").write_text("---\n"),
            ["source.toolkit.fluxcd.io_buckets.yaml"],
            id="no-longer-generated",
        ),
    ],
)
def test_check_names_stale_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], object],
    stale: list[str],
) -> None:
    write_crds(tmp_path)
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    damage(tmp_path)

    assert stale_files(tmp_path) == stale
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert stale[0] in capsys.readouterr().err
    write_crds(tmp_path)
    assert stale_files(tmp_path) == []


def structural_errors(root: dict[str, Any]) -> list[str]:
    """What makes ``root`` non-structural for the API server (a subset of its checks)."""
    errors = []
    for path, node in schema_nodes(root, "$"):
        if forbidden := {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title"} & set(node):
            errors.append(f"{path}: {sorted(forbidden)}")
        if node.get("type") not in ("object", "array", "string", "integer", "number", "boolean"):
            errors.append(f"{path}: type {node.get('type')!r}")
        if "properties" in node and "additionalProperties" in node:
            errors.append(f"{path}: properties and additionalProperties")
        if node.get("x-kubernetes-preserve-unknown-fields") and node.get("type") != "object":
            errors.append(f"{path}: preserved unknown fields outside an object")
        if node.get("type") == "array" and "items" not in node:
            errors.append(f"{path}: array without items")
        if "default" in node and node["default"] is None:
            errors.append(f"{path}: null default")
    return errors


@pytest.mark.parametrize(
    "path", [pytest.param(path, id=path.name) for path in sorted(CRDS_DIR.glob("*.yaml"))]
)
def test_crd_schema_is_structural(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        assert structural_errors(root) == []
        assert set(root["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}
        assert root["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, id="ref"),
        pytest.param({"type": "object", "properties": {"a": {}}}, id="untyped"),
        pytest.param({"type": "object", "properties": {"a": {"type": "null"}}}, id="null-type"),
        pytest.param(
            {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}, id="any-of"
        ),
        pytest.param(
            {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            id="properties-and-additional",
        ),
        pytest.param({"type": "array"}, id="array-without-items"),
        pytest.param(
            {"type": "string", "x-kubernetes-preserve-unknown-fields": True}, id="preserved-string"
        ),
        pytest.param({"type": "string", "default": None}, id="null-default"),
    ],
)
def test_structural_check_catches_violations(schema: dict[str, Any]) -> None:
    assert structural_errors(schema) != []


class Sample(KubeModel):
    """Covers the conversions GitRepository does not use."""

    values: dict[str, Any] | None = Field(default=None, description="Free-form values.")
    labels: dict[str, str] | None = None
    retries: int = Field(default=3, gt=0, le=10)
    tags: set[str] | None = None
    kind: Literal["Sample"] = "Sample"


def test_structural_schema_conversions() -> None:
    schema = structural_schema(Sample)

    assert structural_errors(schema) == []
    assert schema == {
        "description": "Covers the conversions GitRepository does not use.",
        "type": "object",
        "properties": {
            "values": {
                "description": "Free-form values.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "retries": {
                "type": "integer",
                "default": 3,
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 10,
            },
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "x-kubernetes-list-type": "set",
            },
            "kind": {"type": "string", "default": "Sample", "enum": ["Sample"]},
        },
    }


class Untyped(KubeModel):
    anything: Any = None


class IntOrString(KubeModel):
    port: int | str


class Tree(KubeModel):
    children: list[Tree] | None = None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        pytest.param(Untyped, "Untyped.anything: type None", id="any"),
        pytest.param(IntOrString, "IntOrString.port: 'anyOf'", id="union"),
        pytest.param(Tree, "Tree.children[]: Tree refers to itself", id="recursive"),
    ],
)
def test_structural_schema_refuses_what_crds_cannot_express(
    model: type[KubeModel], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        structural_schema(model)


def test_gitrepository_crd_matches_flux() -> None:
    crd = gitrepository_crd()
    assert crd["metadata"]["name"] == "gitrepositories.source.toolkit.fluxcd.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": "GitRepository",
        "listKind": "GitRepositoryList",
        "plural": "gitrepositories",
        "singular": "gitrepository",
        "shortNames": ["gitrepo"],
        "categories": ["all", "fluxcd", "fluxcd-sources"],
    }
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == [
        ("URL", "string", ".spec.url"),
        ("Age", "date", ".metadata.creationTimestamp"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
    ]


def test_gitrepository_schema_matches_flux() -> None:
    root = gitrepository_schema()
    spec = root["properties"]["spec"]
    status = root["properties"]["status"]
    assert root["required"] == ["spec"]
    assert spec["required"] == ["interval", "url"]
    assert spec["properties"]["url"]["pattern"] == "^(http|https|ssh|git)://.*$"
    assert spec["properties"]["interval"]["pattern"] == r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
    assert spec["properties"]["timeout"]["default"] == "60s"
    assert spec["properties"]["provider"]["enum"] == ["generic", "aws", "azure", "github"]
    assert spec["properties"]["verify"]["properties"]["mode"]["default"] == "HEAD"
    assert spec["properties"]["verify"]["required"] == ["secretRef"]
    assert spec["properties"]["include"]["items"]["required"] == ["repository"]
    assert spec["properties"]["sparseCheckout"]["items"] == {"type": "string"}
    assert "serviceAccountName" in spec["x-kubernetes-validations"][0]["rule"]
    assert status["default"] == {"observedGeneration": -1}
    assert status["properties"]["artifact"]["required"] == [
        "digest",
        "lastUpdateTime",
        "path",
        "revision",
        "url",
    ]
    assert set(status["properties"]) == {
        "observedGeneration",
        "conditions",
        "lastHandledReconcileAt",
        "artifact",
        "includedArtifacts",
        "observedIgnore",
        "observedRecurseSubmodules",
        "observedInclude",
        "observedSparseCheckout",
        "sourceVerificationMode",
    }


def test_model_defaults_are_the_crd_defaults() -> None:
    manifest = podinfo()
    del manifest["spec"]["timeout"]
    del manifest["spec"]["verify"]["mode"]

    spec = GitRepository.model_validate(manifest).spec
    properties = gitrepository_schema()["properties"]["spec"]["properties"]

    assert spec.timeout == properties["timeout"]["default"]
    assert spec.verify is not None
    assert spec.verify.mode == properties["verify"]["properties"]["mode"]["default"]


def test_flux_manifest_round_trips() -> None:
    repo = GitRepository.model_validate(podinfo())

    assert repo.key == "default/podinfo"
    assert repo.spec.ref is not None
    assert repo.spec.ref.branch == "master"
    assert repo.status.artifact is not None
    assert repo.status.artifact.revision.startswith("master@sha1:")
    assert repo.to_dict() == podinfo()


def test_render_crd_refuses_mixed_kinds() -> None:
    class Other(GitRepository):
        info = ResourceInfo(group="example.com", version="v2", kind="Other", plural="others")

    with pytest.raises(ValueError, match="not a version of GitRepository"):
        render_crd([GitRepository, Other])


def changed(changes: dict[str, Any]) -> dict[str, Any]:
    """The podinfo manifest with each dotted path of ``changes`` set to its value."""
    manifest = podinfo()
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = manifest
        for name in parents:
            node = node[name]
        node[leaf] = value
    return manifest


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(changed({"spec.interval": "5 minutes"}), id="interval-words"),
        pytest.param(changed({"spec.interval": "1d"}), id="interval-days"),
        pytest.param(changed({"spec.interval": ""}), id="interval-empty"),
        pytest.param(changed({"spec.timeout": "1h"}), id="timeout-hours"),
        pytest.param(changed({"spec.url": "git@github.com:stefanprodan/podinfo"}), id="url-scp"),
        pytest.param(changed({"spec.url": "ftp://example.com/repo.git"}), id="url-ftp"),
        pytest.param(changed({"spec.provider": "gitlab"}), id="provider-unknown"),
        pytest.param(changed({"spec.verify.mode": "tag"}), id="verify-mode-case"),
        pytest.param(changed({"spec.serviceAccountName": "git"}), id="sa-without-provider"),
        pytest.param(changed({"spec.include": [{"fromPath": "x"}]}), id="include-no-repository"),
        pytest.param(changed({"status.artifact.digest": "2f0a6ea6"}), id="digest-no-algorithm"),
        pytest.param(changed({"spec": {"url": "https://x"}}), id="interval-missing"),
    ],
)
def test_invalid_gitrepository_is_rejected(manifest: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GitRepository.model_validate(manifest)


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(changed({"spec.interval": "1h30m"}), id="interval-compound"),
        pytest.param(changed({"spec.interval": "1.5s"}), id="interval-fraction"),
        pytest.param(changed({"spec.url": "ssh://git@github.com/x/y"}), id="url-ssh"),
        pytest.param(changed({"spec.verify.mode": "head"}), id="verify-mode-legacy"),
        pytest.param(
            changed({"spec.provider": "azure", "spec.serviceAccountName": "git"}),
            id="sa-with-azure",
        ),
    ],
)
def test_valid_gitrepository_is_accepted(manifest: dict[str, Any]) -> None:
    assert GitRepository.model_validate(manifest).to_dict() == manifest
