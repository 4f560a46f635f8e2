"""Bucket with a TLS client certificate (``certSecretRef`` ``tls.crt``/``tls.key``), against the
real MinIO.

MinIO cannot require a client certificate on its S3 API: with ``MINIO_IDENTITY_TLS_ENABLE`` it
only asks for one (``tls.RequestClientCert``, for STS ``AssumeRoleWithCertificate``) and serves
clients that send none. So a real TLS server that does require one,
:class:`tests.tlsfront.MutualTLSFront`, stands in front of it and passes the requests on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controllers.kube import KubeClient
from tests.integration.test_bucket import (  # noqa: F401 (the source fixture)
    BUCKET,
    Source,
    bucket,
    condition,
    credentials,
    failed,
    files_of,
    flux_revision,
    ready,
    secret,
    source,
)
from tests.s3server import S3Server
from tests.testpki import TLSFiles
from tests.tlsfront import MutualTLSFront

pytestmark = pytest.mark.integration


@pytest.fixture
async def mtls_front(s3_server: S3Server, tmp_path: Path) -> AsyncIterator[MutualTLSFront]:
    """Mutual TLS in front of the plain HTTP MinIO; ``files`` holds its CA and a client pair."""
    (tmp_path / "pki").mkdir()
    front = MutualTLSFront(TLSFiles.create(tmp_path / "pki"), ("127.0.0.1", s3_server.port))
    await front.start()
    try:
        yield front
    finally:
        await front.close()


async def test_client_certificate_from_cert_secret_ref(
    kube: KubeClient,
    namespace: str,
    source: Source,  # noqa: F811 (the fixture imported above)
    s3_server: S3Server,
    mtls_front: MutualTLSFront,
    tmp_path: Path,
) -> None:
    name = namespace
    s3_server.create_bucket(name)
    etag = s3_server.put_object(name, "app.yaml", "over mutual TLS\n")
    await credentials(kube, namespace, s3_server)
    files = mtls_front.files
    client = files.secret_data(client=True)
    legacy = {
        "caFile": client["ca.crt"],
        "certFile": client["tls.crt"],
        "keyFile": client["tls.key"],
    }
    await secret(kube, namespace, "client", client)
    await secret(kube, namespace, "legacy", legacy)
    await secret(kube, namespace, "ca-only", files.secret_data())
    await secret(kube, namespace, "half", {"tls.crt": client["tls.crt"]})
    spec = {"secretRef": {"name": "s3"}, "insecure": False}
    for cert in ("client", "legacy", "ca-only", "half"):
        manifest = bucket(
            cert, namespace, mtls_front.endpoint, name, certSecretRef={"name": cert}, **spec
        )
        await kube.create(BUCKET, manifest)

    for cert in ("client", "legacy"):
        obj = await ready(kube, namespace, cert)
        assert obj["status"]["artifact"]["revision"] == flux_revision({"app.yaml": etag})
        assert await files_of(obj, tmp_path / cert) == {"app.yaml": "over mutual TLS\n"}
    assert set(mtls_front.clients) == {"127.0.0.1"}
    refused = condition(await failed(kube, namespace, "ca-only"), "Ready")
    assert refused["reason"] == "BucketOperationFailed", refused
    assert refused["message"].startswith(f"indexation of objects from bucket '{name}' at ")
    half = await failed(kube, namespace, "half")
    assert condition(half, "Ready")["reason"] == "AuthenticationFailed"
    assert condition(half, "FetchFailed")["message"] == (
        f"secret '{namespace}/half': 'tls.crt' and 'tls.key' must be given together"
    )
    assert "PRIVATE KEY" not in str(half["status"])
