"""Without spec.decryption, an encrypted Secret is refused rather than applied as ciphertext."""

from __future__ import annotations

from typing import Any

import pytest

from kustomize.decrypt import DecryptionError, refuse_encrypted_secrets


def secret(**extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "apps", **extra.pop("metadata", {})},
        "stringData": {"password": "ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]"},
        **extra,
    }


SOPS = {"mac": "ENC[AES256_GCM,data:m,iv:i,tag:t,type:str]", "version": "3.13.3"}


def test_encrypted_secret_is_refused_with_its_name() -> None:
    with pytest.raises(DecryptionError) as err:
        refuse_encrypted_secrets([secret(sops=SOPS)])
    assert str(err.value) == (
        "Secret/apps/db is SOPS encrypted, configuring decryption is required for this secret "
        "to be reconciled"
    )


@pytest.mark.parametrize(
    "obj",
    [
        secret(),
        secret(
            sops=SOPS, metadata={"annotations": {"kustomize.toolkit.fluxcd.io/decrypt": "disabled"}}
        ),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "sops": SOPS},
    ],
    ids=["plain-secret", "opted-out", "not-a-secret"],
)
def test_others_pass(obj: dict[str, Any]) -> None:
    refuse_encrypted_secrets([obj])
