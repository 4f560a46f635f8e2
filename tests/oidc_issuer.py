"""A real OIDC issuer for the tests, on loopback: its discovery document and JSON Web Key Set
over HTTP (the runtime's own server), and RS256/ES256/EdDSA ID tokens signed with
``cryptography``, as a CI system or a cloud's metadata server issues them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from controllers.httpserver import Request, Response, serve_http

__all__ = ["Issuer", "SigningKey", "b64url", "running_issuer"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _integer(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


@dataclass
class SigningKey:
    """A private key, its key id and the JWS algorithm it signs with."""

    kid: str
    alg: str
    key: PrivateKey

    @classmethod
    def new(cls, kid: str, alg: str = "RS256") -> SigningKey:
        key: PrivateKey
        if alg.startswith(("RS", "PS")):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        return cls(kid, alg, key)

    def jwk(self) -> dict[str, Any]:
        """The public half, as a JWK."""
        base = {"kid": self.kid, "use": "sig", "alg": self.alg}
        if isinstance(self.key, rsa.RSAPrivateKey):
            numbers = self.key.public_key().public_numbers()
            return {**base, "kty": "RSA", "n": _integer(numbers.n), "e": _integer(numbers.e)}
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            point = self.key.public_key().public_numbers()
            return {
                **base,
                "kty": "EC",
                "crv": "P-256",
                "x": b64url(point.x.to_bytes(32, "big")),
                "y": b64url(point.y.to_bytes(32, "big")),
            }
        raw = self.key.public_key().public_bytes_raw()
        return {**base, "kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A compact JWS of ``claims``; ``header`` entries override (``alg``, ``kid``)."""
        head = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **header}
        signing_input = (
            f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
        ).encode()
        if isinstance(self.key, rsa.RSAPrivateKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if self.alg.startswith("RS")
                else padding.PSS(
                    mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH
                )
            )
            signature = self.key.sign(signing_input, pad, hashes.SHA256())
        elif isinstance(self.key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self.key.sign(signing_input)
        return f"{signing_input.decode()}.{b64url(signature)}"


@dataclass
class Issuer:
    """What the issuer serves: ``url`` is its issuer URL; ``keys`` its published keys (change
    them to rotate); ``fetches`` counts requests by path."""

    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256", "EdDSA", "PS256"])
    # The issuer its discovery document names: its own URL unless a test says otherwise.
    claimed_issuer: str | None = None
    fetches: dict[str, int] = field(default_factory=dict)

    def token(
        self, key: SigningKey | None = None, *, lifetime: float = 300.0, **claims: Any
    ) -> str:
        """An ID token of this issuer, for the audience ``notification-controller`` unless
        ``aud`` is given; a claim given as None is left out."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "aud": "notification-controller",
            "sub": "repo:weir/app:ref:refs/heads/main",
            "iat": now,
            "exp": now + int(lifetime),
        }
        merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
        return (key or self.keys[0]).sign(merged)

    async def handle(self, request: Request) -> Response:
        self.fetches[request.path] = self.fetches.get(request.path, 0) + 1
        document: dict[str, Any]
        if request.path == "/.well-known/openid-configuration":
            document = {
                "issuer": self.claimed_issuer or self.url,
                "jwks_uri": f"{self.url}/keys",
                "id_token_signing_alg_values_supported": self.algorithms,
            }
        elif request.path == "/keys":
            document = {"keys": [key.jwk() for key in self.keys]}
        else:
            return Response(404)
        return Response(200, json.dumps(document).encode(), content_type="application/json")


@asynccontextmanager
async def running_issuer(*keys: SigningKey) -> AsyncIterator[Issuer]:
    """An issuer publishing ``keys`` (a new RS256 key if none) on a free loopback port."""
    issuer = Issuer(keys=list(keys) or [SigningKey.new("rsa-1")])
    async with serve_http("127.0.0.1:0", issuer.handle, name="oidc-issuer") as server:
        host, port = server.addresses[0]
        issuer.url = f"http://{host}:{port}"
        yield issuer
