"""read_secret against the real API server: found, missing, forbidden."""

from __future__ import annotations

import base64

import pytest

from controllers.envtest import UNPRIVILEGED_USER
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.secrets import SecretError, SecretNotFound, read_secret

pytestmark = pytest.mark.integration


async def test_a_secret_is_read_with_its_data(kube: KubeClient, namespace: str) -> None:
    data = {"token": base64.b64encode(b"s3cr3t").decode()}
    await kube.create(SECRET, {"metadata": {"name": "creds", "namespace": namespace}, "data": data})

    secret = await read_secret(kube, namespace, "creds")

    assert (secret.ref, dict(secret)) == (f"{namespace}/creds", {"token": "s3cr3t"})


async def test_a_missing_secret_is_not_found(kube: KubeClient, namespace: str) -> None:
    with pytest.raises(SecretNotFound) as caught:
        await read_secret(kube, namespace, "absent")

    assert str(caught.value) == f"secret '{namespace}/absent' not found"


async def test_a_forbidden_secret_is_an_error_naming_it(kube: KubeClient, namespace: str) -> None:
    await kube.create(SECRET, {"metadata": {"name": "creds", "namespace": namespace}})

    with pytest.raises(SecretError) as caught:
        await read_secret(kube.impersonating(UNPRIVILEGED_USER), namespace, "creds")

    assert type(caught.value) is SecretError
    assert str(caught.value).startswith(f"secret '{namespace}/creds' cannot be read: 403")
