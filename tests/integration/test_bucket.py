"""Bucket against a real S3 server (MinIO), the real API server and the real artifact server."""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controllers.artifact import fetch_artifact
from controllers.conditions import kstatus_violations
from controllers.envtest import ControlPlane, free_port
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from source.api_v1 import Bucket
from source.bucket import BucketReconciler
from source.server import start_artifact_server
from source.storage import ArtifactStorage
from tests.integration.harness import (
    assert_new_revision_reported,
    conditions_written,
    is_ready,
    options,
    running,
    wait_for_object,
)
from tests.proxyserver import TinyProxy
from tests.s3server import ListingRewriter, S3Server

pytestmark = pytest.mark.integration

BUCKET = Bucket.info


@dataclass
class Source:
    reconciler: BucketReconciler
    storage: ArtifactStorage
    root: Path


@pytest.fixture
async def source(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> AsyncIterator[Source]:
    """The source controller's Bucket reconciler and its artifact server. On teardown every
    Bucket in the namespace must obey the kstatus rules."""
    port = free_port()
    root = tmp_path / "storage"
    storage = ArtifactStorage(root, f"127.0.0.1:{port}")
    server = await start_artifact_server(root, "127.0.0.1", port)
    reconciler = BucketReconciler(storage)
    opts = options(control_plane, namespace, name="source-controller")
    try:
        async with running(opts, [reconciler]):
            yield Source(reconciler, storage, root)
    finally:
        await server.cleanup()
    buckets = (await kube.list(BUCKET, namespace))["items"]
    for obj in buckets:
        if obj["metadata"].get("finalizers"):
            patch = {"metadata": {"finalizers": None}}
            await kube.patch(BUCKET, namespace, obj["metadata"]["name"], patch)
    problems = {obj["metadata"]["name"]: kstatus_violations(obj) for obj in buckets}
    assert not {name: found for name, found in problems.items() if found}, problems


@pytest.fixture(scope="module")
def s3_tls_server() -> Iterator[S3Server]:
    """MinIO over HTTPS, with a CA of its own (``ca_pem``)."""
    server = S3Server(Path(tempfile.mkdtemp(prefix="weir-s3-tls-")), tls=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def bucket(
    name: str, namespace: str, endpoint: str, bucket_name: str, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": BUCKET.api_version,
        "kind": BUCKET.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "bucketName": bucket_name,
            "endpoint": endpoint,
            "interval": "10m",
            "insecure": True,
            **spec,
        },
    }


async def secret(kube: KubeClient, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    await kube.create(SECRET, {"metadata": {"name": name, "namespace": namespace}, "data": encoded})


async def credentials(kube: KubeClient, namespace: str, server: S3Server, name: str = "s3") -> None:
    await secret(
        kube, namespace, name, {"accesskey": server.access_key, "secretkey": server.secret_key}
    )


async def ready(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await wait_for_object(kube, BUCKET, namespace, name, is_ready)


async def failed(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    """The object once its Ready condition is False."""
    return await wait_for_object(
        kube, BUCKET, namespace, name, lambda o: condition(o, "Ready").get("status") == "False"
    )


def condition(obj: dict[str, Any], type_: str) -> dict[str, str]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def flux_revision(etags: dict[str, str]) -> str:
    """Flux's Bucket revision, computed here independently of the controller."""
    lines = "".join(f"{key} {etags[key]}\n" for key in sorted(etags))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


async def files_of(obj: dict[str, Any], dest: Path) -> dict[str, str]:
    """The artifact's files, downloaded and digest-verified as a consumer would."""
    artifact = obj["status"]["artifact"]
    await fetch_artifact(artifact["url"], artifact["digest"], dest)
    return read_tree(dest)


def read_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def existing(*paths: Path) -> list[Path]:
    return [path for path in paths if path.exists()]


async def test_objects_become_an_artifact(
    kube: KubeClient, namespace: str, source: Source, s3_server: S3Server, tmp_path: Path
) -> None:
    name = namespace  # bucket names follow the same rules as namespace names
    s3_server.create_bucket(name)
    objects = {
        ".sourceignore": "*.md\n",
        "apps/app.yaml": "kind: ConfigMap\n",
        "apps/nested/deep.yaml": "kind: Secret\n",
        "apps/README.md": "ignored by .sourceignore\n",
        "apps/keep.md": "re-included by spec.ignore\n",
        "apps/local.env": "ignored by spec.ignore\n",
        "apps/a file+name.yaml": "odd characters\n",
        "apps/ünï/ß.yaml": "unicode\n",
        "apps/empty/": "",
        "other/outside.yaml": "outside the prefix\n",
    }
    etags = {key: s3_server.put_object(name, key, content) for key, content in objects.items()}
    await credentials(kube, namespace, s3_server)
    ignore = "*.env\n!apps/keep.md\n"
    await kube.create(
        BUCKET,
        bucket(
            "app",
            namespace,
            s3_server.endpoint,
            name,
            prefix="apps/",
            ignore=ignore,
            secretRef={"name": "s3"},
        ),
    )

    obj = await ready(kube, namespace, "app")

    fetched = [
        "apps/app.yaml",
        "apps/nested/deep.yaml",
        "apps/keep.md",
        "apps/a file+name.yaml",
        "apps/ünï/ß.yaml",
    ]
    revision = flux_revision({key: etags[key] for key in fetched})
    artifact = obj["status"]["artifact"]
    assert artifact["revision"] == revision
    assert artifact["path"] == f"bucket/{namespace}/app/{revision.removeprefix('sha256:')}.tar.gz"
    assert obj["status"]["url"] == artifact["url"]
    assert obj["status"]["observedIgnore"] == ignore
    # As in Flux, the bucket's root .sourceignore is part of the artifact.
    expected = {key: objects[key] for key in (*fetched, ".sourceignore")}
    assert await files_of(obj, tmp_path / "out") == expected
    assert condition(obj, "Ready")["message"] == f"stored artifact: revision '{revision}'"
    assert condition(obj, "ArtifactInStorage")["reason"] == "Succeeded"
    assert source.reconciler.stats["downloads"] == len(fetched)


async def test_new_object_new_revision_and_unchanged_bucket_downloads_nothing(
    kube: KubeClient, namespace: str, source: Source, s3_server: S3Server, tmp_path: Path
) -> None:
    name = namespace
    s3_server.create_bucket(name)
    etags = {"a.yaml": s3_server.put_object(name, "a.yaml", "a: 1\n")}
    await credentials(kube, namespace, s3_server)
    await kube.create(
        BUCKET, bucket("app", namespace, s3_server.endpoint, name, secretRef={"name": "s3"})
    )
    first = await ready(kube, namespace, "app")
    assert first["status"]["artifact"]["revision"] == flux_revision(etags)
    downloads, skipped = source.reconciler.stats["downloads"], source.reconciler.stats["skipped"]

    # An unchanged bucket is listed again, but nothing is downloaded or rebuilt.
    await request_reconcile(kube, namespace, "first")
    again = await handled(kube, namespace, "first")
    assert source.reconciler.stats["downloads"] == downloads
    assert source.reconciler.stats["skipped"] == skipped + 1
    assert again["status"]["artifact"] == first["status"]["artifact"]

    # A new object is a new revision right after a reconcile request.
    etags["b/b.yaml"] = s3_server.put_object(name, "b/b.yaml", "b: 2\n")
    await request_reconcile(kube, namespace, "second")
    newer = await wait_for_object(
        kube, BUCKET, namespace, "app", lambda o: revision_of(o) == flux_revision(etags)
    )
    assert await files_of(newer, tmp_path / "second") == {"a.yaml": "a: 1\n", "b/b.yaml": "b: 2\n"}

    # A deleted object leaves the artifact; the earlier artifact file is still served meanwhile.
    s3_server.delete_object(name, "a.yaml")
    del etags["a.yaml"]
    await request_reconcile(kube, namespace, "third")
    newest = await wait_for_object(
        kube, BUCKET, namespace, "app", lambda o: revision_of(o) == flux_revision(etags)
    )
    assert await files_of(newest, tmp_path / "third") == {"b/b.yaml": "b: 2\n"}
    assert await files_of(newer, tmp_path / "still") == {"a.yaml": "a: 1\n", "b/b.yaml": "b: 2\n"}


async def test_a_new_revision_is_reported_while_its_artifact_is_built(
    kube: KubeClient, namespace: str, source: Source, s3_server: S3Server
) -> None:
    name = namespace
    s3_server.create_bucket(name)
    etags = {"a.yaml": s3_server.put_object(name, "a.yaml", "a: 1\n")}
    await credentials(kube, namespace, s3_server)
    await kube.create(
        BUCKET, bucket("app", namespace, s3_server.endpoint, name, secretRef={"name": "s3"})
    )
    await ready(kube, namespace, "app")
    since = (await kube.get(BUCKET, namespace, "app"))["metadata"]["resourceVersion"]

    etags["b.yaml"] = s3_server.put_object(name, "b.yaml", "b: 2\n")
    await request_reconcile(kube, namespace, "new")
    revision = flux_revision(etags)
    written = await conditions_written(
        kube, BUCKET, namespace, "app", since, lambda o: revision_of(o) == revision
    )

    new = f"new upstream revision '{revision}'"
    assert_new_revision_reported(written, new)


async def request_reconcile(kube: KubeClient, namespace: str, value: str) -> None:
    patch = {"metadata": {"annotations": {REQUESTED_AT: value}}}
    await kube.patch(BUCKET, namespace, "app", patch)


async def handled(kube: KubeClient, namespace: str, value: str) -> dict[str, Any]:
    return await wait_for_object(
        kube,
        BUCKET,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == value,
    )


def revision_of(obj: dict[str, Any]) -> str | None:
    artifact = (obj.get("status") or {}).get("artifact") or {}
    revision: str | None = artifact.get("revision")
    return revision


async def test_credentials_that_do_not_work(
    kube: KubeClient, namespace: str, source: Source, s3_server: S3Server
) -> None:
    name = namespace
    s3_server.create_bucket(name)
    s3_server.put_object(name, "a.yaml", "a: 1\n")
    wrong_key = "not-the-secret-key-" + namespace
    await secret(
        kube, namespace, "wrong", {"accesskey": s3_server.access_key, "secretkey": wrong_key}
    )
    await secret(kube, namespace, "incomplete", {"accesskey": s3_server.access_key})
    endpoint = s3_server.endpoint
    await kube.create(
        BUCKET, bucket("wrong", namespace, endpoint, name, secretRef={"name": "wrong"})
    )
    await kube.create(
        BUCKET, bucket("incomplete", namespace, endpoint, name, secretRef={"name": "incomplete"})
    )
    await kube.create(BUCKET, bucket("absent", namespace, endpoint, name, secretRef={"name": "no"}))
    await kube.create(BUCKET, bucket("anonymous", namespace, endpoint, name))

    wrong = await failed(kube, namespace, "wrong")
    ready_condition = condition(wrong, "Ready")
    assert ready_condition["reason"] == "AuthenticationFailed"
    assert "SignatureDoesNotMatch" in ready_condition["message"]
    assert (
        f"check 'accesskey' and 'secretkey' in secret '{namespace}/wrong'"
        in (ready_condition["message"])
    )
    for text in (wrong_key, s3_server.secret_key):
        assert text not in str(wrong["status"])
    fetch_failed = condition(wrong, "FetchFailed")
    assert (fetch_failed["status"], fetch_failed["reason"]) == ("True", "AuthenticationFailed")
    assert "artifact" not in wrong["status"]

    incomplete = condition(await failed(kube, namespace, "incomplete"), "Ready")
    assert incomplete["reason"] == "AuthenticationFailed"
    assert "required fields 'accesskey' and 'secretkey'" in incomplete["message"]
    absent = condition(await failed(kube, namespace, "absent"), "Ready")
    assert absent["message"] == f"failed to get secret '{namespace}/no': not found"
    anonymous = condition(await failed(kube, namespace, "anonymous"), "Ready")
    assert anonymous["reason"] == "AuthenticationFailed"
    assert "AccessDenied" in anonymous["message"]
    assert "the bucket is not public: set spec.secretRef" in anonymous["message"]


async def test_missing_bucket(
    kube: KubeClient, namespace: str, source: Source, s3_server: S3Server
) -> None:
    await credentials(kube, namespace, s3_server)
    missing = f"nope-{namespace}"
    await kube.create(
        BUCKET, bucket("app", namespace, s3_server.endpoint, missing, secretRef={"name": "s3"})
    )

    obj = await failed(kube, namespace, "app")

    ready_condition = condition(obj, "Ready")
    assert ready_condition["reason"] == "BucketOperationFailed"
    assert ready_condition["message"] == (
        f"bucket '{missing}' not found at endpoint '{s3_server.endpoint}'"
    )
    assert condition(obj, "FetchFailed")["reason"] == "BucketOperationFailed"


async def test_hostile_key_is_refused(
    kube: KubeClient,
    namespace: str,
    source: Source,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MinIO refuses keys with '..' components, so a proxy renames one in the listings.
    name = namespace
    s3_server.create_bucket(name)
    s3_server.put_object(name, "ok.yaml", "fine\n")
    s3_server.put_object(name, "placeholder/etc/x", "escaped\n")
    proxy = ListingRewriter(s3_server, {"placeholder/etc/x": "../../etc/x"})
    await proxy.start()
    # The run's temp dirs go three levels down, so an escape would land in tmp_path, not /etc.
    scratch = tmp_path / "a" / "b"
    scratch.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = existing(Path("/etc/x"))
    try:
        await credentials(kube, namespace, s3_server)
        await kube.create(
            BUCKET, bucket("app", namespace, proxy.endpoint, name, secretRef={"name": "s3"})
        )
        obj = await failed(kube, namespace, "app")
    finally:
        await proxy.close()

    ready_condition = condition(obj, "Ready")
    assert ready_condition["reason"] == "BucketOperationFailed"
    assert ready_condition["message"].startswith(
        f"refusing object '../../etc/x' of bucket '{name}': "
    )
    assert "artifact" not in obj["status"]
    assert existing(tmp_path / "a" / "etc", Path("/etc/x"), source.root / "bucket") == before
    assert source.reconciler.stats["downloads"] == 0


async def test_tls_with_a_ca_from_cert_secret_ref(
    kube: KubeClient, namespace: str, source: Source, s3_tls_server: S3Server, tmp_path: Path
) -> None:
    name = namespace
    s3_tls_server.create_bucket(name)
    etag = s3_tls_server.put_object(name, "app.yaml", "over TLS\n")
    await credentials(kube, namespace, s3_tls_server)
    await secret(kube, namespace, "ca", {"ca.crt": s3_tls_server.ca_pem})
    endpoint = s3_tls_server.endpoint
    spec = {"secretRef": {"name": "s3"}, "insecure": False}
    await kube.create(
        BUCKET, bucket("app", namespace, endpoint, name, certSecretRef={"name": "ca"}, **spec)
    )
    await kube.create(BUCKET, bucket("untrusted", namespace, endpoint, name, **spec))

    obj = await ready(kube, namespace, "app")
    assert obj["status"]["artifact"]["revision"] == flux_revision({"app.yaml": etag})
    assert await files_of(obj, tmp_path / "out") == {"app.yaml": "over TLS\n"}
    untrusted = condition(await failed(kube, namespace, "untrusted"), "Ready")
    assert untrusted["reason"] == "BucketOperationFailed"
    assert "certificate verify failed" in untrusted["message"]


async def test_through_an_http_proxy(
    kube: KubeClient,
    namespace: str,
    source: Source,
    s3_server: S3Server,
    http_proxy: TinyProxy,
) -> None:
    s3_server.create_bucket(namespace)
    s3_server.put_object(namespace, "app.yaml", "kind: ConfigMap\n")
    await credentials(kube, namespace, s3_server)
    proxy = {"address": http_proxy.address, "username": http_proxy.username}
    encoded = {
        k: base64.b64encode(v.encode()).decode()
        for k, v in {**proxy, "password": http_proxy.password}.items()
    }
    await kube.create(
        SECRET, {"metadata": {"name": "proxy", "namespace": namespace}, "data": encoded}
    )
    before = http_proxy.requests_to(s3_server.port)
    await kube.create(
        BUCKET,
        bucket(
            "app",
            namespace,
            s3_server.endpoint,
            namespace,
            secretRef={"name": "s3"},
            proxySecretRef={"name": "proxy"},
        ),
    )
    await ready(kube, namespace, "app")
    assert http_proxy.requests_to(s3_server.port) > before, "nothing went through the proxy"
