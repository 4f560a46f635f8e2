"""A small S3 client for the Bucket reconciler: ListObjectsV2 and GetObject over httpx.

Requests are path-style (``<endpoint>/<bucket>/<key>``, as Flux's MinIO client does) and signed
with AWS Signature Version 4 by botocore's ``S3SigV4Auth``; without credentials they go
unsigned (a public bucket). Every read is bounded: listing pages and error bodies by a fixed
size, objects by the caller's ``max_size``. Every request has ``timeout``.

Errors are :class:`S3Error`, whose message is safe to show: it carries the S3 error code and
the server's message, never a credential.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Self
from urllib.parse import quote, unquote_plus
from xml.etree import ElementTree

import httpx

from controllers.tls import system_context

__all__ = ["DEFAULT_REGION", "S3Client", "S3Error", "S3Object", "endpoint_url"]

DEFAULT_REGION = "us-east-1"
# A ListObjectsV2 page holds at most 1000 keys of at most 1 KiB each, plus their metadata.
_MAX_PAGE_SIZE = 8 * 1024 * 1024
_MAX_ERROR_SIZE = 64 * 1024
_MAX_OBJECTS = 100_000
# The credential errors S3 answers with; the reconciler reports them as authentication failures.
_AUTH_ERROR_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)


class S3Error(Exception):
    """An S3 request failed. ``code`` is the S3 error code (``NoSuchBucket``,
    ``SignatureDoesNotMatch``, ...), or None when no S3 answer came (connection, TLS, timeout,
    a malformed response); ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    @property
    def is_auth_error(self) -> bool:
        """The server refused the credentials (or their permissions)."""
        return self.code in _AUTH_ERROR_CODES or (self.code is None and self.status in (401, 403))


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, its ETag without the quotes and its size in bytes."""

    key: str
    etag: str
    size: int


def endpoint_url(endpoint: str, *, secure: bool) -> str:
    """``http(s)://<endpoint>`` for a Bucket's ``host[:port]`` endpoint. Raises ValueError for
    anything else (a scheme, a path, credentials), as Flux's MinIO client does."""
    if not endpoint or "://" in endpoint:
        raise ValueError(
            f"endpoint '{endpoint}' must be 'host[:port]' without a scheme; "
            "set spec.insecure for plain HTTP"
        )
    if any(char in endpoint for char in "/?#@ \\"):
        raise ValueError(
            f"endpoint '{endpoint}' must be 'host[:port]', without a path, query or credentials"
        )
    url = f"{'https' if secure else 'http'}://{endpoint}"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise ValueError(f"invalid endpoint '{endpoint}': {err}") from None
    if not parsed.host:
        raise ValueError(f"endpoint '{endpoint}' has no host")
    return url


class S3Client:
    """Reads from the S3 compatible server at ``endpoint`` (``host[:port]``).

    ``secure=False`` talks plain HTTP. ``tls`` verifies HTTPS (default: the system CAs,
    :func:`controllers.tls.system_context`) and may present a client certificate; ``proxy`` is
    an ``http(s)://`` proxy URL. Use as an async context manager.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        secure: bool = True,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        tls: ssl.SSLContext | None = None,
        proxy: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = endpoint_url(endpoint, secure=secure)
        self.endpoint = endpoint
        self.region = region or DEFAULT_REGION
        self._credentials = (access_key, secret_key) if access_key and secret_key else None
        self._http = httpx.AsyncClient(
            verify=tls if tls is not None else system_context(),
            proxy=proxy,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def list_objects(self, bucket: str, prefix: str = "") -> list[S3Object]:
        """Every object in ``bucket`` whose key starts with ``prefix``, following ListObjectsV2
        continuation tokens. Raises :class:`S3Error` (code ``NoSuchBucket`` for a missing
        bucket) and refuses more than 100,000 objects."""
        objects: list[S3Object] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "encoding-type": "url", "prefix": prefix}
            if token is not None:
                query["continuation-token"] = token
            url = self._url(bucket, query=query)
            async with self._request("GET", url) as response:
                body = await _read_bounded(response, _MAX_PAGE_SIZE, "listing page")
            page = _parse_listing(body)
            objects.extend(page.objects)
            if len(objects) > _MAX_OBJECTS:
                raise S3Error(
                    f"bucket '{bucket}' lists more than {_MAX_OBJECTS} objects; "
                    "narrow it down with spec.prefix"
                )
            if not page.truncated:
                return objects
            if not page.next_token or page.next_token == token:
                raise S3Error("the listing is truncated but has no new continuation token")
            token = page.next_token

    async def get_object(
        self, bucket: str, key: str, write: Callable[[bytes], object], *, max_size: int
    ) -> str | None:
        """Pass object ``key`` chunk by chunk to ``write``, as stored (no content decoding),
        and return its ETag without quotes; None when there is no such key. Raises
        :class:`S3Error`, also when the object is larger than ``max_size`` bytes (some of it
        may have been written by then)."""
        async with self._request("GET", self._url(bucket, key), not_found_ok=True) as response:
            if response.status_code == 404:
                return None
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > max_size:
                raise S3Error(_too_large(key, max_size))
            written = 0
            async for chunk in response.aiter_raw():
                written += len(chunk)
                if written > max_size:
                    raise S3Error(_too_large(key, max_size))
                write(chunk)
            return _unquote_etag(response.headers.get("etag", ""))

    def _url(self, bucket: str, key: str | None = None, query: dict[str, str] | None = None) -> str:
        # The path and query are encoded here, once, as SigV4 canonicalises them (RFC 3986
        # unreserved characters kept, '/' kept in keys), so the signed string is what is sent.
        path = f"/{quote(bucket, safe='')}"
        if key is not None:
            path += "/" + quote(key, safe="/~")
        if query:
            path += "?" + "&".join(
                f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
                for name, value in sorted(query.items())
            )
        return self.base_url + path

    def _headers(self, method: str, url: str) -> dict[str, str]:
        signed: dict[str, str] = {}
        if self._credentials is not None:
            # botocore weighs about 16 MiB: imported by the first signed request, not by a
            # controller that reconciles no Bucket with credentials.
            from botocore.auth import S3SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials

            request = AWSRequest(method=method, url=url)
            S3SigV4Auth(Credentials(*self._credentials), "s3", self.region).add_auth(request)
            signed = dict(request.headers.items())
        # Unsigned, as proxies may rewrite it. Raw bytes as stored, as Flux's MinIO client
        # (which disables compression) fetches them.
        return {**signed, "Accept-Encoding": "identity"}

    @asynccontextmanager
    async def _request(
        self, method: str, url: str, *, not_found_ok: bool = False
    ) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(method, url, headers=self._headers(method, url)) as resp:
                if resp.status_code == 404 and not_found_ok:
                    error = _parse_error(await _read_bounded(resp, _MAX_ERROR_SIZE, "error"))
                    if error.code in (None, "NoSuchKey"):
                        yield resp
                        return
                    raise _status_error(resp.status_code, error)
                if resp.status_code >= 300:
                    body = await _read_bounded(resp, _MAX_ERROR_SIZE, "error", lenient=True)
                    raise _status_error(resp.status_code, _parse_error(body))
                yield resp
        except (httpx.HTTPError, ssl.SSLError) as err:
            # httpx leaves a TLS alert that comes after the handshake (a refused client
            # certificate, with TLS 1.3) as a bare ssl.SSLError.
            raise _transport_error(err) from None


@dataclass(frozen=True)
class _Page:
    objects: list[S3Object]
    truncated: bool
    next_token: str | None


@dataclass(frozen=True)
class _ErrorBody:
    code: str | None
    message: str | None


async def _read_bounded(
    response: httpx.Response, limit: int, what: str, *, lenient: bool = False
) -> bytes:
    """The (decoded) body, refusing more than ``limit`` bytes; with ``lenient`` the first
    ``limit`` bytes."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            if lenient:
                return bytes(data[:limit])
            raise S3Error(f"the {what} response is larger than {limit} bytes")
    return bytes(data)


def _xml(body: bytes) -> ElementTree.Element | None:
    # S3 answers never carry a DTD; refusing one rules out entity expansion attacks.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        return ElementTree.fromstring(body)  # noqa: S314 (no DTD, size bounded above)
    except ElementTree.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _parse_listing(body: bytes) -> _Page:
    root = _xml(body)
    if root is None or _local(root.tag) != "ListBucketResult":
        raise S3Error("the server's listing response is not a ListBucketResult document")
    url_encoded = _child_text(root, "EncodingType") == "url"
    objects = []
    for element in root:
        if _local(element.tag) != "Contents":
            continue
        key = _child_text(element, "Key")
        if key is None:
            raise S3Error("the server's listing has an object without a key")
        # As botocore does for encoding-type=url: '+' stands for a space.
        objects.append(
            S3Object(
                key=unquote_plus(key) if url_encoded else key,
                etag=_unquote_etag(_child_text(element, "ETag") or ""),
                size=_size(_child_text(element, "Size")),
            )
        )
    return _Page(
        objects=objects,
        truncated=_child_text(root, "IsTruncated") == "true",
        next_token=_child_text(root, "NextContinuationToken"),
    )


def _parse_error(body: bytes) -> _ErrorBody:
    root = _xml(body) if body else None
    if root is None or _local(root.tag) != "Error":
        return _ErrorBody(None, None)
    return _ErrorBody(_child_text(root, "Code"), _child_text(root, "Message"))


def _status_error(status: int, error: _ErrorBody) -> S3Error:
    text = error.message or f"HTTP status {status}"
    if error.code:
        text = f"{text} ({error.code})"
    return S3Error(text, code=error.code, status=status)


def _transport_error(err: httpx.HTTPError | ssl.SSLError) -> S3Error:
    if isinstance(err, httpx.TimeoutException):
        return S3Error(f"request timed out ({type(err).__name__})")
    # httpx's message names the cause: connection refused, certificate verify failed, ...;
    # some errors (a connection reset after the TLS handshake) name it only in their cause.
    cause: BaseException | None = err
    while cause is not None and not str(cause):
        cause = cause.__cause__ or cause.__context__
    return S3Error(str(cause) if cause is not None else type(err).__name__)


def _size(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _unquote_etag(etag: str) -> str:
    return etag.removeprefix('"').removesuffix('"')


def _too_large(key: str, max_size: int) -> str:
    return f"object '{key}' is larger than the limit of {max_size} bytes"
