"""Rendering Kustomizations with the real kustomize binary (no Kubernetes needed).

An integration test all the same: the build worker and kustomize are built from Go.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.envtest import find_binary
from kustomize.api_v1 import KustomizationSpec
from kustomize.build import BuildError, build, set_common_metadata
from kustomize.buildworker import (
    WORKER_BINARY,
    BuildTimeout,
    BuildWorkers,
    WorkerError,
    find_build_worker,
)

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def kustomize() -> Path:
    """The kustomize binary of the same pins, to compare the worker's builds with."""
    binary = find_binary("kustomize")
    assert binary is not None, "kustomize is built before the integration tests start"
    return binary


@pytest.fixture
async def workers() -> AsyncIterator[BuildWorkers]:
    """Build workers as the controller runs them with --no-remote-bases."""
    pool = BuildWorkers(find_build_worker(), allow_remote_bases=False)
    yield pool
    await pool.close()


@pytest.fixture
async def remote_workers() -> AsyncIterator[BuildWorkers]:
    """Build workers as the controller runs them by default: remote bases allowed."""
    pool = BuildWorkers(find_build_worker(), allow_remote_bases=True)
    yield pool
    await pool.close()


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def spec(**fields: Any) -> KustomizationSpec:
    return KustomizationSpec.model_validate(
        {"interval": "5m", "prune": True, "sourceRef": {"kind": "GitRepository", "name": "app"}}
        | fields
    )


async def render(
    workers: BuildWorkers,
    root: Path,
    path: str = "./",
    fields: dict[str, Any] | None = None,
) -> Objects:
    """build(), then commonMetadata as the reconciler applies it (after substitution)."""
    kustomization = spec(**(fields or {}))
    objects = await build(root, path, kustomization, workers=workers, timeout=30)
    if kustomization.common_metadata is not None:
        metadata = kustomization.common_metadata
        set_common_metadata(objects, metadata.labels or {}, metadata.annotations or {})
    return objects


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(root.rglob("*"))
    }


def by_name(objects: Objects) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects}


def configmap(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.0
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
"""

# A base with two overlays, the layout of Flux's flux2-kustomize-helm-example.
OVERLAYS = {
    "base/deployment.yaml": DEPLOYMENT,
    "base/service.yaml": SERVICE,
    "base/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - deployment.yaml
          - service.yaml
        """,
    "common/team-label.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          labels:
            team: web
        """,
    "overlays/dev/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        namespace: dev
        namePrefix: dev-
        resources:
          - ../../base
        configMapGenerator:
          - name: settings
            literals:
              - LOG_LEVEL=debug
        patches:
          - patch: |
              - op: replace
                path: /spec/replicas
                value: 1
            target:
              kind: Deployment
        """,
    "overlays/production/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        namespace: production
        resources:
          - ../../base
          - hpa.yaml
        labels:
          - pairs:
              environment: production
        images:
          - name: nginx
            newTag: "1.25"
        patches:
          - path: ../../common/team-label.yaml
        replicas:
          - name: web
            count: 5
        """,
    "overlays/production/hpa.yaml": """
        apiVersion: autoscaling/v2
        kind: HorizontalPodAutoscaler
        metadata:
          name: web
        spec:
          scaleTargetRef:
            apiVersion: apps/v1
            kind: Deployment
            name: web
          minReplicas: 5
          maxReplicas: 10
        """,
}


@pytest.mark.parametrize(
    "overlay",
    [pytest.param("overlays/dev", id="dev"), pytest.param("overlays/production", id="production")],
)
async def test_overlays_build_as_kustomize_builds_them(
    kustomize: Path, workers: BuildWorkers, tmp_path: Path, overlay: str
) -> None:
    root = write(tmp_path, OVERLAYS)
    before = snapshot(root)
    # Flux loads files from anywhere in the artifact, as this restrictor does.
    command = [
        str(kustomize),
        "build",
        "--load-restrictor",
        "LoadRestrictionsNone",
        str(root / overlay),
    ]
    direct = await asyncio.to_thread(
        lambda: subprocess.run(command, check=True, capture_output=True).stdout
    )

    objects = await render(workers, root, overlay)

    assert objects == list(yaml.safe_load_all(direct))
    assert snapshot(root) == before


async def test_the_production_overlay_takes_effect(workers: BuildWorkers, tmp_path: Path) -> None:
    objects = await render(workers, write(tmp_path, OVERLAYS), "overlays/production")

    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "production"
    assert deployment["metadata"]["labels"] == {
        "app": "web",
        "environment": "production",
        "team": "web",
    }
    assert deployment["spec"]["replicas"] == 5
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert sorted(obj["kind"] for obj in objects) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Service",
    ]


# Generated kustomizations


async def test_a_directory_without_kustomization_gets_one(
    workers: BuildWorkers, tmp_path: Path
) -> None:
    root = write(
        tmp_path,
        {
            "apps/a.yaml": configmap("a"),
            "apps/nested/deeper/b.yml": configmap("b"),
            "apps/two.yaml": configmap("c") + "---\n" + configmap("d"),
            # Directories with a kustomization are resources; nothing else in them is read.
            "apps/with-kustomization/kustomization.yaml": "resources: [e.yaml]\n",
            "apps/with-kustomization/e.yaml": configmap("e"),
            "apps/with-kustomization/not-listed.yaml": configmap("not-listed"),
            # Not YAML by extension: ignored, even when kustomize could read it.
            "apps/README.md": "# apps\n",
            "apps/configmap.json": '{"apiVersion": "v1", "kind": "ConfigMap", '
            '"metadata": {"name": "json"}}',
            "apps/notes.txt": "not a manifest\n",
            "apps/values.yaml.orig": "not: read\n",
            "elsewhere.yaml": configmap("outside-the-path"),
        },
    )

    objects = await render(workers, root, "./apps")

    assert sorted(by_name(objects)) == ["a", "b", "c", "d", "e"]


async def test_an_empty_directory_builds_to_nothing(workers: BuildWorkers, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    assert await render(workers, tmp_path, "empty") == []


async def test_a_kustomization_without_resources_gets_flux_origin_annotations(
    workers: BuildWorkers, tmp_path: Path
) -> None:
    # Flux's guard against kustomize's "kustomization.yaml is empty" error has this effect.
    root = write(
        tmp_path,
        {
            "kustomization.yaml": """
                configMapGenerator:
                  - name: generated
                    literals: [A=1]
                """
        },
    )

    (generated,) = await render(workers, root)

    assert "config.kubernetes.io/origin" in generated["metadata"]["annotations"]


async def test_unknown_kustomization_fields_are_dropped_as_flux_does(
    workers: BuildWorkers, tmp_path: Path
) -> None:
    root = write(
        tmp_path,
        {
            "kustomization.yaml": "resources: [a.yaml]\ncommonLabel: {typo: x}\n",
            "a.yaml": configmap("a"),
        },
    )

    assert list(by_name(await render(workers, root))) == ["a"]


async def test_links_inside_the_artifact_are_followed(
    workers: BuildWorkers, tmp_path: Path
) -> None:
    root = write(
        tmp_path,
        {
            "shared/base/kustomization.yaml": "resources: [cm.yaml]\n",
            "shared/base/cm.yaml": configmap("from-linked-base"),
            "shared/single.yaml": configmap("from-linked-file"),
            "app/kustomization.yaml": "resources: [base, single.yaml]\n",
        },
    )
    (root / "app/base").symlink_to("../shared/base")
    (root / "app/single.yaml").symlink_to("../shared/single.yaml")
    before = snapshot(root)

    objects = await render(workers, root, "app", {"namePrefix": "x-"})

    assert sorted(by_name(objects)) == ["x-from-linked-base", "x-from-linked-file"]
    assert snapshot(root) == before


# The spec's overlay fields

APP = {
    "app/deployment.yaml": DEPLOYMENT,
    "app/service.yaml": SERVICE,
    "app/kustomization.yaml": """
        resources: [deployment.yaml, service.yaml]
        images:
          - name: nginx
            newTag: "1.1"
        """,
    "components/monitoring/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        resources: [monitor.yaml]
        """,
    "components/monitoring/monitor.yaml": configmap("monitor"),
}


def deployment(objects: Objects) -> dict[str, Any]:
    return next(obj for obj in objects if obj["kind"] == "Deployment")


def image(objects: Objects) -> str:
    return str(deployment(objects)["spec"]["template"]["spec"]["containers"][0]["image"])


def kinds_and_replicas(objects: Objects) -> list[tuple[str, Any]]:
    return sorted((obj["kind"], obj.get("spec", {}).get("replicas")) for obj in objects)


@pytest.mark.parametrize(
    ("fields", "observe", "expected"),
    [
        pytest.param(
            {"targetNamespace": "apps"},
            lambda objects: {obj["metadata"]["namespace"] for obj in objects},
            {"apps"},
            id="targetNamespace",
        ),
        pytest.param(
            {"namePrefix": "prod-"},
            lambda objects: sorted(by_name(objects)),
            ["prod-web"],
            id="namePrefix",
        ),
        pytest.param(
            {"nameSuffix": "-v2"},
            lambda objects: sorted(by_name(objects)),
            ["web-v2"],
            id="nameSuffix",
        ),
        pytest.param(
            {"commonMetadata": {"labels": {"app": "shop", "team": "a"}, "annotations": {"x": "1"}}},
            lambda objects: [
                (obj["metadata"]["labels"], obj["metadata"]["annotations"]) for obj in objects
            ],
            [({"app": "shop", "team": "a"}, {"x": "1"})] * 2,
            id="commonMetadata-overrides-keys",
        ),
        pytest.param(
            {"commonMetadata": {"labels": {"team": "a"}}},
            lambda objects: deployment(objects)["spec"]["selector"],
            {"matchLabels": {"app": "web"}},
            id="commonMetadata-leaves-selectors",
        ),
        pytest.param(
            {
                "patches": [
                    {
                        "patch": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  "
                        "name: web\nspec:\n  replicas: 4\n"
                    }
                ]
            },
            kinds_and_replicas,
            [("Deployment", 4), ("Service", None)],
            id="patch-strategic-merge",
        ),
        pytest.param(
            {
                "patches": [
                    {
                        "patch": "- op: add\n  path: /spec/replicas\n  value: 7\n",
                        "target": {
                            "group": "apps",
                            "kind": "Deployment",
                            "labelSelector": "app=web",
                        },
                    }
                ]
            },
            kinds_and_replicas,
            [("Deployment", 7), ("Service", None)],
            id="patch-json6902-by-label",
        ),
        pytest.param(
            {
                "patches": [
                    {
                        "patch": '[{"op": "add", "path": "/metadata/annotations", '
                        '"value": {"patched": "yes"}}]',
                        "target": {"version": "v1", "kind": "Service", "name": "web"},
                    }
                ]
            },
            lambda objects: [obj["metadata"].get("annotations") for obj in objects],
            [{"patched": "yes"}, None],
            id="patch-json6902-by-kind-and-name",
        ),
        pytest.param(
            {"images": [{"name": "nginx", "newName": "registry.example.com/nginx"}]},
            image,
            "registry.example.com/nginx:1.1",
            id="images-merged-with-the-kustomization",
        ),
        pytest.param(
            {"images": [{"name": "nginx", "newTag": "1.27"}]},
            image,
            "nginx:1.27",
            id="images-tag-overrides",
        ),
        pytest.param(
            {"images": [{"name": "nginx", "digest": "sha256:" + "a" * 64}]},
            image,
            "nginx@sha256:" + "a" * 64,
            id="images-digest-replaces-the-tag",
        ),
        pytest.param(
            {"components": ["../components/monitoring"]},
            lambda objects: sorted(by_name(objects)),
            ["monitor", "web"],
            id="components",
        ),
        pytest.param(
            {"components": ["../components/missing"], "ignoreMissingComponents": True},
            lambda objects: sorted(by_name(objects)),
            ["web"],
            id="ignoreMissingComponents",
        ),
        pytest.param(
            {"buildMetadata": ["originAnnotations"]},
            lambda objects: (
                "config.kubernetes.io/origin" in deployment(objects)["metadata"]["annotations"]
            ),
            True,
            id="buildMetadata",
        ),
    ],
)
async def test_spec_fields_take_effect(
    workers: BuildWorkers,
    tmp_path: Path,
    fields: dict[str, Any],
    observe: Callable[[Objects], Any],
    expected: Any,
) -> None:
    objects = await render(workers, write(tmp_path, APP), "app", fields)

    assert observe(objects) == expected


# Refusals


def symlink(target: str, link: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        (root / link).symlink_to(target)

    return make


def kustomization(text: str, at: str = "app") -> Callable[[Path], None]:
    def make(root: Path) -> None:
        write(root, {f"{at}/kustomization.yaml": text, "app/cm.yaml": configmap("cm")})

    return make


@pytest.mark.parametrize(
    ("setup", "path", "fields", "reason", "message"),
    [
        pytest.param(
            kustomization("resources: [cm.yaml]\n"),
            "../app",
            {},
            "ArtifactFailed",
            "path '../app' leaves the source artifact",
            id="path-escaping-the-root",
        ),
        pytest.param(
            kustomization("resources: [cm.yaml]\n"),
            "/apps/../../etc",
            {},
            "ArtifactFailed",
            "path '/apps/../../etc' leaves the source artifact",
            id="absolute-path-escaping-the-root",
        ),
        pytest.param(
            kustomization("resources: [cm.yaml]\n"),
            "missing",
            {},
            "ArtifactFailed",
            "kustomization path not found: 'missing'",
            id="path-not-found",
        ),
        pytest.param(
            symlink("/etc", "app/etc"),
            "app",
            {},
            "BuildFailed",
            "symlink 'app/etc' points outside the source artifact",
            id="symlink-to-etc",
        ),
        pytest.param(
            kustomization("resources: [../../../../../../../../etc]\n"),
            "app",
            {},
            "BuildFailed",
            "open /etc: is outside the source artifact; files can only be loaded from inside it",
            id="base-escaping-the-root",
        ),
        pytest.param(
            kustomization("resources: [cm.yaml]\npatches:\n  - path: ../../../../etc/passwd\n"),
            "app",
            {},
            "BuildFailed",
            "open /etc/passwd: is outside the source artifact",
            id="patch-file-escaping-the-root",
        ),
        pytest.param(
            kustomization(
                "configMapGenerator:\n  - name: token\n    files: [token=/etc/hostname]\n"
            ),
            "app",
            {},
            "BuildFailed",
            "open /etc/hostname: is outside the source artifact",
            id="generator-file-outside-the-root",
        ),
        pytest.param(
            lambda root: write(
                root,
                {
                    "app/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [t.yaml]\n",
                    "app/cm.yaml": configmap("cm"),
                    "app/t.yaml": """
                        apiVersion: builtin
                        kind: PatchTransformer
                        metadata:
                          name: leak
                        path: /etc/passwd
                        """,
                },
            ),
            "app",
            {},
            "BuildFailed",
            "path(/etc/passwd): open /etc/passwd: is outside the source artifact",
            id="transformer-config-outside-the-root",
        ),
        pytest.param(
            kustomization(
                "resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/"
                "helloWorld?ref=v5.0.0\n"
            ),
            "app",
            {},
            "BuildFailed",
            "remote bases are not allowed (--no-remote-bases): resources must be files of the "
            "source artifact (refused git clone https://github.com/kubernetes-sigs/kustomize)",
            id="remote-https-base",
        ),
        pytest.param(
            kustomization("resources: [github.com/stefanprodan/podinfo//kustomize]\n"),
            "app",
            {},
            "BuildFailed",
            "not allowed (--no-remote-bases): resources must be files of the source artifact "
            "(refused git clone https://github.com/stefanprodan/podinfo)",
            id="remote-github-shorthand",
        ),
        pytest.param(
            kustomization("components: ['git@github.com:org/repo.git//components/x']\n"),
            "app",
            {},
            "BuildFailed",
            "failed to run 'git fetch --depth=1 git@github.com:org/repo.git HEAD': remote bases "
            "are not allowed (--no-remote-bases)",
            id="remote-scp-component",
        ),
        pytest.param(
            lambda root: write(
                root,
                {
                    "app/kustomization.yaml": "resources: [../base]\n",
                    "base/kustomization.yaml": "resources: [https://example.com/deploy.yaml]\n",
                },
            ),
            "app",
            {},
            "BuildFailed",
            "remote bases are not allowed (--no-remote-bases): resources must be files of the "
            "source artifact (refused https://example.com/deploy.yaml)",
            id="remote-file-in-a-base",
        ),
        pytest.param(
            kustomization("resources: ['file:///srv/git/other-tenant.git']\n"),
            "app",
            {},
            "BuildFailed",
            "(refused git clone file:///srv/git/other-tenant.git)",
            id="local-repository",
        ),
        pytest.param(
            kustomization("resources: [cm.yaml]\n"),
            "app",
            {"components": ["https://github.com/org/repo//components/x"]},
            "BuildFailed",
            "component path 'https://github.com/org/repo//components/x' must be local and relative",
            id="remote-spec-component",
        ),
        pytest.param(
            kustomization("resources: [cm.yaml]\n"),
            "app",
            {"components": ["../components/missing"]},
            "BuildFailed",
            "kustomize build failed: ",
            id="missing-component",
        ),
        pytest.param(
            lambda root: write(root, {"app/bad.yaml": "kind: [unclosed\n"}),
            "app",
            {},
            "BuildFailed",
            "failed to decode Kubernetes YAML from 'app/bad.yaml'",
            id="generated-from-invalid-yaml",
        ),
    ],
)
async def test_refused(
    workers: BuildWorkers,
    tmp_path: Path,
    setup: Callable[[Path], None],
    path: str,
    fields: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    root = tmp_path / "artifact"
    root.mkdir()
    setup(root)

    with pytest.raises(BuildError) as caught:
        await render(workers, root, path, fields)

    assert caught.value.reason == reason
    assert message in str(caught.value)
    assert "weir-kustomize-" not in str(caught.value)


# Files outside the artifact, however a kustomization names them. The worker's filesystem is
# what refuses them: kustomize reads its keys case-insensitively, so no list of key spellings
# could. ``{secret}`` is an absolute path outside the artifact, ``{up}`` the same reached
# with ``..`` from the kustomization's directory.
SECRET_MARKER = "weir-secret-never-read"
LEAKS = {
    "files-lower": "configMapGenerator:\n- name: leak\n  files: [x={secret}]\n",
    "files-capitalised": "configMapGenerator:\n- name: leak\n  Files: [x={secret}]\n",
    "files-upper": "configMapGenerator:\n- name: leak\n  FILES: [x={up}]\n",
    "files-no-key": "ConfigMapGenerator:\n- name: leak\n  files: [{secret}]\n",
    "envs-upper-secret": "secretGenerator:\n- name: leak\n  ENVS: [{secret}]\n",
    "env-singular": "secretGenerator:\n- name: leak\n  Env: {up}\n",
    "resources-absolute": "Resources: [{secret}]\n",
    "resources-dotdot": "RESOURCES: [{up}]\n",
    "bases": "bases: [{up}]\n",
    "patches-path": "resources: [cm.yaml]\nPatches:\n- Path: {secret}\n",
    "patches-strategic-merge": "resources: [cm.yaml]\npatchesStrategicMerge: [{up}]\n",
    "patches-json6902": "resources: [cm.yaml]\npatchesJson6902:\n- target: {{kind: ConfigMap, "
    "name: cm, version: v1}}\n  PATH: {secret}\n",
    "components": "Components: [{up}]\n",
    "crds": "resources: [cm.yaml]\nCrds: [{secret}]\n",
    "configurations": "resources: [cm.yaml]\nConfigurations: [{secret}]\n",
    "openapi": "resources: [cm.yaml]\nopenapi: {{path: {secret}}}\n",
    "replacements": "resources: [cm.yaml]\nreplacements:\n- Path: {up}\n",
    "generator-file": "Generators: [{secret}]\n",
    "transformer-file": "resources: [cm.yaml]\ntransformers: [{up}]\n",
    "inline-generator": "generators:\n- |\n  apiVersion: builtin\n  kind: ConfigMapGenerator\n"
    "  metadata: {{name: leak}}\n  Files: [{secret}]\n",
    "inline-transformer": "resources: [cm.yaml]\ntransformers:\n- |\n  apiVersion: builtin\n"
    "  kind: PatchTransformer\n  metadata: {{name: leak}}\n  Path: {secret}\n",
}


@pytest.mark.parametrize("leak", [pytest.param(text, id=name) for name, text in LEAKS.items()])
async def test_files_outside_the_artifact_are_never_read(
    workers: BuildWorkers, tmp_path: Path, leak: str
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(f"{SECRET_MARKER}: {SECRET_MARKER}\n")
    root = tmp_path / "artifact"
    app = root / "app"
    up = "../" * len(app.parts) + str(secret).lstrip("/")
    write(root, {"app/cm.yaml": configmap("cm")})
    (app / "kustomization.yaml").write_text(leak.format(secret=secret, up=up))

    with pytest.raises(BuildError) as caught:
        await render(workers, root, "app")

    assert caught.value.reason == "BuildFailed"
    assert "is outside the source artifact" in str(caught.value)
    assert SECRET_MARKER not in str(caught.value)


async def test_a_link_to_outside_made_after_the_copy_is_not_followed(
    workers: BuildWorkers, tmp_path: Path
) -> None:
    # The copy refuses links out of the artifact; were one to appear in the tree the worker
    # builds (it resolves every path), it would still not be followed.
    secret = tmp_path / "secret.yaml"
    secret.write_text(f"{SECRET_MARKER}: {SECRET_MARKER}\n")
    tree = write(tmp_path / "tree", {"kustomization.yaml": "resources: [link.yaml]\n"})
    (tree / "link.yaml").symlink_to(secret)

    with pytest.raises(WorkerError, match=r"link\.yaml: is outside the source artifact") as caught:
        await workers.build(tree, tree, timeout=30)

    assert SECRET_MARKER not in str(caught.value)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param(
            {
                "kustomization.yaml": "resources: [cm.yaml]\n",
                "cm.yaml": "apiVersion: v1\nmetadata:\n  name: cm\n",
            },
            "kustomize build failed: accumulating resources: accumulation err='accumulating "
            "resources from 'cm.yaml': missing kind in object",
            id="missing-kind",
        ),
        pytest.param(
            {
                "kustomization.yaml": "resources: [cm.yaml]\n",
                "cm.yaml": "kind: ConfigMap\nmetadata: {name: [x}\n",
            },
            "kustomize build failed: accumulating resources: accumulating resources from "
            "'cm.yaml': MalformedYAMLError",
            id="malformed-yaml",
        ),
        pytest.param(
            {"kustomization.yaml": "resources: [missing.yaml]\n"},
            "open missing.yaml: no such file or directory",
            id="missing-file-named-relative-to-the-root",
        ),
        pytest.param(
            {"kustomization.yaml": "commonLabels: {a: b}\nresources: [missing.yaml]\n"},
            "kustomize build failed: accumulating resources: accumulation err='accumulating "
            "resources from 'missing.yaml'",
            id="warnings-left-out",
        ),
    ],
)
async def test_kustomize_errors_are_build_failures(
    workers: BuildWorkers, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    root = write(tmp_path, files)

    with pytest.raises(BuildError) as caught:
        await render(workers, root)

    assert caught.value.reason == "BuildFailed"
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "Warning" not in str(caught.value)
    assert str(tmp_path) not in str(caught.value)
    assert "weir-kustomize-" not in str(caught.value)


async def test_remote_bases_are_left_to_kustomize_when_allowed(
    remote_workers: BuildWorkers, tmp_path: Path
) -> None:
    # Nothing listens there: kustomize, not a refusal, is what fails.
    root = write(tmp_path, {"kustomization.yaml": "resources: [https://127.0.0.1:1/x.yaml]\n"})

    with pytest.raises(BuildError, match=r"kustomize build failed: .*127\.0\.0\.1:1.*refused"):
        await render(remote_workers, root)


async def test_a_slow_worker_is_killed_at_the_timeout(tmp_path: Path) -> None:
    slow = tmp_path / "worker"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    root = write(tmp_path / "artifact", {"cm.yaml": configmap("cm")})
    workers = BuildWorkers(slow, allow_remote_bases=False)

    with pytest.raises(BuildError, match=r"^kustomize build timed out after 0\.2s$"):
        await build(root, ".", spec(), workers=workers, timeout=0.2)
    await workers.close()


# Finding the binary


def test_an_explicit_worker_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "my-worker"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("WEIR_KUSTOMIZE_BUILD_WORKER", "/nonexistent/worker")

    assert find_build_worker(str(binary)) == binary


@pytest.mark.parametrize(
    ("explicit", "env", "message"),
    [
        pytest.param(
            "/nonexistent/worker",
            None,
            "kustomize-build-worker binary /nonexistent/worker (given) is not an executable file",
            id="explicit",
        ),
        pytest.param(
            None,
            "/nonexistent/worker",
            "kustomize-build-worker binary /nonexistent/worker (from "
            "WEIR_KUSTOMIZE_BUILD_WORKER) is not an executable",
            id="environment",
        ),
        pytest.param(
            None,
            None,
            "build it with 'python -m controllers.envtest build' (run by hack/setup.sh) or set "
            "WEIR_KUSTOMIZE_BUILD_WORKER",
            id="nowhere",
        ),
    ],
)
def test_a_missing_worker_says_what_was_tried(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    env: str | None,
    message: str,
) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("WEIR_CACHE_DIR", str(tmp_path / "cache"))
    if env is None:
        monkeypatch.delenv("WEIR_KUSTOMIZE_BUILD_WORKER", raising=False)
    else:
        monkeypatch.setenv("WEIR_KUSTOMIZE_BUILD_WORKER", env)

    with pytest.raises(FileNotFoundError) as caught:
        find_build_worker(explicit)

    assert message in str(caught.value)
    if explicit is None and env is None:
        assert f"not in the build cache ({tmp_path / 'cache'})" in str(caught.value)


async def test_builds_beyond_the_workers_wait_for_one(tmp_path: Path) -> None:
    pool = BuildWorkers(find_build_worker(), allow_remote_bases=False, max_workers=1)
    roots = [write(tmp_path / str(i), {"cm.yaml": configmap(f"cm{i}")}) for i in range(4)]
    try:
        built = await asyncio.gather(
            *(build(root, ".", spec(), workers=pool, timeout=30) for root in roots)
        )
        workers = [
            pid
            for pid in os.listdir("/proc")
            if pid.isdigit()
            and _parent(int(pid)) == os.getpid()
            and WORKER_BINARY in _command(int(pid))
        ]
    finally:
        await pool.close()

    assert [objects[0]["metadata"]["name"] for objects in built] == ["cm0", "cm1", "cm2", "cm3"]
    # Other tests' pools are closed by their fixtures: this pool's one worker is all there is.
    assert len(workers) == 1


async def test_a_build_waiting_for_a_worker_times_out_in_its_own_time(tmp_path: Path) -> None:
    slow = tmp_path / "worker"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    root = write(tmp_path / "artifact", {"cm.yaml": configmap("cm")})
    pool = BuildWorkers(slow, allow_remote_bases=False, max_workers=1)
    first = asyncio.create_task(pool.build(root, root, timeout=30))
    await asyncio.sleep(0)  # the first build has taken the only worker slot

    with pytest.raises(BuildTimeout, match=r"^kustomize build timed out after 0\.2s$"):
        await pool.build(root, root, timeout=0.2)
    assert not first.done()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await pool.close()


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2 :].split()[1])


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
