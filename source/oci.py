"""A small OCI distribution client for OCIRepository, over httpx.

What it does, against one repository of a registry (``RegistryClient``): resolve a tag to the
digest of the manifest it names (HEAD, falling back to GET), fetch a manifest by digest and
verify it (OCI image manifest or index, Docker v2 manifest or manifest list), list the tags
(following ``Link`` pagination), and download a blob with a size cap and digest verification.
Manifests and tag pages are read with a size cap too, and every request has a timeout.

Authentication follows the distribution spec. A request first goes out without credentials (or
with the ``Authorization`` that worked before); a 401 answer's ``WWW-Authenticate`` challenge
decides what comes next: ``Basic`` retries with the credentials, ``Bearer realm=...,service=...,
scope=...`` fetches a token from the realm (the credentials as basic auth; anonymously without
them) and retries with it. A second 401, or a 403, is an :class:`AuthenticationError`.

The pure parts are here too: which tag or digest an ``OCIRepositoryRef`` names (precedence
digest > semver > tag, default tag ``latest``), the ``WWW-Authenticate`` parser, credentials from
a Secret (``username``/``password`` or a docker config), and which layer a selector picks.

Errors are :class:`OCIError` subclasses; their messages name the registry, repository and
reference, never a credential, token or Secret value:

- :class:`InvalidReference`: the URL, digest, SemVer range or filter is malformed;
- :class:`AuthenticationError`: a Secret is unusable, or the registry or its token server
  refused the request;
- :class:`RegistryError`: the registry could not be reached, timed out or answered an error;
- :class:`ContentError`: what the registry served is unacceptable: a digest that does not
  match, too large, an unsupported media type, no matching layer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from controllers.download import BodyTooLarge, save_body
from controllers.tls import TLSConfigError, context_from_secret, system_context
from source import semver
from source.api_v1 import OCIRepositoryRef

__all__ = [
    "DEFAULT_TAG",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "FLUX_CONFIG",
    "FLUX_CONTENT",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_SIZE",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "AuthenticationError",
    "Challenge",
    "ContentError",
    "Credentials",
    "Descriptor",
    "InvalidReference",
    "Manifest",
    "OCIError",
    "RegistryClient",
    "RegistryError",
    "Repository",
    "Target",
    "credentials_from_secret",
    "docker_config_credentials",
    "needs_tags",
    "next_link",
    "parse_challenge",
    "parse_manifest",
    "parse_repository",
    "resolve_ref",
    "select_layer",
    "select_manifest",
    "tls_context",
]

DEFAULT_TAG = "latest"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
# What `flux push artifact` writes.
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"

# The image spec asks registries to accept manifests up to 4 MiB; nothing sane is larger.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_TAG_PAGE_SIZE = 4 * 1024 * 1024
MAX_TAG_PAGES = 1000
MAX_TOKEN_RESPONSE_SIZE = 1024 * 1024

_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_DOCKER_HUB_API = "registry-1.docker.io"
_CHUNK = 256 * 1024
_MAX_ERROR_BODY = 64 * 1024
# httpx leaves a TLS alert that arrives after the handshake (a refused client certificate,
# with TLS 1.3) as a bare ssl.SSLError.
_NETWORK_ERRORS = (httpx.HTTPError, ssl.SSLError)


class OCIError(Exception):
    """An OCI operation failed; ``message`` says what and why, without secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidReference(OCIError):
    """The URL, digest, SemVer range or SemVer filter is malformed."""


class AuthenticationError(OCIError):
    """A Secret is unusable, or the registry (or its token server) refused the request."""


class RegistryError(OCIError):
    """The registry could not be reached, timed out, or answered with an error."""


class ContentError(OCIError):
    """What the registry served is unacceptable: wrong digest, too large, unsupported."""


# -- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """One repository of a registry: ``host`` as written in the URL, ``name`` its path."""

    host: str
    name: str
    insecure: bool = False

    @property
    def api_host(self) -> str:
        """Where the registry API answers (Docker Hub's API is not at docker.io)."""
        return _DOCKER_HUB_API if self.host == _DOCKER_HUB else self.host

    @property
    def base_url(self) -> str:
        scheme = "http" if self.insecure else "https"
        return f"{scheme}://{self.api_host}/v2/{self.name}"

    def __str__(self) -> str:
        return f"{self.host}/{self.name}"


def parse_repository(url: str, *, insecure: bool = False) -> Repository:
    """The repository of ``oci://<host>[:<port>]/<path>``; a tag or digest is refused, as in
    Flux (they belong in ``spec.ref``)."""
    if not url.startswith("oci://"):
        raise InvalidReference("URL must be in format 'oci://<domain>/<org>/<repo>'")
    host, _, path = url.removeprefix("oci://").partition("/")
    if not path:
        raise InvalidReference("URL must name a repository: 'oci://<domain>/<org>/<repo>'")
    if "@" in path:
        raise InvalidReference("URL must not contain a digest; set spec.ref.digest instead")
    if ":" in path:
        raise InvalidReference(f"URL must not contain a tag; remove ':{path.rsplit(':', 1)[1]}'")
    if not _HOST.fullmatch(host):
        raise InvalidReference(f"invalid registry host {host[:256]!r}")
    path = path.rstrip("/")
    if host.lower() in _DOCKER_HUB_ALIASES:
        host = _DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if len(path) > 255 or not all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/")):
        raise InvalidReference(
            f"invalid repository name {path[:256]!r}: path components must be lowercase "
            "letters and digits, separated by '.', '_', '__' or '-'"
        )
    return Repository(host, path, insecure)


@dataclass(frozen=True)
class Target:
    """What to pull: a tag (its digest looked up) or a digest; ``revision`` names the result
    as Flux does, ``<tag>@<digest>`` or just ``<digest>``."""

    tag: str | None
    digest: str | None = None

    def revision(self, digest: str) -> str:
        return f"{self.tag}@{digest}" if self.tag else digest

    def reference(self, repository: Repository) -> str:
        """The full reference, ``<host>/<name>:<tag>`` or ``<host>/<name>@<digest>``."""
        return f"{repository}@{self.digest}" if self.digest else f"{repository}:{self.tag}"


def needs_tags(ref: OCIRepositoryRef | None) -> bool:
    """Whether resolving ``ref`` needs the repository's tag list (a SemVer range)."""
    return ref is not None and not ref.digest and bool(ref.semver)


def resolve_ref(ref: OCIRepositoryRef | None, tags: Sequence[str] | None = None) -> Target:
    """The Target ``ref`` names: digest > semver > tag > the ``latest`` tag. ``tags`` (every
    tag of the repository) is needed for a SemVer range: the highest matching version wins,
    among the tags that match ``semverFilter`` (a regular expression, searched) when set."""
    if ref is not None and ref.digest:
        if not _DIGEST.fullmatch(ref.digest):
            raise InvalidReference(
                f"invalid digest {ref.digest[:200]!r}: expected 'sha256:<64 hex digits>'"
            )
        return Target(None, ref.digest)
    if ref is not None and ref.semver:
        if tags is None:
            raise ValueError("resolving a SemVer range needs the repository's tags")
        return Target(_highest(tags, ref.semver, ref.semver_filter))
    tag = (ref.tag if ref is not None else None) or DEFAULT_TAG
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid tag {tag[:200]!r}")
    return Target(tag)


def _highest(tags: Sequence[str], range_: str, semver_filter: str | None) -> str:
    """The tag with the highest version in ``range_`` (Masterminds' rules, as Flux)."""
    if semver_filter:
        try:
            pattern = re.compile(semver_filter)
        except re.error as err:
            raise InvalidReference(f"invalid semverFilter '{semver_filter}': {err}") from None
        tags = [tag for tag in tags if pattern.search(tag)]
    try:
        constraints = semver.parse_constraints(range_)
    except semver.InvalidConstraint as err:
        raise InvalidReference(f"semver '{range_}' parse error: {err}") from None
    best = semver.highest(tags, constraints)
    if best is None:
        raise RegistryError(f"no match found for semver: {range_}")
    return best


# -- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A registry user name and password (or token); the password never shows in a repr."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The value of a basic ``Authorization`` header."""
        pair = f"{self.username}:{self.password}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"


def credentials_from_secret(
    data: Mapping[str, str], host: str, secret_name: str
) -> Credentials | None:
    """The credentials a Secret's (decoded) ``data`` holds for registry ``host``.

    A ``kubernetes.io/dockerconfigjson`` Secret (``.dockerconfigjson``, or the legacy
    ``.dockercfg``) gives the entry for ``host``, None when it has none; otherwise the Secret
    must have ``username`` and ``password``.
    """
    if ".dockerconfigjson" in data:
        return docker_config_credentials(data[".dockerconfigjson"], host, secret_name)
    if ".dockercfg" in data:
        # The legacy format is the "auths" map alone.
        return docker_config_credentials(data[".dockercfg"], host, secret_name, legacy=True)
    if data.get("username") and "password" in data:
        return Credentials(data["username"], data["password"])
    raise AuthenticationError(
        f"secret '{secret_name}' has neither '.dockerconfigjson' nor 'username' and 'password'"
    )


def docker_config_credentials(
    config: str, host: str, secret_name: str, *, legacy: bool = False
) -> Credentials | None:
    """The credentials for ``host`` in a docker config (``{"auths": {<registry>: {...}}}``):
    ``auth`` (base64 of ``user:password``) or ``username`` and ``password``. Registry keys
    may carry a scheme and path (``https://index.docker.io/v1/``); None when no key is
    ``host``."""
    try:
        parsed = json.loads(config)
    except ValueError:
        raise AuthenticationError(
            f"secret '{secret_name}' holds an invalid docker config: not JSON"
        ) from None
    auths = parsed if legacy else (parsed.get("auths") if isinstance(parsed, dict) else None)
    if not isinstance(auths, dict):
        raise AuthenticationError(
            f"secret '{secret_name}' holds an invalid docker config: no 'auths' object"
        )
    wanted = _registry_key(host)
    entry = next((v for k, v in auths.items() if _registry_key(k) == wanted), None)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise AuthenticationError(
            f"secret '{secret_name}' holds an invalid docker config entry for '{host}'"
        )
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            pair = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            pair = ""
        username, sep, password = pair.partition(":")
        if not sep or not username:
            raise AuthenticationError(
                f"secret '{secret_name}': the docker config 'auth' for '{host}' is not "
                "base64 of '<username>:<password>'"
            )
        return Credentials(username, password)
    if isinstance(entry.get("username"), str) and entry["username"]:
        return Credentials(entry["username"], str(entry.get("password") or ""))
    raise AuthenticationError(
        f"secret '{secret_name}': the docker config entry for '{host}' has neither 'auth' nor "
        "'username' and 'password'"
    )


def _registry_key(key: str) -> str:
    """A docker config registry key as a bare lowercase ``host[:port]``."""
    key = key.strip().lower()
    key = key.split("://", 1)[-1].split("/", 1)[0]
    return _DOCKER_HUB if key in _DOCKER_HUB_ALIASES else key


def tls_context(data: Mapping[str, str], secret_name: str) -> ssl.SSLContext:
    """The TLS context a ``certSecretRef`` Secret's (decoded) data makes
    (:func:`controllers.tls.context_from_secret`), its errors as :class:`AuthenticationError`."""
    try:
        return context_from_secret(data, secret_name, required=True)
    except TLSConfigError as err:
        raise AuthenticationError(str(err)) from None


# -- challenges and links ---------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """A ``WWW-Authenticate`` challenge: ``scheme`` lowercased, parameter names lowercased."""

    scheme: str
    params: dict[str, str]


# RFC 9110 "token" characters: auth schemes and unquoted parameter values.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TCHARS})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TCHARS}))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None if it has none.

    ``Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"``
    gives scheme ``bearer`` and those three parameters; quoted values may hold commas and
    backslash escapes.
    """
    match = re.match(rf"\s*({_TCHARS})(?:\s+|$)", header)
    if not match:
        return None
    scheme, rest = match[1].lower(), header[match.end() :]
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        param = _PARAM.match(rest, position)
        if param is None:
            break  # the next challenge, or something unparseable: the first one is enough
        value = param[2] if param[2] is not None else param[3]
        params.setdefault(param[1].lower(), re.sub(r"\\(.)", r"\1", value))
        position = param.end()
    return Challenge(scheme, params)


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def next_link(header: str | None, current: str) -> str | None:
    """The absolute URL of the ``rel="next"`` entry of a ``Link`` header, resolved against
    ``current``; None without one. A link to another scheme or host is refused: credentials
    must not follow it."""
    for match in _LINK.finditer(header or ""):
        attributes = [a.strip().lower().replace(" ", "") for a in match[2].split(";")]
        if 'rel="next"' in attributes or "rel=next" in attributes:
            base = httpx.URL(current)
            url = base.join(match[1])
            if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
                raise RegistryError("the registry's tag list links to another host")
            return str(url)
    return None


# -- manifests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """An image manifest (``layers``) or an index (``manifests``), and its digest."""

    digest: str
    media_type: str
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)


def parse_manifest(raw: bytes, digest: str, content_type: str | None = None) -> Manifest:
    """Parse a manifest whose digest is ``digest``; its media type is the document's
    ``mediaType``, else the response's ``Content-Type``."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise ContentError(f"manifest {digest} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ContentError(f"manifest {digest} is not a JSON object")
    media_type = document.get("mediaType") or (content_type or "").split(";")[0].strip()
    if not media_type:
        # An OCI manifest may omit its media type; what it lists says what it is.
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ContentError(
            f"manifest {digest} has unsupported media type '{media_type[:200]}'; expected one "
            f"of {', '.join(MANIFEST_MEDIA_TYPES)}"
        )
    key = "manifests" if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) else "layers"
    entries = document.get(key) or []
    if not isinstance(entries, list):
        raise ContentError(f"manifest {digest}: '{key}' is not a list")
    descriptors = tuple(_descriptor(entry, digest) for entry in entries)
    return Manifest(
        digest=digest,
        media_type=media_type,
        layers=descriptors if key == "layers" else (),
        manifests=descriptors if key == "manifests" else (),
        annotations=_string_map(document.get("annotations")),
    )


def _descriptor(entry: Any, manifest: str) -> Descriptor:
    if not isinstance(entry, dict):
        raise ContentError(f"manifest {manifest} has a descriptor that is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ContentError(f"manifest {manifest} has a descriptor with an invalid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ContentError(f"manifest {manifest} has a descriptor with an invalid size")
    return Descriptor(
        media_type=str(entry.get("mediaType") or ""),
        digest=digest,
        size=size,
        annotations=_string_map(entry.get("annotations")),
        platform=_string_map(entry.get("platform")),
    )


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def select_manifest(index: Manifest) -> Descriptor:
    """The image an index stands for, as go-containerregistry picks it: linux/amd64, or the
    only entry."""
    for entry in index.manifests:
        if entry.platform.get("os") == "linux" and entry.platform.get("architecture") == "amd64":
            return entry
    if len(index.manifests) == 1:
        return index.manifests[0]
    raise ContentError(
        f"index {index.digest} has {len(index.manifests)} manifests and none for linux/amd64"
    )


def select_layer(manifest: Manifest, media_type: str | None) -> Descriptor:
    """The first layer with ``media_type``, or the first layer when it is None or empty."""
    if not manifest.layers:
        raise ContentError("no layers found in artifact")
    if not media_type:
        return manifest.layers[0]
    for layer in manifest.layers:
        if layer.media_type == media_type:
            return layer
    raise ContentError(f"failed to find layer with media type '{media_type}' in artifact")


# -- the client -------------------------------------------------------------------------------


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
            if response.status_code == httpx.codes.OK and _DIGEST.fullmatch(digest):
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
        algorithm = reference.split(":", 1)[0] if _DIGEST.fullmatch(reference) else "sha256"
        digest = f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"
        if _DIGEST.fullmatch(reference) and digest != reference:
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

    async def tags(self) -> list[str]:
        """Every tag of the repository, following ``Link: <...>; rel="next"`` pages."""
        url: str | None = f"{self.repository.base_url}/tags/list"
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
