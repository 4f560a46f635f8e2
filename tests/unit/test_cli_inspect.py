"""The pure parts of ``weir tree``, ``build`` and ``diff``: the tree's layout, masking SOPS
values as ``flux build`` does and Secret values in diffs as ``flux diff`` does, and which
directory a local build may read."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from controllers.inventory import ObjectRef
from weir.cli.diff import unified_diff
from weir.cli.localbuild import ENCODED_SOPS_MASK, SOPS_MASK, checkout_of, mask_encrypted_values
from weir.cli.tree import Node, draw


def ref(kind: str, name: str, namespace: str = "apps", group: str = "") -> ObjectRef:
    return ObjectRef(namespace, name, group, kind)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_tree_is_drawn_as_flux_draws_it() -> None:
    ks = "kustomize.toolkit.fluxcd.io"
    root = Node(
        ref("Kustomization", "apps", "flux-system", ks),
        [
            Node(ref("Namespace", "apps", "")),
            Node(
                ref("Kustomization", "web", group=ks),
                [Node(ref("Deployment", "web", group="apps")), Node(ref("Service", "web"))],
            ),
            Node(ref("Kustomization", "db", group=ks), [Node(ref("StatefulSet", "db", "apps"))]),
        ],
    )

    assert draw(root) == (
        "Kustomization/flux-system/apps\n"
        "├── Namespace/apps\n"
        "├── Kustomization/apps/web\n"
        "│   ├── Deployment/apps/web\n"
        "│   └── Service/apps/web\n"
        "└── Kustomization/apps/db\n"
        "    └── StatefulSet/apps/db\n"
    )


def test_the_tree_as_data_has_fluxs_field_names() -> None:
    node = Node(ref("Kustomization", "a", group="g"), [Node(ref("ConfigMap", "c"))])

    assert node.as_dict() == {
        "resource": {
            "Namespace": "apps",
            "Name": "a",
            "GroupKind": {"Group": "g", "Kind": "Kustomization"},
        },
        "resources": [
            {
                "resource": {
                    "Namespace": "apps",
                    "Name": "c",
                    "GroupKind": {"Group": "", "Kind": "ConfigMap"},
                }
            }
        ],
    }


ENCRYPTED = "ENC[AES256_GCM,data:abc,type:str]"


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param(
            {
                "data": {"a": b64("x"), "b": b64("y")},
                "stringData": {"c": "z"},
                "sops": {"mac": ENCRYPTED},
            },
            {
                "data": {"a": ENCODED_SOPS_MASK, "b": ENCODED_SOPS_MASK},
                "stringData": {"c": SOPS_MASK},
            },
            id="encrypted-as-a-whole",
        ),
        pytest.param(
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": b64("{}")},
                "sops": {"mac": ENCRYPTED},
            },
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": b64('{"mask":"**SOPS**"}')},
            },
            id="docker-config",
        ),
        pytest.param(
            {
                "data": {
                    "file": b64(f"key: {ENCRYPTED}\nsops:\n  mac: {ENCRYPTED}\n"),
                    "plain": b64("p"),
                }
            },
            {"data": {"file": ENCODED_SOPS_MASK, "plain": b64("p")}},
            id="one-value-is-a-sops-document",
        ),
        pytest.param(
            {"stringData": {"file": f"sops: {ENCRYPTED}", "plain": "p"}},
            {"stringData": {"file": SOPS_MASK, "plain": "p"}},
            id="string-data",
        ),
        pytest.param({"data": {"a": b64("x")}}, {"data": {"a": b64("x")}}, id="plain-secret-kept"),
    ],
)
def test_sops_values_are_masked_as_flux_build_masks_them(
    secret: dict[str, Any], expected: dict[str, Any]
) -> None:
    objects = [{"apiVersion": "v1", "kind": "Secret", **secret}]

    mask_encrypted_values(objects)

    assert objects == [{"apiVersion": "v1", "kind": "Secret", **expected}]


def test_a_config_map_is_never_masked() -> None:
    objects = [{"kind": "ConfigMap", "data": {"a": f"sops {ENCRYPTED}"}}]

    mask_encrypted_values(objects)

    assert objects[0]["data"] == {"a": f"sops {ENCRYPTED}"}


def test_a_diff_leaves_out_server_fields_and_masks_secret_values() -> None:
    live: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "resourceVersion": "7", "uid": "u", "managedFields": [{}]},
        "data": {"same": b64("one"), "changed": b64("old"), "gone": b64("x")},
        "status": {},
    }
    merged = {
        **live,
        "metadata": {**live["metadata"], "resourceVersion": "8"},
        "data": {"same": b64("one"), "changed": b64("new"), "added": b64("y")},
    }

    lines = unified_diff("Secret/apps/s", live, merged)

    assert lines[:2] == ["--- Secret/apps/s (live)", "+++ Secret/apps/s (merged)"]
    changes = [line for line in lines[3:] if line[:1] in "+-"]
    assert changes == [
        "-  changed: '*** (before)'",
        "-  gone: '***'",
        "+  changed: '*** (after)'",
        "+  added: '***'",
    ]
    assert not any(b64("old") in line or b64("new") in line for line in lines)


def test_a_local_build_reads_the_whole_checkout(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "apps" / "prod").mkdir(parents=True)
    (tmp_path / "loose").mkdir()

    assert checkout_of(tmp_path / "repo" / "apps" / "prod") == (tmp_path / "repo", "apps/prod")
    assert checkout_of(tmp_path / "repo") == (tmp_path / "repo", ".")
    assert checkout_of(tmp_path / "loose") == (tmp_path / "loose", ".")
