"""``RegistryClient``: pull access to one repository of a registry, over httpx.

What it does: resolve a tag to the digest of the manifest it names (HEAD, falling back to
GET), fetch a manifest by digest and verify it (OCI image manifest or index, Docker v2
manifest or manifest list), list the tags (following ``Link`` pagination), and download a
blob with a size cap and digest verification. Manifests and tag pages are read with a size
cap too, and every request has a timeout.

Authentication follows the distribution spec. A request first goes out without credentials (or
with the ``Authorization`` that worked before); a 401 answer's ``WWW-Authenticate`` challenge
decides what comes next: ``Basic`` retries with the credentials, ``Bearer realm=...,service=...,
scope=...`` fetches a token from the realm (the credentials as basic auth; anonymously without
them) and retries with it. A second 401, or a 403, is an :class:`AuthenticationError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from pathlib import Path
from typing import Self

import httpx

from controllers.download import BodyTooLarge, save_body
from controllers.oci.credentials import Credentials
from controllers.oci.errors import AuthenticationError, ContentError, RegistryError
from controllers.oci.headers import Challenge, next_link, parse_challenge
from controllers.oci.manifest import MANIFEST_MEDIA_TYPES, Descriptor, Manifest, parse_manifest
from controllers.oci.reference import DIGEST, Repository
from controllers.tls import system_context

__all__ = [
    "MAX_MANIFEST_SIZE",
    "MAX_TAG_PAGES",
    "MAX_TAG_PAGE_SIZE",
    "MAX_TOKEN_RESPONSE_SIZE",
    "RegistryClient",
]

# The image spec asks registries to accept manifests up to 4 MiB; nothing sane is larger.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_TAG_PAGE_SIZE = 4 * 1024 * 1024
MAX_TAG_PAGES = 1000
MAX_TOKEN_RESPONSE_SIZE = 1024 * 1024
_CHUNK = 256 * 1024
_MAX_ERROR_BODY = 64 * 1024
# httpx leaves a TLS alert that arrives after the handshake (a refused client certificate,
# with TLS 1.3) as a bare ssl.SSLError.
_NETWORK_ERRORS = (httpx.HTTPError, ssl.SSLError)


class RegistryClient:
    """Pull access to one repository. Use as ``async with RegistryClient(...) as client``.

    ``tls`` verifies HTTPS (default: the system CAs); ``proxy`` is an ``http(s)://`` proxy
    URL; ``timeout`` (seconds) bounds each connect, read and write. ``transport`` replaces the
    network, for tests.
    """

    def __init__(
        self,
        repository: Repository,
        credentials: Credentials | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        proxy: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.repository = repository
        self._credentials = credentials
        self._authorization: str | None = None
        self._client = httpx.AsyncClient(
            verify=tls if tls is not None else system_context(),
            proxy=proxy,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            transport=transport,
            # Registries' own answers only: no ~/.netrc, no proxy from the environment.
            trust_env=False,
            # Digests are of the bytes as stored, and a compressed answer could inflate
            # without bound before a size check sees it: ask for no content coding.
            headers={"Accept-Encoding": "identity"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def resolve_digest(self, tag: str) -> str:
        """The digest of the manifest ``tag`` names: a HEAD request, or a GET when the HEAD
        answer has no usable ``Docker-Content-Digest``."""
        url = f"{self.repository.base_url}/manifests/{tag}"
        try:
            response = await self._send("HEAD", url, accept=", ".join(MANIFEST_MEDIA_TYPES))
            await response.aclose()
            digest = str(response.headers.get("Docker-Content-Digest", ""))
            if response.status_code == httpx.codes.OK and DIGEST.fullmatch(digest):
                return digest
        except RegistryError:
            pass  # some registries answer HEAD badly; GET decides
        return (await self.manifest(tag)).digest

    async def manifest(self, reference: str) -> Manifest:
        """The manifest ``reference`` (a tag or digest) names, its digest verified: equal to
        ``reference`` when that is a digest, and to the ``Docker-Content-Digest`` header."""
        url = f"{self.repository.base_url}/manifests/{reference}"
        response = await self._send("GET", url, accept=", ".join(MANIFEST_MEDIA_TYPES))
        try:
            raw = await self._read_capped(response, MAX_MANIFEST_SIZE, f"manifest {reference}")
        finally:
            await response.aclose()
        algorithm = reference.split(":", 1)[0] if DIGEST.fullmatch(reference) else "sha256"
        digest = f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"
        if DIGEST.fullmatch(reference) and digest != reference:
            raise ContentError(
                f"manifest {reference} of {self.repository} has digest {digest}; the registry "
                "served other content than asked for"
            )
        declared = response.headers.get("Docker-Content-Digest", "")
        if declared.startswith(f"{algorithm}:") and declared != digest:
            raise ContentError(
                f"manifest {reference} of {self.repository} has digest {digest}, not the "
                f"{declared} the registry declared"
            )
        return parse_manifest(raw, digest, response.headers.get("Content-Type"))

    async def tags(self, *, page_size: int | None = None) -> list[str]:
        """Every tag of the repository, following ``Link: <...>; rel="next"`` pages.

        ``page_size`` asks for pages of at most that many tags (the API's ``n``); by
        default the registry chooses. The registry's ``Link`` decides the next page either
        way."""
        first = f"{self.repository.base_url}/tags/list"
        if page_size is not None:
            if page_size < 1:
                raise ValueError("page_size must be at least 1")
            first += f"?n={page_size}"
        url: str | None = first
        tags: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            if url is None:
                return tags
            response = await self._send("GET", url, accept="application/json")
            try:
                raw = await self._read_capped(response, MAX_TAG_PAGE_SIZE, "tag list")
            finally:
                await response.aclose()
            try:
                page = json.loads(raw)
            except ValueError:
                raise RegistryError(f"the tag list of {self.repository} is not JSON") from None
            page_tags = page.get("tags") if isinstance(page, dict) else None
            tags.extend(tag for tag in page_tags or [] if isinstance(tag, str))
            url = next_link(response.headers.get("Link"), url)
        raise RegistryError(
            f"the tag list of {self.repository} has more than {MAX_TAG_PAGES} pages"
        )

    async def fetch_blob(self, descriptor: Descriptor, dest: Path, max_size: int) -> None:
        """Download the blob ``descriptor`` names to ``dest`` (created), refusing one larger
        than ``max_size`` bytes or whose content does not have the descriptor's digest and
        size."""
        if descriptor.size > max_size:
            raise ContentError(
                f"layer {descriptor.digest} is {descriptor.size} bytes, more than the "
                f"{max_size} byte limit"
            )
        algorithm, _, expected = descriptor.digest.partition(":")
        url = f"{self.repository.base_url}/blobs/{descriptor.digest}"
        response = await self._send("GET", url)
        try:
            await self._check_answer(response, f"blob {descriptor.digest}")
            saved = await save_body(response, dest, algorithm=algorithm, max_size=descriptor.size)
        except BodyTooLarge:
            raise ContentError(
                f"layer {descriptor.digest} is larger than the {descriptor.size} "
                "bytes its descriptor says"
            ) from None
        except _NETWORK_ERRORS as err:
            raise RegistryError(f"downloading {url} failed: {_describe(err)}") from None
        finally:
            await response.aclose()
        if saved.size != descriptor.size or saved.digest != expected:
            raise ContentError(
                f"layer {descriptor.digest} downloaded with {saved.size} bytes and digest "
                f"{algorithm}:{saved.digest}; the registry served other content than "
                "asked for"
            )

    # -- internals ----------------------------------------------------------------------------

    async def _send(self, method: str, url: str, *, accept: str | None = None) -> httpx.Response:
        """A streamed response to ``method url``, authenticated as the registry asks."""
        headers = {"Accept": accept} if accept else {}
        presented = self._authorization
        response = await self._request(method, url, headers, presented)
        if response.status_code != httpx.codes.UNAUTHORIZED:
            self._refuse_forbidden(response)
            return response
        await response.aclose()
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        self._authorization = await self._authorize(challenge)
        response = await self._request(method, url, headers, self._authorization)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            await response.aclose()
            who = "anonymous access" if self._credentials is None else "the credentials"
            raise AuthenticationError(
                f"{self.repository}: the registry refused {who} (HTTP 401){self._hint()}"
            )
        self._refuse_forbidden(response)
        return response

    async def _request(
        self, method: str, url: str, headers: dict[str, str], authorization: str | None
    ) -> httpx.Response:
        if authorization:
            headers = {**headers, "Authorization": authorization}
        request = self._client.build_request(method, url, headers=headers)
        try:
            return await self._client.send(request, stream=True)
        except _NETWORK_ERRORS as err:
            raise RegistryError(f"{method} {url} failed: {_describe(err)}") from None

    def _refuse_forbidden(self, response: httpx.Response) -> None:
        if response.status_code == httpx.codes.FORBIDDEN:
            raise AuthenticationError(
                f"{self.repository}: the registry denied access (HTTP 403){self._hint()}"
            )

    def _hint(self) -> str:
        if self._credentials is None:
            return "; set spec.secretRef to a Secret with credentials for this registry"
        return ""

    async def _authorize(self, challenge: Challenge | None) -> str:
        """The ``Authorization`` value that answers ``challenge``."""
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise AuthenticationError(
                f"{self.repository}: the registry asks for authentication without a Basic or "
                "Bearer challenge"
            )
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise AuthenticationError(
                    f"{self.repository}: the registry requires authentication{self._hint()}"
                )
            return self._credentials.basic()
        return f"Bearer {await self._token(challenge)}"

    async def _token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm", "")
        try:
            realm_url = httpx.URL(realm)
        except httpx.InvalidURL:
            realm_url = httpx.URL("")
        if realm_url.scheme not in ("http", "https") or not realm_url.host:
            raise AuthenticationError(
                f"{self.repository}: the registry's Bearer challenge has no usable realm"
            )
        if realm_url.scheme == "http" and not self.repository.insecure:
            raise AuthenticationError(
                f"{self.repository}: the token server {realm_url.host} is plain HTTP; refusing to "
                "send credentials there (set spec.insecure for a plain HTTP registry)"
            )
        shown = f"{realm_url.scheme}://{realm_url.netloc.decode()}{realm_url.path}"
        params = {
            "scope": challenge.params.get("scope") or f"repository:{self.repository.name}:pull"
        }
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        request = self._client.build_request(
            "GET", realm_url.copy_merge_params(params), headers=headers
        )
        try:
            response = await self._client.send(request, stream=True)
        except _NETWORK_ERRORS as err:
            raise RegistryError(f"token request to {shown} failed: {_describe(err)}") from None
        try:
            if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
                who = "anonymous access" if self._credentials is None else "the credentials"
                raise AuthenticationError(
                    f"{self.repository}: the token server {shown} refused {who} "
                    f"(HTTP {response.status_code}){self._hint()}"
                )
            raw = await self._read_capped(response, MAX_TOKEN_RESPONSE_SIZE, "token")
        finally:
            await response.aclose()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        token = (
            (answer.get("token") or answer.get("access_token"))
            if isinstance(answer, dict)
            else None
        )
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"{self.repository}: the token server {shown} sent no token")
        return token

    async def _read_capped(self, response: httpx.Response, limit: int, what: str) -> bytes:
        await self._check_answer(response, what)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ContentError(f"{what} of {self.repository} is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ContentError(f"{what} of {self.repository} is larger than {limit} bytes")
                chunks.append(chunk)
        except _NETWORK_ERRORS as err:
            raise RegistryError(
                f"reading the {what} of {self.repository} failed: {_describe(err)}"
            ) from None
        return b"".join(chunks)

    async def _check_answer(self, response: httpx.Response, what: str) -> None:
        """Raise a RegistryError for an answer other than 200, with the registry's error code
        and message (distribution's ``{"errors": [...]}``) when it sent them, and a
        ContentError for content in a coding other than the identity asked for."""
        if response.status_code == httpx.codes.OK:
            coding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if coding not in ("", "identity"):
                raise ContentError(
                    f"{what} of {self.repository} came with Content-Encoding '{coding[:50]}' "
                    "although none was asked for"
                )
            return
        detail = ""
        with contextlib.suppress(*_NETWORK_ERRORS, ValueError, KeyError, TypeError, IndexError):
            body = b""
            async for chunk in response.aiter_raw(_CHUNK):
                body += chunk
                if len(body) > _MAX_ERROR_BODY:
                    break
            error = json.loads(body[:_MAX_ERROR_BODY])["errors"][0]
            detail = f": {str(error['code'])[:100]}: {str(error['message'])[:300]}"
        status = f"HTTP {response.status_code} {response.reason_phrase}{detail}"
        if response.status_code == httpx.codes.NOT_FOUND:
            raise RegistryError(f"{what} not found in {self.repository} ({status})")
        raise RegistryError(f"{what} of {self.repository}: the registry answered {status}")


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
