"""The API client's own kubeconfig and in-cluster loading against the real API server: client
certificates in files, tls-server-name, service account tokens read from the pod's files (and
read again as the kubelet rotates them), and exec plugins whose client certificate expires."""

from __future__ import annotations

import datetime
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers import kube as kube_module
from controllers.api import ResourceInfo
from controllers.envtest import ADMIN_USER, UNPRIVILEGED_USER, ControlPlane
from controllers.kinds import SERVICE_ACCOUNT
from controllers.kube import KubeClient, TransportError

pytestmark = pytest.mark.integration

SELF_REVIEW = ResourceInfo(
    group="authentication.k8s.io",
    version="v1",
    kind="SelfSubjectReview",
    plural="selfsubjectreviews",
    namespaced=False,
)
EXEC_API = "client.authentication.k8s.io/v1"


async def username(client: KubeClient) -> str:
    """Who the API server takes ``client``'s requests to come from."""
    review = await client.create(SELF_REVIEW, {"apiVersion": "authentication.k8s.io/v1"})
    return str(review["status"]["userInfo"]["username"])


async def whoami(client: KubeClient) -> str:
    """``username``, then ``client`` closed."""
    try:
        return await username(client)
    finally:
        await client.close()


def kubeconfig(server: str, cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
    }


def write(path: Path, config: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


async def service_account_token(kube_client: KubeClient, namespace: str, name: str) -> str:
    """A token of a new ServiceAccount ``name``, from the TokenRequest API."""
    await kube_client.create(SERVICE_ACCOUNT, {"metadata": {"name": name, "namespace": namespace}})
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    answer = await kube_client.request("POST", path, body=request)
    return str(answer["status"]["token"])


async def test_certificates_in_files_are_read_relative_to_the_kubeconfig(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    certs = control_plane.certs
    for name, source in (
        ("ca.crt", certs.path("ca", "crt")),
        ("admin.crt", certs.path(ADMIN_USER, "crt")),
        ("admin.key", certs.path(ADMIN_USER, "key")),
    ):
        shutil.copy(source, tmp_path / name)
    cluster = {"certificate-authority": "ca.crt"}
    user = {"client-certificate": "admin.crt", "client-key": str(tmp_path / "admin.key")}
    path = write(tmp_path / "config", kubeconfig(control_plane.server, cluster, user))

    assert await whoami(await KubeClient.connect(path)) == ADMIN_USER


@pytest.mark.parametrize(
    ("name", "verified"),
    [
        pytest.param("localhost", True, id="a-name-of-the-certificate"),
        pytest.param("elsewhere.example", False, id="another-name"),
    ],
)
async def test_tls_server_name_is_the_name_verified(
    control_plane: ControlPlane, tmp_path: Path, name: str, verified: bool
) -> None:
    config = yaml.safe_load(control_plane.admin_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["tls-server-name"] = name
    client = await KubeClient.connect(write(tmp_path / "config", config))

    if verified:
        assert await whoami(client) == ADMIN_USER
        return
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        await whoami(client)


async def test_in_cluster_the_service_account_token_is_used_and_read_again(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await service_account_token(kube, namespace, "first")
    second = await service_account_token(kube, namespace, "second")
    shutil.copy(control_plane.certs.path("ca", "crt"), tmp_path / "ca.crt")
    (tmp_path / "token").write_text(first)
    (tmp_path / "namespace").write_text(namespace)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(control_plane.apiserver_port))
    monkeypatch.setattr(kube_module, "SERVICE_ACCOUNT_DIR", tmp_path)

    client = await KubeClient.connect()
    try:
        assert (client.host, client.namespace) == (control_plane.server, namespace)
        assert await username(client) == f"system:serviceaccount:{namespace}:first"
        (tmp_path / "token").write_text(second)  # the kubelet rotated it
        monkeypatch.setattr(kube_module, "TOKEN_FILE_REREAD_SECONDS", 0.0)
        assert await username(client) == f"system:serviceaccount:{namespace}:second"
    finally:
        await client.close()


async def test_an_exec_client_certificate_is_renewed_when_it_expires(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # First run: the unprivileged user's certificate, valid for an hour; then the admin's.
    in_an_hour = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    answers = []
    for user, expires in ((UNPRIVILEGED_USER, in_an_hour.isoformat()), (ADMIN_USER, None)):
        status = {
            "clientCertificateData": control_plane.certs.path(user, "crt").read_text(),
            "clientKeyData": control_plane.certs.path(user, "key").read_text(),
        }
        if expires:
            status["expirationTimestamp"] = expires
        answers.append({"apiVersion": EXEC_API, "kind": "ExecCredential", "status": status})
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, pathlib\n"
        f"here = pathlib.Path({str(tmp_path)!r})\n"
        "runs = here / 'runs'\n"
        "n = int(runs.read_text()) if runs.exists() else 0\n"
        "runs.write_text(str(n + 1))\n"
        "answers = json.loads((here / 'answers.json').read_text())\n"
        "print(json.dumps(answers[min(n, len(answers) - 1)]))\n"
    )
    config = yaml.safe_load(control_plane.admin_kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {"apiVersion": EXEC_API, "command": sys.executable, "args": [str(script)]}
    }
    client = await KubeClient.connect(write(tmp_path / "config", config))
    try:
        assert await username(client) == UNPRIVILEGED_USER
        assert await username(client) == UNPRIVILEGED_USER  # kept until it expires
        later = time.time() + 2 * 3600
        monkeypatch.setattr(kube_module, "_wall_clock", lambda: later)
        # Expired: the plugin runs again, and new connections present the admin's certificate.
        assert await username(client) == ADMIN_USER
    finally:
        await client.close()
    assert (tmp_path / "runs").read_text() == "2"
