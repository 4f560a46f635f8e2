"""controllers.tls: the system context, and contexts from Secret data against a real server
that requires a client certificate."""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from controllers.tls import TLSConfigError, context_from_secret, system_context
from tests.testpki import TLSFiles
from tests.tlsfront import MutualTLSFront


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def server(pki: TLSFiles) -> AsyncIterator[MutualTLSFront]:
    front = MutualTLSFront(pki)
    await front.start()
    try:
        yield front
    finally:
        await front.close()


def pair(pki: TLSFiles) -> dict[str, str]:
    return {"tls.crt": pki.client_cert.read_text(), "tls.key": pki.client_key.read_text()}


async def get(server: MutualTLSFront, context: ssl.SSLContext) -> str:
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        response = await client.get(f"https://{server.endpoint}/")
        return response.text


def test_the_system_context_is_built_once_and_verifies() -> None:
    context = system_context()

    assert context is system_context()
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_data_without_tls_keys_is_the_system_context_unless_required() -> None:
    assert context_from_secret({"username": "u"}) is system_context()
    with pytest.raises(TLSConfigError, match=r"^secret 'ns/tls': no TLS configuration"):
        context_from_secret({"username": "u"}, "ns/tls", required=True)


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(("ca.crt", "tls.crt", "tls.key"), id="standard"),
        pytest.param(("caFile", "certFile", "keyFile"), id="legacy"),
    ],
)
async def test_a_client_certificate_is_presented(
    pki: TLSFiles, server: MutualTLSFront, keys: tuple[str, str, str]
) -> None:
    ca, cert, key = keys
    data = {ca: pki.ca.read_text(), cert: pki.client_cert.read_text()}
    data[key] = pki.client_key.read_text()

    assert await get(server, context_from_secret(data, "ns/tls")) == "ok"
    assert server.clients == ["127.0.0.1"]


async def test_the_standard_key_wins_over_the_legacy_one(
    pki: TLSFiles, server: MutualTLSFront
) -> None:
    data = {"ca.crt": pki.ca.read_text(), "caFile": "not a certificate", **pair(pki)}

    assert await get(server, context_from_secret(data, "ns/tls")) == "ok"


async def test_without_a_client_certificate_the_server_refuses(
    pki: TLSFiles, server: MutualTLSFront
) -> None:
    context = context_from_secret({"ca.crt": pki.ca.read_text()}, "ns/tls")

    with pytest.raises((httpx.HTTPError, ssl.SSLError)):
        await get(server, context)
    assert server.clients == []


async def test_the_ca_is_added_to_the_system_roots(pki: TLSFiles) -> None:
    context = context_from_secret({"ca.crt": pki.ca.read_text()})

    assert len(context.get_ca_certs()) == len(system_context().get_ca_certs()) + 1


def encrypted_key(pki: TLSFiles) -> str:
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()


@pytest.mark.parametrize(
    ("data", "message", "key"),
    [
        pytest.param(
            {"ca.crt": "not a certificate"}, "'ca.crt' is not a PEM certificate", "ca.crt", id="ca"
        ),
        pytest.param(
            {"caFile": "not a certificate"},
            "'caFile' is not a PEM certificate",
            "caFile",
            id="ca-legacy",
        ),
        pytest.param(
            {"tls.crt": "x"},
            "'tls.crt' and 'tls.key' must be given together",
            "tls.key",
            id="no-key",
        ),
        pytest.param(
            {"tls.key": "x"},
            "'tls.crt' and 'tls.key' must be given together",
            "tls.crt",
            id="no-cert",
        ),
        pytest.param(
            {"tls.crt": "x", "tls.key": "y"},
            "'tls.crt' and 'tls.key' are not a matching PEM certificate and key",
            "tls.key",
            id="garbage-pair",
        ),
    ],
)
def test_unusable_data_names_the_secret_and_key(
    data: dict[str, str], message: str, key: str
) -> None:
    with pytest.raises(TLSConfigError) as caught:
        context_from_secret(data, "ns/tls")

    assert str(caught.value) == f"secret 'ns/tls': {message}"
    assert (caught.value.secret, caught.value.key) == ("ns/tls", key)


def test_a_mismatched_or_encrypted_key_is_refused_without_a_prompt(
    pki: TLSFiles, tmp_path: Path
) -> None:
    other = TLSFiles.create(tmp_path)
    cases = [
        {"tls.crt": pki.client_cert.read_text(), "tls.key": other.client_key.read_text()},
        {"tls.crt": pki.client_cert.read_text(), "tls.key": encrypted_key(pki)},
    ]
    for data in cases:
        with pytest.raises(TLSConfigError, match="not a matching PEM certificate and key") as err:
            context_from_secret(data, "ns/tls")
        assert "PRIVATE KEY" not in str(err.value)


def test_key_files_are_private_new_and_gone_once_loaded(
    pki: TLSFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    opened: list[tuple[str, int, int, int]] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            directory_mode = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
            opened.append((os.path.basename(path), flags, mode, directory_mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    context_from_secret({"ca.crt": pki.ca.read_text(), **pair(pki)}, "ns/tls")
    monkeypatch.undo()

    assert [name for name, *_ in opened] == ["tls.crt", "tls.key"]
    for _, flags, mode, directory_mode in opened:
        assert flags & os.O_EXCL
        assert flags & os.O_NOFOLLOW
        assert (mode, directory_mode) == (0o600, 0o700)
    assert list(tmp_path.iterdir()) == []
