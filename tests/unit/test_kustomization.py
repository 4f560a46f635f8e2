"""Which Kustomizations a source change requeues."""

from __future__ import annotations

from typing import Any

import pytest

from kustomize.kustomization import _users_of_new_artifact


def source(kind: str, namespace: str, name: str, revision: str | None) -> dict[str, Any]:
    status = {"artifact": {"revision": revision}} if revision else {}
    return {"kind": kind, "metadata": {"namespace": namespace, "name": name}, "status": status}


def kustomization(namespace: str, name: str, source_ref: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {"sourceRef": source_ref}}


USERS = [
    kustomization("apps", "same-namespace", {"kind": "GitRepository", "name": "repo"}),
    kustomization(
        "other", "explicit", {"kind": "GitRepository", "name": "repo", "namespace": "apps"}
    ),
    kustomization("other", "defaults-to-own", {"kind": "GitRepository", "name": "repo"}),
    kustomization("apps", "other-kind", {"kind": "OCIRepository", "name": "repo"}),
    kustomization("apps", "other-name", {"kind": "GitRepository", "name": "else"}),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            source("GitRepository", "apps", "repo", "main@sha1:1"),
            source("GitRepository", "apps", "repo", "main@sha1:2"),
            ["apps/same-namespace", "other/explicit"],
            id="new-revision",
        ),
        pytest.param(
            None,
            source("GitRepository", "apps", "repo", "main@sha1:1"),
            ["apps/same-namespace", "other/explicit"],
            id="first-artifact",
        ),
        pytest.param(
            source("GitRepository", "apps", "repo", "main@sha1:1"),
            source("GitRepository", "apps", "repo", "main@sha1:1"),
            [],
            id="same-revision",
        ),
        pytest.param(
            source("GitRepository", "apps", "repo", None),
            source("GitRepository", "apps", "repo", None),
            [],
            id="no-artifact-yet",
        ),
        pytest.param(
            source("GitRepository", "apps", "repo", "main@sha1:1"), None, [], id="deleted"
        ),
    ],
)
def test_users_of_new_artifact(
    old: dict[str, Any] | None, new: dict[str, Any] | None, expected: list[str]
) -> None:
    assert _users_of_new_artifact(old, new, USERS) == expected
