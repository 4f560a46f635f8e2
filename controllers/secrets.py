"""Reading the Secrets that objects refer to: one way to get at their keys, one error.

:func:`read_secret` gets a Secret and returns its :class:`SecretData`;
:meth:`SecretData.from_object` wraps a Secret already in hand. The rules are the same for
every caller:

- a value is the base64 the API serves, decoded strictly;
- ``data[key]`` (the mapping interface) and :meth:`SecretData.text` give text, UTF-8 strictly;
  :meth:`SecretData.binary` gives the bytes, for values that need not be text;
- every problem is a :class:`SecretError` naming the Secret and, when one is at fault, the
  key, never a value. A missing Secret is :class:`SecretNotFound`, which callers map to their
  own condition reason or wording.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from controllers.kinds import SECRET, SERVICE_ACCOUNT
from controllers.kube import ApiError, KubeClient
from controllers.oci.credentials import Credentials, credentials_from_secret
from controllers.oci.errors import AuthenticationError

__all__ = [
    "SecretData",
    "SecretError",
    "SecretNotFound",
    "proxy_url",
    "read_secret",
    "registry_credentials",
]


class SecretError(Exception):
    """A referenced Secret cannot be used: missing, unreadable, or a key missing or malformed.

    ``secret`` is ``namespace/name``, ``key`` the key at fault (if one is) and ``problem``
    what is wrong (``not found``, ``is not text``, ...). The message says them all, never a
    value; ``message`` replaces it where a caller has a wording of its own.
    """

    def __init__(
        self, secret: str, problem: str, *, key: str | None = None, message: str | None = None
    ) -> None:
        self.secret = secret
        self.key = key
        self.problem = problem
        super().__init__(message or f"secret '{secret}' {self.detail}")

    @property
    def detail(self) -> str:
        """What is wrong, without the Secret's name: ``key 'x' is not text``, ``not found``."""
        return self.problem if self.key is None else f"key '{self.key}' {self.problem}"


class SecretNotFound(SecretError):
    """The Secret does not exist."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret, "not found")


class SecretData(Mapping[str, str]):
    """The ``data`` of Secret ``namespace/name``: text by key as a mapping, bytes with
    :meth:`binary`.

    ``key in data`` looks at the keys only; reading a value that is not base64, or as text
    not UTF-8, raises :class:`SecretError`. The repr shows the keys, never a value.
    """

    def __init__(self, namespace: str | None, name: str, data: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.name = name
        self._data = dict(data)

    @classmethod
    def from_object(cls, secret: Mapping[str, Any]) -> SecretData:
        """The data of a Secret object as the API serves it (``metadata``, ``data``)."""
        metadata = secret.get("metadata") or {}
        return cls(metadata.get("namespace"), metadata.get("name") or "", secret.get("data") or {})

    @property
    def ref(self) -> str:
        """``namespace/name``, as messages name the Secret."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def error(self, key: str | None, problem: str) -> SecretError:
        """A :class:`SecretError` about this Secret (and ``key``), for a caller's own checks."""
        return SecretError(self.ref, problem, key=key)

    def binary(self, key: str) -> bytes:
        """The value of ``key``, as bytes."""
        if key not in self._data:
            raise self.error(key, "is missing")
        try:
            return base64.b64decode(str(self._data[key]), validate=True)
        except (binascii.Error, ValueError):
            raise self.error(key, "is not valid base64") from None

    def text(self, key: str) -> str:
        """The value of ``key``, as text."""
        try:
            return self.binary(key).decode()
        except UnicodeDecodeError:
            raise self.error(key, "is not text") from None

    def __getitem__(self, key: str) -> str:
        if key not in self._data:
            raise KeyError(key)
        return self.text(key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        # Keys only: a repr ends up in logs and tracebacks.
        return f"SecretData({self.ref!r}, keys={sorted(self._data)})"


async def read_secret(client: KubeClient, namespace: str, name: str) -> SecretData:
    """The data of Secret ``namespace/name``. Raises :class:`SecretNotFound` when there is no
    such Secret, :class:`SecretError` when the API server refuses it (forbidden, say)."""
    ref = f"{namespace}/{name}"
    try:
        secret = await client.get_or_none(SECRET, namespace, name)
    except ApiError as err:
        raise SecretError(ref, f"cannot be read: {err}") from None
    if secret is None:
        raise SecretNotFound(ref)
    return SecretData(namespace, name, secret.get("data") or {})


def proxy_url(data: Mapping[str, str], name: str) -> str:
    """The proxy URL from Flux's proxy Secret (``spec.proxySecretRef``): ``address``, optional
    ``username``/``password``."""
    address = data.get("address")
    if not address:
        raise SecretError(
            name, "has no 'address'", message=f"proxy secret '{name}' has no 'address'"
        )
    if not data.get("username"):
        return address
    scheme, _, rest = address.partition("://")
    # Quoted: a password with '@' or '/' must not change where the URL points.
    user = quote(data["username"], safe="")
    password = quote(data.get("password", ""), safe="")
    return f"{scheme}://{user}:{password}@{rest}"


async def registry_credentials(
    client: KubeClient,
    namespace: str,
    host: str,
    *,
    secret_name: str | None,
    service_account_name: str | None,
) -> Credentials | None:
    """Credentials for registry ``host`` from the Secret ``secret_name`` (a docker-config or
    basic-auth Secret), then from the image pull secrets of ``service_account_name``, in that
    order, as Flux's OCIRepository and ImageRepository look for them; None for anonymous
    access. An unusable Secret raises ``SecretError``, a missing ServiceAccount
    ``AuthenticationError``."""
    names = [secret_name] if secret_name else []
    if service_account_name:
        account = await client.get_or_none(SERVICE_ACCOUNT, namespace, service_account_name)
        if account is None:
            raise AuthenticationError(
                f"service account '{namespace}/{service_account_name}' not found"
            )
        names += [ref["name"] for ref in account.get("imagePullSecrets") or [] if ref.get("name")]
    for name in names:
        data = await read_secret(client, namespace, name)
        credentials = credentials_from_secret(data, host, data.ref)
        if credentials is not None:
            return credentials
    return None
