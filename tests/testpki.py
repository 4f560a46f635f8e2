"""A throwaway certificate authority for the test servers: TLS for 127.0.0.1 and localhost."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TLSFiles", "self_signed_pem"]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        key_usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(key_usage, critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def self_signed_pem(subject: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A self-signed certificate for ``key``, as PEM (e.g. a token signer's)."""
    return _pem_cert(_issue(subject, key, None, None))


@dataclass(frozen=True)
class TLSFiles:
    """A CA, a server pair for 127.0.0.1 and localhost, and a client pair, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path) -> TLSFiles:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue("weir-test-registry-ca", ca_key, None, None)
        files = cls(
            ca=directory / "ca.crt",
            server_cert=directory / "server.crt",
            server_key=directory / "server.key",
            client_cert=directory / "client.crt",
            client_key=directory / "client.key",
        )
        files.ca.write_bytes(_pem_cert(ca))
        for usage, cert_path, key_path in (
            (ExtendedKeyUsageOID.SERVER_AUTH, files.server_cert, files.server_key),
            (ExtendedKeyUsageOID.CLIENT_AUTH, files.client_cert, files.client_key),
        ):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue("127.0.0.1", key, (ca, ca_key), usage)
            cert_path.write_bytes(_pem_cert(cert))
            key_path.write_bytes(_pem_key(key))
            key_path.chmod(0o600)
        return files

    def secret_data(self, *, client: bool = False) -> dict[str, str]:
        """A Flux ``certSecretRef`` Secret's data: ``ca.crt``, and the client pair if asked."""
        data = {"ca.crt": self.ca.read_text()}
        if client:
            data |= {
                "tls.crt": self.client_cert.read_text(),
                "tls.key": self.client_key.read_text(),
            }
        return data


# The token server
