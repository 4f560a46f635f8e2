"""Bearer tokens of generic-oidc Receivers: every claim checked, as the issue requires.

As Flux's ``validateGenericOIDC`` (go-oidc underneath): the token's unverified ``iss`` picks
the Receiver's ``oidcProviders`` entry; the issuer's discovery document must name that same
issuer; the signature must verify with a key of its JWKS, in an algorithm the issuer lists
(RS256 if it lists none; never ``none``); ``iss`` must equal the issuer URL, ``aud`` contain
the audience (``notification-controller`` by default), ``exp`` be present and not past and
``nbf``, if present, not more than five minutes ahead. Then the provider's CEL ``variables``
are evaluated in order over ``claims`` and ``vars``, and every ``validations`` entry must be
true. Unlike Flux, which fetches the discovery document and keys on every request, both are
kept for ``ttl`` seconds, and the keys fetched again when a token names a key id they lack.

Errors are ``OIDCRefused``: 401 for a token that is not accepted, 503 when the issuer cannot
be read. Their messages are fixed phrases, issuer URLs and the validations' own messages:
never the token or a claim value.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from controllers.cel import CelError, compile_expression
from controllers.tls import system_context
from notification.api_v1 import DEFAULT_OIDC_AUDIENCE, OIDCProvider

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "OIDCRefused",
    "OIDCVerifier",
    "check_claims",
    "evaluate_claims",
]

# What go-jose verifies; 'none' and the HMAC algorithms are never accepted.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "ES256": (ec.SECP256R1, "P-256"),
    "ES384": (ec.SECP384R1, "P-384"),
    "ES512": (ec.SECP521R1, "P-521"),
}
SUPPORTED_ALGORITHMS = frozenset(
    [f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in _HASHES] + ["EdDSA"]
)
# go-oidc's allowance for a clock ahead of ours, on nbf.
NOT_BEFORE_LEEWAY_SECONDS = 300.0
FETCH_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 1024 * 1024
CACHE_SECONDS = 300.0
# Keys are fetched again for an unknown key id at most this often: a stream of made-up key
# ids must not become a stream of requests to the issuer.
KEYS_REFETCH_SECONDS = 10.0


class OIDCRefused(Exception):
    """A request whose token is not accepted (``status`` 401), or whose issuer could not be
    read (503). The message says why without the token or its claims."""

    def __init__(self, why: str, status: int = 401) -> None:
        super().__init__(why)
        self.status = status


@dataclass
class _Issuer:
    """What an issuer publishes, as fetched at ``fetched`` (time.monotonic)."""

    fetched: float
    jwks_uri: str
    algorithms: frozenset[str]
    keys: list[dict[str, Any]]
    keys_fetched: float


def _b64decode(part: str) -> bytes:
    try:
        return base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise OIDCRefused("the bearer token is not a JWT") from None


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise OIDCRefused("the bearer token is not a JWT") from None
    if not isinstance(value, dict):
        raise OIDCRefused("the bearer token is not a JWT")
    return value


@dataclass(frozen=True)
class _Token:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _parse(raw: str) -> _Token:
    parts = raw.split(".")
    if len(parts) != 3:
        raise OIDCRefused("the bearer token is not a JWT")
    header = _json_object(_b64decode(parts[0]))
    claims = _json_object(_b64decode(parts[1]))
    return _Token(header, claims, f"{parts[0]}.{parts[1]}".encode(), _b64decode(parts[2]))


def _integer(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(name)
    return int.from_bytes(_b64decode(value), "big")


def _verifies(alg: str, jwk: Mapping[str, Any], token: _Token) -> bool:
    """Whether ``token``'s signature verifies in ``alg`` with the key ``jwk``; a key of
    another type or curve, or one that does not parse, does not."""
    data, signature = token.signing_input, token.signature
    try:
        if alg[:2] in ("RS", "PS") and jwk.get("kty") == "RSA":
            rsa_key = rsa.RSAPublicNumbers(_integer(jwk, "e"), _integer(jwk, "n")).public_key()
            digest = _HASHES[alg[2:]]()
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg[:2] == "RS"
                else padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO)
            )
            rsa_key.verify(signature, data, pad, digest)
            return True
        if alg in _CURVES and jwk.get("kty") == "EC":
            curve, name = _CURVES[alg]
            if jwk.get("crv") != name:
                return False
            numbers = ec.EllipticCurvePublicNumbers(_integer(jwk, "x"), _integer(jwk, "y"), curve())
            ec_key = numbers.public_key()
            size = (ec_key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r, s = (int.from_bytes(signature[i : i + size], "big") for i in (0, size))
            ec_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_HASHES[alg[2:]]()))
            return True
        if alg == "EdDSA" and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            x = jwk.get("x")
            if not isinstance(x, str):
                return False
            ed25519.Ed25519PublicKey.from_public_bytes(_b64decode(x)).verify(signature, data)
            return True
    except (InvalidSignature, ValueError, OIDCRefused, KeyError):
        return False
    return False


def _seconds(value: Any) -> float | None:
    """A NumericDate claim (seconds since the epoch), or None if it is not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def check_claims(claims: Mapping[str, Any], provider: OIDCProvider, now: float) -> None:
    """``iss``, ``aud``, ``exp`` and ``nbf`` of verified ``claims``, as go-oidc checks them."""
    if claims.get("iss") != provider.issuer_url:
        raise OIDCRefused(f"the token was not issued by {provider.issuer_url}")
    audience = provider.audience or DEFAULT_OIDC_AUDIENCE
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise OIDCRefused(f"the token is not for the audience '{audience}'")
    expiry = _seconds(claims.get("exp"))
    if expiry is None:
        raise OIDCRefused("the token has no expiry")
    if expiry < now:
        raise OIDCRefused("the token has expired")
    if claims.get("nbf") is not None:
        not_before = _seconds(claims["nbf"])
        if not_before is None:
            raise OIDCRefused("the token's nbf is not a time")
        if now + NOT_BEFORE_LEEWAY_SECONDS < not_before:
            raise OIDCRefused("the token is not valid yet")


def evaluate_claims(provider: OIDCProvider, claims: dict[str, Any]) -> None:
    """The provider's ``variables`` in order, then every ``validations`` entry, over
    ``claims`` and ``vars``; ``OIDCRefused`` with the messages of those that are false."""
    variables: dict[str, Any] = {}
    data = {"claims": claims, "vars": variables}
    try:
        for variable in provider.variables or []:
            variables[variable.name] = compile_expression(variable.expression).evaluate(data)
        failed = [
            validation.message
            for validation in provider.validations
            if not compile_expression(validation.expression).evaluate_bool(data)
        ]
    except CelError as err:
        raise OIDCRefused(f"token validation failed: {err}") from err
    if failed:
        raise OIDCRefused(f"token validation failed: {'; '.join(failed)}")


class OIDCVerifier:
    """Verifies bearer tokens against the issuers Receivers name, keeping what each issuer
    publishes for ``ttl`` seconds; its keys are fetched again for an unknown key id at most
    every ``keys_refetch`` seconds."""

    def __init__(
        self, *, ttl: float = CACHE_SECONDS, keys_refetch: float = KEYS_REFETCH_SECONDS
    ) -> None:
        self.ttl = ttl
        self.keys_refetch = keys_refetch
        self._issuers: dict[str, _Issuer] = {}
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def claims(
        self, providers: Sequence[OIDCProvider], authorization: str | None
    ) -> dict[str, Any]:
        """The verified claims of the bearer token in ``authorization``, which one of
        ``providers`` issued and whose validations it passes."""
        scheme, _, raw = (authorization or "").partition(" ")
        raw = raw.strip()
        if scheme != "Bearer" or not raw:
            raise OIDCRefused("the Authorization header is missing or malformed")
        token = _parse(raw)
        issuer = token.claims.get("iss")
        provider = next((p for p in providers if p.issuer_url == issuer), None)
        if provider is None:
            raise OIDCRefused("no oidcProvider is configured for the token's issuer")
        alg = token.header.get("alg")
        if not isinstance(alg, str):
            raise OIDCRefused("the token names no signing algorithm")
        await self._verify_signature(provider.issuer_url, alg, token)
        check_claims(token.claims, provider, time.time())
        evaluate_claims(provider, token.claims)
        return token.claims

    async def _verify_signature(self, issuer_url: str, alg: str, token: _Token) -> None:
        issuer = await self._issuer(issuer_url)
        if alg not in issuer.algorithms:
            raise OIDCRefused(f"the token's signing algorithm is not one {issuer_url} uses")
        kid = token.header.get("kid")
        candidates = _candidates(issuer.keys, alg, kid)
        if not candidates and time.monotonic() - issuer.keys_fetched >= self.keys_refetch:
            # A key id we do not know: the issuer may have rotated its keys since.
            issuer.keys = await self._keys(issuer.jwks_uri)
            issuer.keys_fetched = time.monotonic()
            candidates = _candidates(issuer.keys, alg, kid)
        if not any(_verifies(alg, jwk, token) for jwk in candidates):
            raise OIDCRefused(f"the token's signature does not verify with {issuer_url}'s keys")

    async def _issuer(self, issuer_url: str) -> _Issuer:
        cached = self._issuers.get(issuer_url)
        if cached is not None and time.monotonic() - cached.fetched < self.ttl:
            return cached
        url = issuer_url.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._fetch(url)
        if document.get("issuer") != issuer_url:
            raise OIDCRefused(f"{url} names another issuer", 503)
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise OIDCRefused(f"{url} has no jwks_uri", 503)
        listed = document.get("id_token_signing_alg_values_supported")
        algorithms = (
            frozenset(a for a in listed if isinstance(a, str)) & SUPPORTED_ALGORITHMS
            if isinstance(listed, list) and listed
            else frozenset({"RS256"})
        )
        keys = await self._keys(jwks_uri)
        now = time.monotonic()
        issuer = _Issuer(now, jwks_uri, algorithms, keys, now)
        self._issuers[issuer_url] = issuer
        return issuer

    async def _keys(self, jwks_uri: str) -> list[dict[str, Any]]:
        keys = (await self._fetch(jwks_uri)).get("keys")
        if not isinstance(keys, list):
            raise OIDCRefused(f"{jwks_uri} is not a JSON Web Key Set", 503)
        return [key for key in keys if isinstance(key, dict)]

    async def _fetch(self, url: str) -> dict[str, Any]:
        """A JSON object from ``url``, read up to ``MAX_DOCUMENT_BYTES``."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=system_context(), timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=True
            )
        body = bytearray()
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise OIDCRefused(f"{url} answered {response.status_code}", 503)
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise OIDCRefused(f"{url} is over {MAX_DOCUMENT_BYTES} bytes", 503)
        except httpx.HTTPError as err:
            raise OIDCRefused(f"{url} cannot be read: {type(err).__name__}", 503) from err
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise OIDCRefused(f"{url} is not a JSON object", 503)
        return document


def _candidates(keys: Sequence[dict[str, Any]], alg: str, kid: Any) -> list[dict[str, Any]]:
    """The keys that may have signed a token in ``alg`` with key id ``kid`` (any, if None)."""
    return [
        key
        for key in keys
        if (kid is None or key.get("kid") == kid)
        and key.get("use", "sig") == "sig"
        and key.get("alg", alg) == alg
    ]
