"""generic-oidc bearer tokens against a real issuer on loopback: signature, issuer, audience,
expiry and not-before, the CEL validations, and what is fetched from the issuer when."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from notification.api_v1 import OIDCProvider
from notification.oidc import OIDCRefused, OIDCVerifier
from tests.oidc_issuer import Issuer, SigningKey, b64url, running_issuer

RSA = SigningKey.new("rsa-1")
EC = SigningKey.new("ec-1", "ES256")
ED = SigningKey.new("ed-1", "EdDSA")
PSS = SigningKey.new("pss-1", "PS256")
OTHER_RSA = SigningKey("rsa-1", "RS256", SigningKey.new("x").key)  # same kid, other key
MAIN_ONLY = [{"expression": "claims.sub.endsWith(':ref:refs/heads/main')", "message": "main only"}]


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with running_issuer(RSA, EC, ED, PSS) as running:
        yield running


@pytest.fixture
async def verifier() -> AsyncIterator[OIDCVerifier]:
    verifier = OIDCVerifier()
    try:
        yield verifier
    finally:
        await verifier.close()


def provider(issuer: Issuer, **fields: Any) -> OIDCProvider:
    return OIDCProvider.model_validate(
        {"issuerURL": issuer.url, "validations": MAIN_ONLY, **fields}
    )


Token = Callable[[Issuer], str]
NOW = int(time.time())


@pytest.mark.parametrize(
    ("make_token", "fields", "refusal"),
    [
        pytest.param(lambda i: i.token(RSA), {}, None, id="rs256"),
        pytest.param(lambda i: i.token(EC), {}, None, id="es256"),
        pytest.param(lambda i: i.token(ED), {}, None, id="eddsa"),
        pytest.param(lambda i: i.token(PSS), {}, None, id="ps256"),
        pytest.param(
            lambda i: i.token(RSA, aud=["other", "notification-controller"]),
            {},
            None,
            id="audience-in-a-list",
        ),
        pytest.param(
            lambda i: i.token(RSA, aud="weir"), {"audience": "weir"}, None, id="own-audience"
        ),
        pytest.param(
            lambda i: i.token(RSA, nbf=NOW + 120), {}, None, id="not-before-within-leeway"
        ),
        pytest.param(
            lambda i: i.token(OTHER_RSA), {}, "signature does not verify", id="other-key-same-kid"
        ),
        pytest.param(
            lambda i: i.token(RSA)[:-4] + "AAAA", {}, "signature does not verify", id="tampered"
        ),
        pytest.param(
            lambda i: _resigned(
                i.token(RSA, sub="repo:weir/app:ref:refs/heads/dev"),
                {
                    "iss": i.url,
                    "aud": "notification-controller",
                    "exp": NOW + 300,
                    "sub": "repo:weir/app:ref:refs/heads/main",
                },
            ),
            {},
            "signature does not verify",
            id="claims-swapped-after-signing",
        ),
        pytest.param(
            lambda i: RSA.sign({"iss": i.url, "aud": "notification-controller"}, alg="none"),
            {},
            "signing algorithm",
            id="alg-none",
        ),
        pytest.param(
            lambda i: RSA.sign({"iss": i.url}, alg="HS256"), {}, "signing algorithm", id="hs256"
        ),
        pytest.param(
            lambda i: i.token(RSA, iss="https://elsewhere.example"),
            {},
            "no oidcProvider",
            id="unknown-issuer",
        ),
        pytest.param(
            lambda i: i.token(RSA, aud="someone-else"), {}, "audience", id="other-audience"
        ),
        pytest.param(
            lambda i: i.token(RSA, aud="notification-controller"),
            {"audience": "weir"},
            "audience",
            id="default-audience-not-the-configured-one",
        ),
        pytest.param(lambda i: i.token(RSA, aud=None), {}, "audience", id="no-audience"),
        pytest.param(lambda i: i.token(RSA, lifetime=-1), {}, "expired", id="expired"),
        pytest.param(lambda i: i.token(RSA, exp=None), {}, "no expiry", id="no-expiry"),
        pytest.param(lambda i: i.token(RSA, exp="soon"), {}, "no expiry", id="expiry-not-a-number"),
        pytest.param(
            lambda i: i.token(RSA, nbf=NOW + 3600), {}, "not valid yet", id="not-before-ahead"
        ),
        pytest.param(
            lambda i: i.token(RSA, sub="repo:weir/app:ref:refs/heads/dev"),
            {},
            "token validation failed: main only",
            id="validation-false",
        ),
        pytest.param(
            lambda i: i.token(RSA, repository="weir/app"),
            {
                "variables": [{"name": "repo", "expression": "claims.repository.split('/')[1]"}],
                "validations": [{"expression": "vars.repo == 'app'", "message": "app only"}],
            },
            None,
            id="variables-then-validations",
        ),
        pytest.param(
            lambda i: i.token(RSA),
            {"validations": [{"expression": "claims.missing == 1", "message": "m"}]},
            "token validation failed: failed to evaluate",
            id="validation-cannot-evaluate",
        ),
        pytest.param(lambda i: "not-a-jwt", {}, "not a JWT", id="not-a-jwt"),
        pytest.param(lambda i: "a.b.c", {}, "not a JWT", id="three-parts-of-nothing"),
    ],
)
async def test_tokens(
    issuer: Issuer,
    verifier: OIDCVerifier,
    make_token: Token,
    fields: dict[str, Any],
    refusal: str | None,
) -> None:
    token = make_token(issuer)
    providers = [provider(issuer, **fields)]
    if refusal is None:
        claims = await verifier.claims(providers, f"Bearer {token}")
        assert claims["iss"] == issuer.url
        return
    with pytest.raises(OIDCRefused) as raised:
        await verifier.claims(providers, f"Bearer {token}")
    assert raised.value.status == 401
    assert refusal in str(raised.value)
    assert token not in str(raised.value)


def _resigned(token: str, claims: dict[str, Any]) -> str:
    """``token`` with its payload replaced and the old signature kept."""
    head, _, signature = token.split(".")
    return f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "bearer x.y.z"],
    ids=["missing", "empty", "scheme-only", "blank-token", "basic", "lower-case-scheme"],
)
async def test_authorization_header(
    issuer: Issuer, verifier: OIDCVerifier, authorization: str | None
) -> None:
    with pytest.raises(OIDCRefused, match=r"(missing or malformed|not a JWT)"):
        await verifier.claims([provider(issuer)], authorization)


async def test_the_issuer_must_name_itself(issuer: Issuer, verifier: OIDCVerifier) -> None:
    issuer.claimed_issuer = "https://accounts.google.com"
    with pytest.raises(OIDCRefused, match="names another issuer") as raised:
        await verifier.claims([provider(issuer)], f"Bearer {issuer.token()}")
    assert raised.value.status == 503


async def test_an_issuer_that_does_not_answer_is_503(verifier: OIDCVerifier) -> None:
    async with running_issuer(RSA) as gone:
        token = gone.token()
        url = gone.url
    refused = OIDCProvider.model_validate({"issuerURL": url, "validations": MAIN_ONLY})
    with pytest.raises(OIDCRefused, match="cannot be read") as raised:
        await verifier.claims([refused], f"Bearer {token}")
    assert raised.value.status == 503


async def test_an_algorithm_the_issuer_does_not_list_is_refused(
    issuer: Issuer, verifier: OIDCVerifier
) -> None:
    issuer.algorithms = ["RS256"]
    with pytest.raises(OIDCRefused, match="signing algorithm"):
        await verifier.claims([provider(issuer)], f"Bearer {issuer.token(EC)}")


async def test_discovery_and_keys_are_kept_and_fetched_again_for_a_new_key_id(
    issuer: Issuer,
) -> None:
    verifier = OIDCVerifier(keys_refetch=0)
    try:
        for _ in range(3):
            await verifier.claims([provider(issuer)], f"Bearer {issuer.token(RSA)}")
        assert issuer.fetches == {"/.well-known/openid-configuration": 1, "/keys": 1}
        rotated = SigningKey.new("rsa-2")
        issuer.keys.append(rotated)
        await verifier.claims([provider(issuer)], f"Bearer {issuer.token(rotated)}")
        assert issuer.fetches["/keys"] == 2
    finally:
        await verifier.close()


async def test_made_up_key_ids_do_not_make_the_keys_fetched_each_time(
    issuer: Issuer, verifier: OIDCVerifier
) -> None:
    await verifier.claims([provider(issuer)], f"Bearer {issuer.token(RSA)}")
    for number in range(5):
        stranger = SigningKey(f"made-up-{number}", "RS256", OTHER_RSA.key)
        with pytest.raises(OIDCRefused, match="signature does not verify"):
            await verifier.claims([provider(issuer)], f"Bearer {issuer.token(stranger)}")
    assert issuer.fetches["/keys"] == 1
