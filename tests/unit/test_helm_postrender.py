"""``helm.postrender``: the kustomize builds a HelmRelease's post-rendering is made of, the
plugin Helm finds, and how a failure reads. The builds against the real kustomize and Helm are
in tests/integration/test_helm_postrender.py."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helm import postrender_plugin
from helm.api_v2 import HelmRelease
from helm.client import InstallOptions, UpgradeOptions, install_options_json
from helm.postrender import (
    PLUGIN_NAME,
    PostRenderOptions,
    _explain,
    install_plugin,
    kustomize_builds,
)

ORIGIN = {
    "helm.toolkit.fluxcd.io/name": "app",
    "helm.toolkit.fluxcd.io/namespace": "apps",
}


def release(**spec: Any) -> HelmRelease:
    return HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps"},
            "spec": {
                "interval": "5m",
                "chart": {
                    "spec": {"chart": "c", "sourceRef": {"kind": "HelmRepository", "name": "r"}}
                },
                **spec,
            },
        }
    )


def transformers(build: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    configs = [json.loads(build["files"][name]) for name in build["kustomization"]["transformers"]]
    return [(c["kind"], c.get("labels") or c.get("annotations")) for c in configs]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {},
            [[("LabelTransformer", ORIGIN)]],
            id="origin-labels-only",
        ),
        pytest.param(
            {"commonMetadata": {"labels": {"team": "a"}, "annotations": {"owner": "ops"}}},
            [
                [
                    ("LabelTransformer", {"team": "a"}),
                    ("AnnotationsTransformer", {"owner": "ops"}),
                    ("LabelTransformer", ORIGIN),
                ]
            ],
            id="common-metadata-before-origin",
        ),
        pytest.param(
            {
                "postRenderers": [
                    {"kustomize": {"images": [{"name": "a", "newTag": "2"}]}},
                    {},
                    {"kustomize": {"patches": [{"patch": "x: y"}]}},
                ]
            },
            [[], [("LabelTransformer", ORIGIN)]],
            id="one-build-per-kustomize-renderer-metadata-last",
        ),
    ],
)
def test_builds(spec: dict[str, Any], expected: list[list[tuple[str, dict[str, str]]]]) -> None:
    builds = kustomize_builds(release(**spec))
    assert [transformers(b) if "transformers" in b["kustomization"] else [] for b in builds] == (
        expected
    )
    for build in builds:
        assert build["kustomization"]["resources"] == [postrender_plugin.INPUT_FILE]


def test_kustomization_fields_as_kustomize_names_them() -> None:
    (build,) = kustomize_builds(
        release(
            postRenderers=[
                {
                    "kustomize": {
                        "patches": [
                            {
                                "patch": "p1",
                                "target": {"kind": "Deployment", "labelSelector": "a=b"},
                            },
                            {"patch": "p2"},
                        ],
                        "images": [
                            {"name": "nginx", "newName": "mirror/nginx", "digest": "sha256:0"}
                        ],
                    }
                }
            ]
        )
    )
    kustomization = build["kustomization"]
    assert kustomization["patches"] == [
        {"patch": "p1", "target": {"kind": "Deployment", "labelSelector": "a=b"}},
        {"patch": "p2"},
    ]
    assert kustomization["images"] == [
        {"name": "nginx", "newName": "mirror/nginx", "digest": "sha256:0"}
    ]
    assert "sortOptions" not in kustomization  # kustomize's own order, as Flux's build


def test_metadata_only_keeps_helm_order() -> None:
    (build,) = kustomize_builds(release())
    assert build["kustomization"]["sortOptions"] == {"order": "fifo"}


def test_strategy_and_options_json() -> None:
    options = PostRenderOptions(PLUGIN_NAME, ("spec.json", "error"), "separate")
    applied = options.apply(InstallOptions(wait=False))
    assert isinstance(options.apply(UpgradeOptions()), UpgradeOptions)
    payload = json.loads(install_options_json("apps", applied))
    assert payload["post_renderer"] == PLUGIN_NAME
    assert payload["post_renderer_args"] == ["spec.json", "error"]
    assert payload["post_render_strategy"] == "separate"
    assert "post_render_strategy" not in json.loads(install_options_json("apps", InstallOptions()))


def test_plugin_written_once(tmp_path: Path) -> None:
    directory = install_plugin(tmp_path)
    manifest = yaml.safe_load((directory / "plugin.yaml").read_text())
    assert manifest["apiVersion"] == "v1"
    assert manifest["name"] == PLUGIN_NAME
    assert (manifest["type"], manifest["runtime"]) == ("postrenderer/v1", "subprocess")
    (command,) = manifest["runtimeConfig"]["platformCommand"]
    assert command["args"] == ["-I", postrender_plugin.__file__]
    before = (directory / "plugin.yaml").stat().st_mtime_ns
    assert install_plugin(tmp_path) == directory
    assert (directory / "plugin.yaml").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("helm", "expected"),
    [
        pytest.param(
            "error while running post render on files: failed to invoke post-renderer plugin "
            f'"{PLUGIN_NAME}": plugin "{PLUGIN_NAME}" exited with error',
            "error while running post render on files: kustomize: no match",
            id="helm-words-replaced",
        ),
        pytest.param("something else", "something else: kustomize: no match", id="appended"),
    ],
)
def test_explain(helm: str, expected: str) -> None:
    assert _explain(helm, "kustomize: no match") == expected


def test_plugin_reports_into_error_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "spec.json"
    missing = tmp_path / "no-such-kustomize"
    build: dict[str, Any] = {"kustomization": {}}
    spec.write_text(
        json.dumps({"kustomize": str(missing), "builds": [build], "workDirectory": str(tmp_path)})
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"kind: ConfigMap\n")))
    error = tmp_path / "error"
    assert postrender_plugin.main([str(spec), str(error)]) == 1
    assert error.read_text().startswith("kustomize could not run:")
    # Its work directory is gone; only the spec and the error are left.
    assert {path.name for path in tmp_path.iterdir()} == {"spec.json", "error"}
