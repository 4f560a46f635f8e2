"""image_automation.git's pure rules: the push branch and the signing Secret's keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controllers.git.errors import GitError
from image_automation.git import push_branch, signing_key_from_secret


@dataclass(frozen=True)
class Ref:
    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    name: str | None = None
    commit: str | None = None


@pytest.mark.parametrize(
    ("ref", "push", "expected"),
    [
        pytest.param(Ref("main"), None, "main", id="checkout-branch"),
        pytest.param(Ref("main"), "auto", "auto", id="push-branch-wins"),
        pytest.param(None, "auto", "auto", id="no-ref-push-branch"),
        pytest.param(Ref(tag="v1"), "auto", "auto", id="tag-with-push-branch"),
    ],
)
def test_push_branch(ref: Ref | None, push: str | None, expected: str) -> None:
    assert push_branch(ref, push) == expected


@pytest.mark.parametrize(
    "ref", [pytest.param(None, id="no-ref"), pytest.param(Ref(tag="v1"), id="tag")]
)
def test_push_branch_cannot_be_inferred(ref: Ref | None) -> None:
    with pytest.raises(GitError, match="push spec not provided") as caught:
        push_branch(ref, None)
    assert caught.value.reason == "InvalidSourceConfiguration"


@pytest.mark.parametrize(
    ("data", "kind", "expected"),
    [
        pytest.param({"git.asc": "KEY"}, None, ("gpg", "KEY", None), id="gpg-default"),
        pytest.param(
            {"git.asc": "KEY", "passphrase": "PASS"},
            "gpg",
            ("gpg", "KEY", "PASS"),
            id="gpg-passphrase",
        ),
        pytest.param(
            {"identity": "KEY", "password": "PASS"}, "ssh", ("ssh", "KEY", "PASS"), id="ssh"
        ),
    ],
)
def test_signing_key_from_secret(
    data: dict[str, str], kind: str | None, expected: tuple[str, str, str | None]
) -> None:
    key = signing_key_from_secret(data, kind, "apps/signing")
    assert (key.type, key.key, key.passphrase) == expected
    assert "KEY" not in repr(key)
    assert "PASS" not in repr(key)


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        pytest.param(
            {"identity": "S"},
            None,
            "signing key secret 'apps/signing' does not contain a 'git.asc' key",
            id="gpg-missing",
        ),
        pytest.param(
            {"git.asc": "K"},
            "ssh",
            "signing key secret 'apps/signing' does not contain an 'identity' key",
            id="ssh-missing",
        ),
        pytest.param({"git.asc": "K"}, "x509", "unknown signing key type 'x509'", id="unknown"),
    ],
)
def test_signing_key_from_secret_refuses(
    data: dict[str, str], kind: str | None, message: str
) -> None:
    with pytest.raises(GitError) as caught:
        signing_key_from_secret(data, kind, "apps/signing")
    assert caught.value.message == message
