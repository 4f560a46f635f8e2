"""notification.providers: resolving a Provider and its Secrets into a Target, and the refusals
(ProviderError) for Providers that can never send. Payloads: test_providers_payloads.py;
commit statuses: test_providers_commitstatus.py."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest

from controllers.secrets import SecretData
from controllers.tls import system_context
from notification.api_v1beta3 import PROVIDER_TYPES, Provider
from notification.providers import (
    FLUX_RETRY,
    SUPPORTED_TYPES,
    ProviderError,
    RetryPolicy,
    resolve_target,
)
from notification.providers.target import endpoint_of
from tests.testpki import TLSFiles

SLACK_HOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"


def provider(type_: str = "generic", **spec: Any) -> Provider:
    return Provider.model_validate(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "hook", "namespace": "apps", "uid": "0c9c2e41-aaaa-bbbb"},
            "spec": {"type": type_, **spec},
        }
    )


def secret(name: str = "creds", **data: str) -> SecretData:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return SecretData("apps", name, encoded)


def refusal(
    prov: Provider,
    creds: SecretData | None = None,
    cert: SecretData | None = None,
    proxy: SecretData | None = None,
) -> str:
    with pytest.raises(ProviderError) as caught:
        resolve_target(prov, creds, cert, proxy)
    return str(caught.value)


UNSUPPORTED = sorted(set(PROVIDER_TYPES) - SUPPORTED_TYPES)


def test_every_type_weir_sends_is_in_fluxs_enum() -> None:
    assert set(PROVIDER_TYPES) >= SUPPORTED_TYPES
    assert "googlepubsub" in UNSUPPORTED
    assert "slack" not in UNSUPPORTED


@pytest.mark.parametrize("type_", [pytest.param(t, id=t) for t in UNSUPPORTED])
def test_a_type_weir_does_not_implement_is_refused_by_name(type_: str) -> None:
    assert refusal(provider(type_, address="https://example.com")) == (
        f"provider type '{type_}' is not supported by weir"
    )


def test_workload_identity_is_refused() -> None:
    message = refusal(provider("generic", address="https://a.example", serviceAccountName="sa"))
    assert "serviceAccountName" in message
    assert "not supported by weir" in message


@pytest.mark.parametrize(
    ("prov", "creds", "expected"),
    [
        pytest.param(provider("generic"), None, "needs an address", id="no-address"),
        pytest.param(
            provider("slack", address="ftp://hooks.example/x"),
            None,
            "the address (spec.address) is not an http:// or https:// URL",
            id="not-http",
        ),
        pytest.param(
            provider("slack"),
            secret(address="hooks.slack.com/services/XXXXSECRETXXXX"),
            "the address (secret 'apps/creds' key 'address') is not an http:// or https:// URL",
            id="secret-address-without-scheme",
        ),
        pytest.param(
            provider("generic", address="https://hooks.example:port/x"),
            None,
            "the address (spec.address) is not a valid URL",
            id="bad-port",
        ),
        pytest.param(
            provider("generic-hmac", address="https://a.example/hook"),
            None,
            "provider type 'generic-hmac' needs a token",
            id="hmac-without-token",
        ),
        pytest.param(
            provider("opsgenie", address="https://api.opsgenie.com/v2/alerts"),
            secret(username="u"),
            "provider type 'opsgenie' needs a token",
            id="opsgenie-without-token",
        ),
        pytest.param(
            provider("telegram"),
            secret(token="123:abc"),
            "provider type 'telegram' needs spec.channel",
            id="telegram-without-channel",
        ),
        pytest.param(
            provider("github", address="https://github.com/org/repo"),
            None,
            "provider type 'github' needs a token",
            id="github-without-token",
        ),
        pytest.param(
            provider("gitea", address="https://gitea.example/org"),
            secret(token="t0ken"),
            "must name a repository as <owner>/<repository>",
            id="gitea-without-repository",
        ),
        pytest.param(
            provider("github", address="file:///srv/repo"),
            secret(token="t0ken"),
            "is not a repository URL: scheme 'file' is not http, https or ssh",
            id="github-file-url",
        ),
        pytest.param(
            provider("bitbucket", address="https://bitbucket.org/org/repo"),
            secret(token="app-password-only"),
            "needs a token of the form <username>:<app password>",
            id="bitbucket-token-form",
        ),
        pytest.param(
            provider("generic", address="https://a.example/hook"),
            secret(headers="- a\n- b\n"),
            "secret 'apps/creds' key 'headers' is not a YAML map of header names to values",
            id="headers-not-a-map",
        ),
        pytest.param(
            provider("generic", address="https://a.example/hook"),
            secret(headers="Bad Name: x\n"),
            "is not a YAML map of header names to values",
            id="header-name-not-a-token",
        ),
        pytest.param(
            provider("generic", address="https://a.example/hook"),
            secret(headers="X-A: 'one\n\n  two'\n"),
            "the value of header 'X-A' has a line break",
            id="header-value-line-break",
        ),
        pytest.param(
            provider("generic", address="https://a.example/hook"),
            secret(headers="X-A: caf\u00e9\n"),
            "not printable ASCII",
            id="header-value-not-ascii",
        ),
        pytest.param(
            provider("slack", address="https://slack.com/api/chat.postMessage"),
            secret(token="xoxb-1\nX-Injected: 1"),
            "the token has a line break or a character that is not printable ASCII",
            id="token-with-line-break",
        ),
        pytest.param(
            provider("generic", address="https://a.example/hook"),
            secret(headers="X-A: [unclosed\n"),
            "secret 'apps/creds' key 'headers': not valid YAML",
            id="headers-not-yaml",
        ),
        pytest.param(
            provider("github", address="https://github.com/org/repo", commitStatusExpr="1 +"),
            secret(token="t0ken"),
            "spec.commitStatusExpr: failed to parse the CEL expression '1 +'",
            id="commit-status-expr",
        ),
    ],
)
def test_a_provider_that_can_never_send_is_refused(
    prov: Provider, creds: SecretData | None, expected: str
) -> None:
    message = refusal(prov, creds)

    assert expected in message
    assert "XXXXSECRETXXXX" not in message
    assert "t0ken" not in message


def test_a_secret_key_that_is_not_text_is_a_provider_error_naming_the_key() -> None:
    creds = SecretData("apps", "creds", {"token": "not base64!"})

    message = refusal(provider("generic-hmac", address="https://a.example"), creds)

    assert message == "secret 'apps/creds' key 'token' is not valid base64"


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        pytest.param(secret("proxy", username="u"), "proxy secret 'apps/proxy' has no 'address'"),
        pytest.param(
            secret("proxy", address="socks5://proxy.example:1080"),
            "proxy secret 'apps/proxy' key 'address' is not an http:// or https:// proxy URL",
            id="socks5",
        ),
    ],
)
def test_a_proxy_secret_that_cannot_be_used_is_refused(proxy: SecretData, expected: str) -> None:
    assert refusal(provider("generic", address="https://a.example"), proxy=proxy) == expected


def test_a_cert_secret_without_tls_keys_is_refused() -> None:
    message = refusal(provider("generic", address="https://a.example"), cert=secret("tls", x="y"))

    assert message.startswith("secret 'apps/tls': no TLS configuration")


def test_the_secret_address_wins_and_credentials_come_from_the_secret() -> None:
    creds = secret(
        address=f"  {SLACK_HOOK}\n",
        token="xoxb-123\n",
        username="flux-bot",
        password="pw",
        headers="X-One: 1\nX-Two: two\nX-Flag: true\n",
    )
    prov = provider("slack", address="https://ignored.example", username="spec-user", timeout="5s")

    target = resolve_target(prov, creds, None, None)

    assert target.address == SLACK_HOOK
    assert (target.token, target.username, target.password) == ("xoxb-123", "flux-bot", "pw")
    assert target.headers == (("X-One", "1"), ("X-Two", "two"), ("X-Flag", "true"))
    assert target.timeout == 5.0
    assert target.retry == FLUX_RETRY == RetryPolicy(retries=4, min_wait=2.0, max_wait=30.0)
    assert target.provider == "apps/hook"
    assert target.provider_uid == "0c9c2e41-aaaa-bbbb"
    assert target.tls is None
    assert target.proxy is None


def test_spec_fields_when_there_is_no_secret() -> None:
    prov = provider("rocket", address="https://chat.example/hooks/x", channel="#ops", username="me")

    target = resolve_target(prov, None, None, None)

    assert (target.address, target.channel, target.username) == (
        "https://chat.example/hooks/x",
        "#ops",
        "me",
    )
    assert target.timeout == 15.0


@pytest.mark.parametrize("type_", ["github", "gitlab", "gitea"])
def test_git_providers_take_the_password_when_there_is_no_token(type_: str) -> None:
    prov = provider(type_, address="https://git.example/org/repo")

    target = resolve_target(prov, secret(username="u", password="pat\n"), None, None)

    assert target.token == "pat"


@pytest.mark.parametrize(
    ("spec_proxy", "creds", "proxy_secret", "expected"),
    [
        pytest.param("http://spec.example:3128", None, None, "http://spec.example:3128", id="spec"),
        pytest.param(
            "http://spec.example:3128",
            secret(proxy="http://u:p@legacy.example:3128"),
            None,
            "http://u:p@legacy.example:3128",
            id="secret-key-over-spec",
        ),
        pytest.param(
            "http://spec.example:3128",
            secret(proxy="http://legacy.example:3128"),
            secret("proxy", address="http://proxy.example:8080", username="me", password="p@ss/w"),
            "http://me:p%40ss%2Fw@proxy.example:8080",
            id="proxy-secret-over-both",
        ),
        pytest.param(
            None,
            None,
            secret("proxy", address="https://proxy.example"),
            "https://proxy.example",
            id="proxy-secret-without-credentials",
        ),
    ],
)
def test_the_proxy_as_flux_chooses_it(
    spec_proxy: str | None,
    creds: SecretData | None,
    proxy_secret: SecretData | None,
    expected: str,
) -> None:
    prov = provider("generic", address="https://a.example", proxy=spec_proxy)

    assert resolve_target(prov, creds, None, proxy_secret).proxy == expected


def test_tls_from_the_cert_secret_or_for_git_types_from_the_provider_secret(
    tmp_path: Any,
) -> None:
    pki = TLSFiles.create(tmp_path)
    cert = secret("tls", **pki.secret_data(client=True))

    with_cert = resolve_target(provider("generic", address="https://a.example"), None, cert, None)
    git = resolve_target(
        provider("gitea", address="https://git.example/o/r"),
        secret(token="t", **{"ca.crt": pki.ca.read_text()}),
        None,
        None,
    )
    chat = resolve_target(
        provider("slack", address="https://a.example"),
        secret(**{"ca.crt": pki.ca.read_text()}),
        None,
        None,
    )

    assert isinstance(with_cert.tls, ssl.SSLContext)
    assert with_cert.tls is not system_context()
    assert isinstance(git.tls, ssl.SSLContext)
    assert git.tls is not system_context()
    assert chat.tls is None


def test_a_commit_status_expression_is_compiled_for_git_types_only() -> None:
    expr = "event.involvedObject.name"
    git = resolve_target(
        provider("github", address="https://github.com/o/r", commitStatusExpr=expr),
        secret(token="t"),
        None,
        None,
    )
    chat = resolve_target(
        provider("generic", address="https://a.example", commitStatusExpr="1 +"), None, None, None
    )

    assert git.commit_status_expr is not None
    assert git.commit_status_expr.source == expr
    assert chat.commit_status_expr is None


def test_the_targets_repr_and_redaction_hold_no_secret() -> None:
    creds = secret(
        address=SLACK_HOOK, token="xoxb-TOKEN", password="hunter22", headers="X-K: v4lue"
    )
    proxy = secret("proxy", address="http://proxy.example", username="pxuser", password="pxpass")
    target = resolve_target(provider("slack"), creds, None, proxy)

    shown = repr(target)
    text = target.redact(
        f"failed: {SLACK_HOOK} xoxb-TOKEN hunter22 v4lue pxpass /services/T000/B000/XXXXSECRETXXXX"
    )

    for value in ("XXXXSECRETXXXX", "xoxb-TOKEN", "hunter22", "v4lue", "pxpass", "pxuser"):
        assert value not in shown
        assert value not in text
    assert target.endpoint == "https://hooks.slack.com"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@hooks.example:8443/path?sig=x", "https://hooks.example:8443"),
        ("http://[::1]:80/x", "http://[::1]:80"),
        ("not a url", "(invalid address)"),
        ("https://host:bad/", "(invalid address)"),
    ],
)
def test_an_endpoint_is_shown_by_scheme_and_host_only(url: str, expected: str) -> None:
    assert endpoint_of(url) == expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (0, None, 2.0),
        (1, None, 4.0),
        (3, None, 16.0),
        (4, None, 30.0),
        (0, 7.0, 7.0),
        (0, 99, 30.0),
    ],
)
def test_fluxs_backoff(attempt: int, retry_after: float | None, expected: float) -> None:
    assert FLUX_RETRY.wait(attempt, retry_after) == expected
