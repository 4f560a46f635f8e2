"""Rendering Kustomizations with the real kustomize binary (no Kubernetes needed)."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustomize.api_v1 import KustomizationSpec
from kustomize.build import BuildError, build, find_kustomize, set_common_metadata

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def kustomize() -> Path:
    return find_kustomize()


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
    kustomize: Path,
    root: Path,
    path: str = "./",
    fields: dict[str, Any] | None = None,
    *,
    allow_remote_bases: bool = False,
) -> Objects:
    """build(), then commonMetadata as the reconciler applies it (after substitution)."""
    kustomization = spec(**(fields or {}))
    objects = await build(
        root,
        path,
        kustomization,
        kustomize=kustomize,
        allow_remote_bases=allow_remote_bases,
        timeout=30,
    )
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
    kustomize: Path, tmp_path: Path, overlay: str
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

    objects = await render(kustomize, root, overlay)

    assert objects == list(yaml.safe_load_all(direct))
    assert snapshot(root) == before


async def test_the_production_overlay_takes_effect(kustomize: Path, tmp_path: Path) -> None:
    objects = await render(kustomize, write(tmp_path, OVERLAYS), "overlays/production")

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


async def test_a_directory_without_kustomization_gets_one(kustomize: Path, tmp_path: Path) -> None:
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

    objects = await render(kustomize, root, "./apps")

    assert sorted(by_name(objects)) == ["a", "b", "c", "d", "e"]


async def test_an_empty_directory_builds_to_nothing(kustomize: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    assert await render(kustomize, tmp_path, "empty") == []


async def test_a_kustomization_without_resources_gets_flux_origin_annotations(
    kustomize: Path, tmp_path: Path
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

    (generated,) = await render(kustomize, root)

    assert "config.kubernetes.io/origin" in generated["metadata"]["annotations"]


async def test_unknown_kustomization_fields_are_dropped_as_flux_does(
    kustomize: Path, tmp_path: Path
) -> None:
    root = write(
        tmp_path,
        {
            "kustomization.yaml": "resources: [a.yaml]\ncommonLabel: {typo: x}\n",
            "a.yaml": configmap("a"),
        },
    )

    assert list(by_name(await render(kustomize, root))) == ["a"]


async def test_links_inside_the_artifact_are_followed(kustomize: Path, tmp_path: Path) -> None:
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

    objects = await render(kustomize, root, "app", {"namePrefix": "x-"})

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
    kustomize: Path,
    tmp_path: Path,
    fields: dict[str, Any],
    observe: Callable[[Objects], Any],
    expected: Any,
) -> None:
    objects = await render(kustomize, write(tmp_path, APP), "app", fields)

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
            "'app/kustomization.yaml' refers to '../../../../../../../../etc', which is outside",
            id="base-escaping-the-root",
        ),
        pytest.param(
            kustomization("resources: [cm.yaml]\npatches:\n  - path: ../../../../etc/passwd\n"),
            "app",
            {},
            "BuildFailed",
            "refers to '../../../../etc/passwd', which is outside the source artifact",
            id="patch-file-escaping-the-root",
        ),
        pytest.param(
            kustomization(
                "configMapGenerator:\n  - name: token\n    files: [token=/etc/hostname]\n"
            ),
            "app",
            {},
            "BuildFailed",
            "refers to '/etc/hostname', which is outside the source artifact",
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
            "'app/t.yaml' refers to '/etc/passwd', which is outside the source artifact",
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
            "refers to the remote base 'https://github.com/kubernetes-sigs/kustomize//examples/"
            "helloWorld?ref=v5.0.0', which is not allowed (--no-remote-bases)",
            id="remote-https-base",
        ),
        pytest.param(
            kustomization("resources: [github.com/stefanprodan/podinfo//kustomize]\n"),
            "app",
            {},
            "BuildFailed",
            "remote base 'github.com/stefanprodan/podinfo//kustomize', which is not allowed",
            id="remote-github-shorthand",
        ),
        pytest.param(
            kustomization("components: ['git@github.com:org/repo.git//components/x']\n"),
            "app",
            {},
            "BuildFailed",
            "remote base 'git@github.com:org/repo.git//components/x', which is not allowed",
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
            "'base/kustomization.yaml' refers to the remote base 'https://example.com/deploy.yaml'",
            id="remote-file-in-a-base",
        ),
        pytest.param(
            kustomization("resources: ['file:///srv/git/other-tenant.git']\n"),
            "app",
            {},
            "BuildFailed",
            "refers to the local repository 'file:///srv/git/other-tenant.git'",
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
    kustomize: Path,
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
        await render(kustomize, root, path, fields)

    assert caught.value.reason == reason
    assert message in str(caught.value)
    assert "weir-kustomize-" not in str(caught.value)


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
    kustomize: Path, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    root = write(tmp_path, files)

    with pytest.raises(BuildError) as caught:
        await render(kustomize, root)

    assert caught.value.reason == "BuildFailed"
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "Warning" not in str(caught.value)
    assert str(tmp_path) not in str(caught.value)
    assert "weir-kustomize-" not in str(caught.value)


async def test_remote_bases_are_left_to_kustomize_when_allowed(
    kustomize: Path, tmp_path: Path
) -> None:
    # Nothing listens there: kustomize, not the check, is what fails.
    root = write(tmp_path, {"kustomization.yaml": "resources: [https://127.0.0.1:1/x.yaml]\n"})

    with pytest.raises(BuildError, match=r"kustomize build failed: .*127\.0\.0\.1:1.*refused"):
        await render(kustomize, root, allow_remote_bases=True)


async def test_a_slow_kustomize_is_killed_at_the_timeout(tmp_path: Path) -> None:
    slow = tmp_path / "kustomize"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    root = write(tmp_path / "artifact", {"cm.yaml": configmap("cm")})

    with pytest.raises(BuildError, match=r"^kustomize build timed out after 0\.2s$"):
        await build(root, ".", spec(), kustomize=slow, allow_remote_bases=False, timeout=0.2)


# Finding the binary


def test_an_explicit_kustomize_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "my-kustomize"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("WEIR_KUSTOMIZE", "/nonexistent/kustomize")

    assert find_kustomize(str(binary)) == binary


@pytest.mark.parametrize(
    ("explicit", "env", "message"),
    [
        pytest.param(
            "/nonexistent/kustomize",
            None,
            "kustomize binary /nonexistent/kustomize (given) is not an executable file",
            id="explicit",
        ),
        pytest.param(
            None,
            "/nonexistent/kustomize",
            "kustomize binary /nonexistent/kustomize (from WEIR_KUSTOMIZE) is not an executable",
            id="environment",
        ),
        pytest.param(
            None,
            None,
            "nor on PATH; build it with 'python -m controllers.envtest build' (run by "
            "hack/setup.sh) or set WEIR_KUSTOMIZE",
            id="nowhere",
        ),
    ],
)
def test_a_missing_kustomize_says_what_was_tried(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    env: str | None,
    message: str,
) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("WEIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    if env is None:
        monkeypatch.delenv("WEIR_KUSTOMIZE", raising=False)
    else:
        monkeypatch.setenv("WEIR_KUSTOMIZE", env)

    with pytest.raises(FileNotFoundError) as caught:
        find_kustomize(explicit)

    assert message in str(caught.value)
    if explicit is None and env is None:
        assert f"not in the build cache ({tmp_path / 'cache'})" in str(caught.value)
