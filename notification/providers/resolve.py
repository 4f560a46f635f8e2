"""From a Provider and its Secrets to a :class:`Target`, as Flux's ``createNotifier`` combines
them.

- the address: the Secret's ``address`` (trimmed) when it has the key, else ``spec.address``;
- the credentials: the Secret's ``token``, ``password`` and ``username`` (which replaces
  ``spec.username``); ``headers`` is a YAML map of header names to values;
- the proxy: ``spec.proxySecretRef`` (``address``, optional ``username`` and ``password``),
  else the Secret's deprecated ``proxy`` key, else the deprecated ``spec.proxy``;
- TLS: ``spec.certSecretRef`` (``ca.crt``, ``tls.crt``/``tls.key``, or the legacy ``caFile``,
  ``certFile``, ``keyFile``); for commit-status types without one, the same keys in the
  provider Secret, as Flux reads them there;
- the type's own requirements, checked here as Flux's notifier constructors check them, so
  that a Provider that can never send is refused at once rather than at each event.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from controllers.cel import CelError, compile_expression
from controllers.safeyaml import YAMLLoadError, load
from controllers.secrets import SecretData, SecretError
from controllers.tls import TLSConfigError, context_from_secret
from notification.api_v1beta3 import Provider
from notification.providers.commitstatus import COMMIT_STATUS_TYPES, parse_git_address
from notification.providers.target import ProviderError, Target

__all__ = ["SUPPORTED_TYPES", "resolve_target"]

# Every type weir sends; the rest of Flux's enum is refused by name.
SUPPORTED_TYPES = frozenset(
    {
        "generic",
        "generic-hmac",
        "slack",
        "msteams",
        "discord",
        "googlechat",
        "telegram",
        "matrix",
        "webex",
        "rocket",
        "alertmanager",
        "grafana",
        "opsgenie",
        "pagerduty",
        *COMMIT_STATUS_TYPES,
    }
)
# Types whose address is not used (Flux's Telegram notifier always calls the Bot API).
_NO_ADDRESS = frozenset({"telegram"})
# Types that cannot work without a token, as Flux's constructors say.
_TOKEN_REQUIRED = frozenset({"generic-hmac", "telegram", "opsgenie", *COMMIT_STATUS_TYPES})
# Flux's GitHub, GitLab and Gitea notifiers take the password when there is no token.
_TOKEN_FROM_PASSWORD = frozenset({"github", "gitlab", "gitea"})
# Types that need a channel.
_CHANNEL_REQUIRED = frozenset({"telegram"})
_HEADER_NAME_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# Flux reads proxy URLs of these schemes; socks5 would need an extra httpx dependency.
_PROXY_SCHEMES = ("http", "https")


def resolve_target(
    provider: Provider,
    secret: SecretData | None,
    cert_secret: SecretData | None,
    proxy_secret: SecretData | None,
) -> Target:
    """The :class:`Target` of ``provider`` with the Secrets its ``secretRef``,
    ``certSecretRef`` and ``proxySecretRef`` name (None where it names none). Raises
    ``ProviderError`` when the Provider cannot be used; its message holds no secret."""
    spec = provider.spec
    name = f"{provider.metadata.namespace}/{provider.metadata.name}"
    if spec.type not in SUPPORTED_TYPES:
        raise ProviderError(f"provider type '{spec.type}' is not supported by weir")
    if spec.service_account_name:
        raise ProviderError(
            "spec.serviceAccountName (workload identity) is not supported by weir: "
            "give the credentials in spec.secretRef"
        )
    try:
        return _resolve(provider, name, secret, cert_secret, proxy_secret)
    except (SecretError, TLSConfigError) as err:
        raise ProviderError(str(err)) from None


def _resolve(
    provider: Provider,
    name: str,
    secret: SecretData | None,
    cert_secret: SecretData | None,
    proxy_secret: SecretData | None,
) -> Target:
    spec = provider.spec
    values: Mapping[str, str] = secret if secret is not None else {}
    address, address_from = (spec.address or "").strip(), "spec.address"
    if "address" in values:
        address, address_from = values["address"].strip(), f"secret '{_ref(secret)}' key 'address'"
    # A token or password file ends in a newline more often than not; a header cannot hold one.
    token = values.get("token", "").strip()
    password = values.get("password", "").rstrip("\r\n")
    if not token and password and spec.type in _TOKEN_FROM_PASSWORD:
        token = password
    headers = _headers(secret) if secret is not None and "headers" in secret else ()
    proxy = _proxy(spec.proxy, secret, proxy_secret)
    tls = None
    if cert_secret is not None:
        tls = context_from_secret(cert_secret, cert_secret.ref, required=True)
    elif spec.type in COMMIT_STATUS_TYPES and secret is not None:
        tls = context_from_secret(secret, secret.ref)
    expression = None
    if spec.type in COMMIT_STATUS_TYPES and spec.commit_status_expr:
        try:
            expression = compile_expression(spec.commit_status_expr)
        except CelError as err:
            raise ProviderError(f"spec.commitStatusExpr: {err}") from None
    target = Target(
        type=spec.type,
        provider=name,
        address=address,
        channel=spec.channel or "",
        username=values.get("username", spec.username or ""),
        token=token,
        password=password,
        headers=headers,
        proxy=proxy,
        tls=tls,
        timeout=provider.timeout_seconds,
        provider_object=provider.to_dict(),
        provider_uid=provider.metadata.uid or "",
        commit_status_expr=expression,
    )
    _check(target, address_from)
    return target


def _ref(secret: SecretData | None) -> str:
    return secret.ref if secret is not None else ""


def _headers(secret: SecretData) -> tuple[tuple[str, str], ...]:
    """The Secret's ``headers``: a YAML map of names to scalar values."""
    what = f"secret '{secret.ref}' key 'headers'"
    try:
        document = load(secret["headers"], what=what)
    except YAMLLoadError as err:
        raise ProviderError(str(err)) from None
    if document is None:
        return ()
    if not isinstance(document, dict):
        raise ProviderError(f"{what} is not a YAML map of header names to values")
    pairs = []
    for key, value in document.items():
        if isinstance(value, dict | list) or not isinstance(key, str) or not _token_ok(key):
            raise ProviderError(f"{what} is not a YAML map of header names to values")
        # YAML's true/false/null as Go's yaml reads them into a string.
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        if not _header_safe(text):
            raise ProviderError(
                f"{what}: the value of header '{key}' has a line break or a character that is "
                "not printable ASCII"
            )
        pairs.append((key, text))
    return tuple(pairs)


def _token_ok(name: str) -> bool:
    """An HTTP header name (RFC 9110 token)."""
    return bool(name) and all(c in _HEADER_NAME_CHARS for c in name)


def _header_safe(value: str) -> bool:
    """Printable ASCII (and tabs): what httpx sends in a header without an error."""
    return all(c == "\t" or " " <= c <= "~" for c in value)


def _proxy(
    spec_proxy: str | None, secret: SecretData | None, proxy_secret: SecretData | None
) -> str | None:
    """The proxy URL, credentials included; the last given of spec.proxy, the Secret's
    ``proxy`` key and the proxy Secret wins, as in Flux."""
    if proxy_secret is not None:
        address = proxy_secret.get("address", "").strip()
        if not address:
            raise ProviderError(f"proxy secret '{proxy_secret.ref}' has no 'address'")
        _check_proxy(address, f"proxy secret '{proxy_secret.ref}' key 'address'")
        username = proxy_secret.get("username", "")
        if not username:
            return address
        scheme, _, rest = address.partition("://")
        # Quoted: a password with '@' or '/' must not change where the URL points.
        user = quote(username, safe="")
        password = quote(proxy_secret.get("password", ""), safe="")
        return f"{scheme}://{user}:{password}@{rest}"
    if secret is not None and "proxy" in secret:
        address = secret["proxy"].strip()
        _check_proxy(address, f"secret '{secret.ref}' key 'proxy'")
        return address
    if spec_proxy:
        _check_proxy(spec_proxy, "spec.proxy")
        return spec_proxy
    return None


def _check_proxy(address: str, where: str) -> None:
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ProviderError(f"{where} is not a proxy URL") from None
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname:
        raise ProviderError(f"{where} is not an http:// or https:// proxy URL")


def _check(target: Target, address_from: str) -> None:
    """What the type needs to send at all."""
    kind = target.type
    if kind in COMMIT_STATUS_TYPES:
        _check_repository(target, address_from)
    elif kind not in _NO_ADDRESS:
        _check_url(target.address, address_from, kind)
    if not _header_safe(target.token):
        # It goes into an Authorization header (or a URL, for Telegram).
        raise ProviderError("the token has a line break or a character that is not printable ASCII")
    if kind in _TOKEN_REQUIRED and not target.token:
        raise ProviderError(f"provider type '{kind}' needs a token: the Secret's 'token' key")
    if kind in _CHANNEL_REQUIRED and not target.channel:
        raise ProviderError(f"provider type '{kind}' needs spec.channel")
    if kind == "bitbucket" and target.token.count(":") != 1:
        raise ProviderError(
            "provider type 'bitbucket' needs a token of the form <username>:<app password>"
        )


def _check_url(address: str, address_from: str, kind: str) -> None:
    if not address:
        raise ProviderError(
            f"provider type '{kind}' needs an address (spec.address or the Secret's 'address')"
        )
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ProviderError(f"the address ({address_from}) is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderError(f"the address ({address_from}) is not an http:// or https:// URL")
    if any(c in address for c in " \r\n\t\0"):
        raise ProviderError(f"the address ({address_from}) has whitespace in it")


def _check_repository(target: Target, address_from: str) -> None:
    if not target.address:
        raise ProviderError(
            f"provider type '{target.type}' needs the repository's URL as its address"
        )
    try:
        _, repository = parse_git_address(target.address)
    except ValueError as err:
        raise ProviderError(
            f"the address ({address_from}) is not a repository URL: {err}"
        ) from None
    if target.type != "gitlab" and repository.count("/") != 1:
        raise ProviderError(
            f"the address ({address_from}) must name a repository as <owner>/<repository>"
        )
