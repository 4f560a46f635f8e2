"""The OCI client's pure parts, its HTTP behaviour against a scripted transport, Flux's SemVer
rules, and the OCIRepository API model and CRD."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controllers import semver
from controllers.oci.client import MAX_MANIFEST_SIZE, RegistryClient
from controllers.oci.credentials import (
    Credentials,
    credentials_from_secret,
    docker_config_credentials,
    tls_context,
)
from controllers.oci.errors import (
    AuthenticationError,
    ContentError,
    InvalidReference,
    RegistryError,
)
from controllers.oci.headers import Challenge, next_link, parse_challenge
from controllers.oci.manifest import (
    FLUX_CONFIG,
    FLUX_CONTENT,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    parse_manifest,
    select_layer,
    select_manifest,
)
from controllers.oci.reference import Repository, parse_repository
from hack.generate_crds import CRDS_DIR
from source.api_v1 import OCIRepository, OCIRepositoryRef
from source.oci.reference import PullRef, needs_tags, resolve_ref

HOST = "registry.example:5000"
DIGEST = "sha256:" + "a" * 64

# -- WWW-Authenticate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            Challenge(
                "bearer",
                {
                    "realm": "https://auth.docker.io/token",
                    "service": "registry.docker.io",
                    "scope": "repository:library/alpine:pull",
                },
            ),
            id="docker-hub",
        ),
        pytest.param(
            'Basic realm="Registry Realm"',
            Challenge("basic", {"realm": "Registry Realm"}),
            id="basic",
        ),
        pytest.param(
            'bearer  realm = "https://r/token" , scope="repository:a/b:pull,push"',
            Challenge("bearer", {"realm": "https://r/token", "scope": "repository:a/b:pull,push"}),
            id="spaces-and-comma-in-quotes",
        ),
        pytest.param(
            r'Bearer realm="https://r/t\"x\\y",service=unquoted',
            Challenge("bearer", {"realm": 'https://r/t"x\\y', "service": "unquoted"}),
            id="escapes-and-token-value",
        ),
        pytest.param(
            'Bearer Realm="https://r/token",REALM="second"',
            Challenge("bearer", {"realm": "https://r/token"}),
            id="names-case-insensitive-first-wins",
        ),
        pytest.param("Basic", Challenge("basic", {}), id="scheme-only"),
        pytest.param(
            'Basic realm="a", Bearer realm="b"',
            Challenge("basic", {"realm": "a"}),
            id="first-of-two-challenges",
        ),
        pytest.param("", None, id="empty"),
        pytest.param('="x"', None, id="no-scheme"),
    ],
)
def test_parse_challenge(header: str, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


# -- docker config and credentials ------------------------------------------------------------


def auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("auths", "host", "expected"),
    [
        pytest.param({HOST: {"auth": auth("u", "p")}}, HOST, ("u", "p"), id="auth"),
        pytest.param(
            {HOST: {"username": "u", "password": "p:with:colons"}},
            HOST,
            ("u", "p:with:colons"),
            id="username-password",
        ),
        pytest.param(
            {HOST: {"auth": auth("u", "p:q")}}, HOST, ("u", "p:q"), id="colon-in-password"
        ),
        pytest.param(
            {f"https://{HOST}/v1/": {"auth": auth("u", "p")}}, HOST, ("u", "p"), id="url-key"
        ),
        pytest.param(
            {"REGISTRY.example:5000": {"auth": auth("u", "p")}}, HOST, ("u", "p"), id="case"
        ),
        pytest.param(
            {"https://index.docker.io/v1/": {"auth": auth("u", "p")}},
            "docker.io",
            ("u", "p"),
            id="docker-hub-alias",
        ),
        pytest.param(
            {"other.example": {"auth": auth("u", "p")}, HOST: {"auth": auth("v", "q")}},
            HOST,
            ("v", "q"),
            id="picks-the-host",
        ),
        pytest.param({"other.example": {"auth": auth("u", "p")}}, HOST, None, id="no-entry"),
        pytest.param({"registry.example": {"auth": auth("u", "p")}}, HOST, None, id="port-matters"),
    ],
)
def test_docker_config_credentials(
    auths: dict[str, Any], host: str, expected: tuple[str, str] | None
) -> None:
    config = json.dumps({"auths": auths})

    credentials = docker_config_credentials(config, host, "ns/pull")

    assert (credentials and (credentials.username, credentials.password)) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({".dockerconfigjson": "{not json"}, "not JSON", id="not-json"),
        pytest.param({".dockerconfigjson": "[]"}, "no 'auths' object", id="no-auths"),
        pytest.param(
            {".dockerconfigjson": json.dumps({"auths": {HOST: {"auth": "!!!secret!!!"}}})},
            "is not base64 of '<username>:<password>'",
            id="bad-auth",
        ),
        pytest.param(
            {".dockerconfigjson": json.dumps({"auths": {HOST: {"identitytoken": "secret"}}})},
            "has neither 'auth' nor 'username' and 'password'",
            id="identity-token-only",
        ),
        pytest.param({"password": "secret"}, "has neither", id="no-username"),
        pytest.param({"token": "secret"}, "has neither", id="unknown-keys"),
    ],
)
def test_unusable_secrets_are_named_without_their_values(
    data: dict[str, str], message: str
) -> None:
    with pytest.raises(AuthenticationError, match="secret 'ns/pull'") as caught:
        credentials_from_secret(data, HOST, "ns/pull")

    assert message in caught.value.message
    assert "secret!!!" not in caught.value.message
    assert "'secret'" not in caught.value.message.replace("secret 'ns/pull'", "")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"username": "u", "password": "p"}, ("u", "p"), id="basic"),
        pytest.param(
            {".dockerconfigjson": json.dumps({"auths": {HOST: {"auth": auth("u", "p")}}})},
            ("u", "p"),
            id="dockerconfigjson",
        ),
        pytest.param(
            {".dockercfg": json.dumps({HOST: {"auth": auth("u", "p")}})},
            ("u", "p"),
            id="legacy-dockercfg",
        ),
        pytest.param(
            {".dockerconfigjson": json.dumps({"auths": {}}), "username": "u", "password": "p"},
            None,
            id="docker-config-wins",
        ),
    ],
)
def test_credentials_from_secret(data: dict[str, str], expected: tuple[str, str] | None) -> None:
    credentials = credentials_from_secret(data, HOST, "ns/pull")

    assert (credentials and (credentials.username, credentials.password)) == expected


def test_credentials_never_show_the_password() -> None:
    credentials = Credentials("user", "hunter2")

    assert "hunter2" not in repr(credentials)
    assert credentials.basic() == f"Basic {auth('user', 'hunter2')}"


# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "insecure", "host", "name", "base_url"),
    [
        pytest.param(
            "oci://ghcr.io/stefanprodan/manifests/podinfo",
            False,
            "ghcr.io",
            "stefanprodan/manifests/podinfo",
            "https://ghcr.io/v2/stefanprodan/manifests/podinfo",
            id="ghcr",
        ),
        pytest.param(
            "oci://127.0.0.1:5000/app",
            True,
            "127.0.0.1:5000",
            "app",
            "http://127.0.0.1:5000/v2/app",
            id="insecure-with-port",
        ),
        pytest.param(
            "oci://docker.io/alpine",
            False,
            "docker.io",
            "library/alpine",
            "https://registry-1.docker.io/v2/library/alpine",
            id="docker-hub-official",
        ),
        pytest.param(
            "oci://index.docker.io/org/app/",
            False,
            "docker.io",
            "org/app",
            "https://registry-1.docker.io/v2/org/app",
            id="docker-hub-alias-trailing-slash",
        ),
        pytest.param(
            "oci://[::1]:5000/a__b/c-d.e",
            True,
            "[::1]:5000",
            "a__b/c-d.e",
            "http://[::1]:5000/v2/a__b/c-d.e",
            id="ipv6-and-separators",
        ),
    ],
)
def test_parse_repository(url: str, insecure: bool, host: str, name: str, base_url: str) -> None:
    repository = parse_repository(url, insecure=insecure)

    assert (repository.host, repository.name, repository.base_url) == (host, name, base_url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("https://ghcr.io/app", "URL must be in format", id="scheme"),
        pytest.param("oci://ghcr.io", "must name a repository", id="no-path"),
        pytest.param("oci://ghcr.io/app:v1", "URL must not contain a tag; remove ':v1'", id="tag"),
        pytest.param("oci://ghcr.io/app@" + DIGEST, "must not contain a digest", id="digest"),
        pytest.param("oci://ghcr.io/App", "invalid repository name", id="uppercase"),
        pytest.param("oci://ghcr.io/a//b", "invalid repository name", id="empty-component"),
        pytest.param("oci://ghcr.io/a/../b", "invalid repository name", id="dot-dot"),
        pytest.param("oci://user:pw@ghcr.io/a", "invalid registry host", id="userinfo"),
        pytest.param("oci://gh cr.io/a", "invalid registry host", id="space"),
    ],
)
def test_parse_repository_refuses(url: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_repository(url)


TAGS = ["v1.0.0", "v1.1.0", "latest", "v2.0.0-rc.1", "v1.2.0-rc.1", "1.1.0", "nightly"]


@pytest.mark.parametrize(
    ("ref", "target", "revision"),
    [
        pytest.param(None, PullRef("latest"), f"latest@{DIGEST}", id="default-latest"),
        pytest.param({}, PullRef("latest"), f"latest@{DIGEST}", id="empty-ref"),
        pytest.param({"tag": "v1.0.0"}, PullRef("v1.0.0"), f"v1.0.0@{DIGEST}", id="tag"),
        pytest.param(
            {"tag": "v1.0.0", "semver": "~1.0"}, PullRef("v1.0.0"), None, id="semver-over-tag"
        ),
        pytest.param({"semver": ">=1.0.0"}, PullRef("v1.1.0"), None, id="semver-highest"),
        pytest.param(
            {"semver": ">=1.0.0", "semverFilter": "^1"},
            PullRef("1.1.0"),
            None,
            id="filter-without-v",
        ),
        pytest.param(
            {"semver": ">=1.0.0-0", "semverFilter": ".*-rc.*"},
            PullRef("v2.0.0-rc.1"),
            None,
            id="filter-prereleases",
        ),
        pytest.param(
            {"semver": "1.1.0"}, PullRef("v1.1.0"), None, id="equal-versions-greatest-tag"
        ),
        pytest.param(
            {"digest": DIGEST, "semver": ">=1.0.0", "tag": "v1.0.0"},
            PullRef(None, DIGEST),
            DIGEST,
            id="digest-wins",
        ),
    ],
)
def test_resolve_ref(ref: dict[str, str] | None, target: PullRef, revision: str | None) -> None:
    model = None if ref is None else OCIRepositoryRef.model_validate(ref)

    resolved = resolve_ref(model, TAGS if needs_tags(model) else None)

    assert resolved == target
    if revision is not None:
        assert resolved.revision(DIGEST) == revision


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        pytest.param(
            {"semver": ">=3.0.0"}, RegistryError, "no match found for semver", id="no-match"
        ),
        pytest.param({"semver": "~>>1"}, InvalidReference, "parse error", id="bad-range"),
        pytest.param(
            {"semver": "*", "semverFilter": "("},
            InvalidReference,
            "invalid semverFilter",
            id="bad-filter",
        ),
        pytest.param(
            {"digest": "sha256:abc"}, InvalidReference, "invalid digest", id="short-digest"
        ),
        pytest.param({"tag": "-leading-dash"}, InvalidReference, "invalid tag", id="bad-tag"),
    ],
)
def test_resolve_ref_refuses(ref: dict[str, str], error: type[Exception], message: str) -> None:
    model = OCIRepositoryRef.model_validate(ref)

    with pytest.raises(error, match=message):
        resolve_ref(model, TAGS)


# -- SemVer as Flux (Masterminds) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1.2.3", (1, 2, 3, "", ""), id="plain"),
        pytest.param("v1.2.3", (1, 2, 3, "", ""), id="v-prefix"),
        pytest.param("1.2", (1, 2, 0, "", ""), id="no-patch"),
        pytest.param("v1", (1, 0, 0, "", ""), id="major-only"),
        pytest.param("1.0.0-rc.1+build.5", (1, 0, 0, "rc.1", "build.5"), id="pre-and-build"),
        pytest.param("latest", None, id="word"),
        pytest.param("1.2.3.4", None, id="four-parts"),
        pytest.param("V1.0.0", None, id="capital-v"),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int, str, str] | None) -> None:
    version = semver.parse_version(text)

    parsed = version and (
        version.major,
        version.minor,
        version.patch,
        version.prerelease,
        version.build,
    )
    assert parsed == expected


VERSIONS = ["0.9.0", "1.0.0", "1.0.1", "1.1.0", "1.2.0-rc.1", "2.0.0-rc.1", "2.0.0", "6.1.1-rc.1"]


@pytest.mark.parametrize(
    ("constraint", "matching"),
    [
        pytest.param(">=1.0.0 <2.0.0", ["1.0.0", "1.0.1", "1.1.0"], id="and-space"),
        pytest.param(">=1.0.0, <2.0.0", ["1.0.0", "1.0.1", "1.1.0"], id="and-comma"),
        pytest.param("<1.0.0 || >=2.0.0", ["0.9.0", "2.0.0"], id="or"),
        pytest.param("~1.0", ["1.0.0", "1.0.1"], id="tilde"),
        pytest.param("^1.0.1", ["1.0.1", "1.1.0"], id="caret"),
        pytest.param("^0.9", ["0.9.0"], id="caret-zero-major"),
        pytest.param("1.x", ["1.0.0", "1.0.1", "1.1.0"], id="wildcard"),
        pytest.param("*", ["0.9.0", "1.0.0", "1.0.1", "1.1.0", "2.0.0"], id="any-release"),
        pytest.param("1.0.0 - 1.1", ["1.0.0", "1.0.1", "1.1.0"], id="hyphen-range"),
        pytest.param(">1.0", ["1.1.0", "2.0.0"], id="greater-than-partial"),
        pytest.param("!=1.0.1, <2", ["0.9.0", "1.0.0", "1.1.0"], id="not-equal"),
        pytest.param(
            ">=1.0.0-0",
            ["1.0.0", "1.0.1", "1.1.0", "1.2.0-rc.1", "2.0.0-rc.1", "2.0.0", "6.1.1-rc.1"],
            id="prerelease-comparator-takes-every-prerelease",
        ),
        # Checked against Masterminds v3.5.0 (Flux's): one comparator asking for prereleases
        # opens its whole AND group to them.
        pytest.param(
            ">=1.0.0-0 <2.0.0",
            ["1.0.0", "1.0.1", "1.1.0", "1.2.0-rc.1", "2.0.0-rc.1"],
            id="one-comparator-asking-for-prereleases-opens-the-group",
        ),
        pytest.param(
            ">=1.0.0-0 <2.0.0 || >=6.0.0",
            ["1.0.0", "1.0.1", "1.1.0", "1.2.0-rc.1", "2.0.0-rc.1"],
            id="only-its-own-group",
        ),
        pytest.param(">= 6.1.x-0", ["6.1.1-rc.1"], id="flux-docs-example"),
    ],
)
def test_constraints_follow_masterminds(constraint: str, matching: list[str]) -> None:
    constraints = semver.parse_constraints(constraint)
    versions = [v for text in VERSIONS if (v := semver.parse_version(text)) is not None]

    assert [str(v) for v in versions if constraints.check(v)] == matching


@pytest.mark.parametrize(
    "constraint",
    [
        pytest.param("", id="empty"),
        pytest.param(">>1", id="double-operator"),
        pytest.param("1.0.0 &&", id="garbage"),
        pytest.param("latest", id="word"),
    ],
)
def test_invalid_constraints(constraint: str) -> None:
    with pytest.raises(semver.InvalidConstraint, match="improper constraint"):
        semver.parse_constraints(constraint)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        pytest.param("1.0.0-alpha", "1.0.0", id="prerelease-before-release"),
        pytest.param("1.0.0-alpha", "1.0.0-alpha.1", id="shorter-first"),
        pytest.param("1.0.0-alpha.1", "1.0.0-alpha.beta", id="number-before-name"),
        pytest.param("1.0.0-beta.2", "1.0.0-beta.11", id="numbers-numerically"),
        pytest.param("1.0.0-rc.1", "1.0.1", id="patch"),
        pytest.param("1.9.0", "1.10.0", id="minor-numerically"),
    ],
)
def test_version_order(lower: str, higher: str) -> None:
    low, high = semver.parse_version(lower), semver.parse_version(higher)
    assert low is not None
    assert high is not None

    assert (low.compare(high), high.compare(low), low.compare(low)) == (-1, 1, 0)


# -- links, manifests and layers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            '</v2/app/tags/list?n=2&last=b>; rel="next"',
            "https://r.example/v2/app/tags/list?n=2&last=b",
            id="relative",
        ),
        pytest.param(
            "<https://r.example/v2/app/tags/list?last=b>; rel=next",
            "https://r.example/v2/app/tags/list?last=b",
            id="absolute-unquoted-rel",
        ),
        pytest.param(
            '</first>; rel="first", </next>; rel="next"',
            "https://r.example/next",
            id="second-link",
        ),
        pytest.param('</prev>; rel="prev"', None, id="no-next"),
        pytest.param(None, None, id="no-header"),
    ],
)
def test_next_link(header: str | None, expected: str | None) -> None:
    assert next_link(header, "https://r.example/v2/app/tags/list") == expected


def test_next_link_refuses_another_host() -> None:
    with pytest.raises(RegistryError, match="another host"):
        next_link('<https://evil.example/x>; rel="next"', "https://r.example/v2/app/tags/list")


def descriptor(media_type: str, char: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + char * 64, "size": 10, **extra}


def manifest_bytes(*layers: dict[str, Any], **extra: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(FLUX_CONFIG, "c"),
        "layers": list(layers),
        **extra,
    }
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("media_type", "chosen"),
    [
        pytest.param(None, "1", id="first-layer-by-default"),
        pytest.param("", "1", id="empty-media-type"),
        pytest.param(FLUX_CONTENT, "2", id="first-of-the-type"),
    ],
)
def test_select_layer(media_type: str | None, chosen: str) -> None:
    raw = manifest_bytes(
        descriptor("application/vnd.other", "1"),
        descriptor(FLUX_CONTENT, "2"),
        descriptor(FLUX_CONTENT, "3"),
    )
    manifest = parse_manifest(raw, DIGEST)

    assert select_layer(manifest, media_type).digest == "sha256:" + chosen * 64


@pytest.mark.parametrize(
    ("raw", "media_type", "message"),
    [
        pytest.param(manifest_bytes(), None, "no layers found in artifact", id="no-layers"),
        pytest.param(
            manifest_bytes(descriptor("x", "1")),
            "text/nope",
            "failed to find layer with media type 'text/nope' in artifact",
            id="no-match",
        ),
    ],
)
def test_select_layer_refuses(raw: bytes, media_type: str | None, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        select_layer(parse_manifest(raw, DIGEST), media_type)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"{", "not valid JSON", id="json"),
        pytest.param(b"[]", "not a JSON object", id="array"),
        pytest.param(
            json.dumps(
                {"mediaType": "application/vnd.docker.distribution.manifest.v1+json"}
            ).encode(),
            "unsupported media type",
            id="docker-schema1",
        ),
        pytest.param(
            manifest_bytes({"mediaType": "x", "digest": "md5:abc", "size": 1}),
            "invalid digest",
            id="bad-digest",
        ),
        pytest.param(
            manifest_bytes({"mediaType": "x", "digest": DIGEST, "size": -1}),
            "invalid size",
            id="negative-size",
        ),
    ],
)
def test_parse_manifest_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        parse_manifest(raw, DIGEST)


def test_parse_manifest_reads_annotations_and_index() -> None:
    image = parse_manifest(
        manifest_bytes(descriptor(FLUX_CONTENT, "1"), annotations={"a": "b", "n": 1}),
        DIGEST,
    )
    index = parse_manifest(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    descriptor(
                        OCI_MANIFEST, "1", platform={"os": "linux", "architecture": "arm64"}
                    ),
                    descriptor(
                        OCI_MANIFEST, "2", platform={"os": "linux", "architecture": "amd64"}
                    ),
                ],
            }
        ).encode(),
        DIGEST,
    )

    assert (image.is_index, image.annotations) == (False, {"a": "b"})
    assert (index.is_index, index.media_type) == (True, OCI_INDEX)
    assert select_manifest(index).digest == "sha256:" + "2" * 64


# -- the client against a scripted registry ----------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def client(
    handler: Handler, credentials: Credentials | None = None, insecure: bool = False
) -> RegistryClient:
    repository = Repository(HOST, "org/app", insecure)
    return RegistryClient(
        repository, credentials, timeout=5, transport=httpx.MockTransport(handler)
    )


class _Body(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def answer(
    status: int,
    content: bytes = b"",
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A response whose body streams as from the network (httpx pre-reads a bytes body)."""
    body = content if json_body is None else json.dumps(json_body).encode()
    return httpx.Response(status, headers=headers, stream=_Body(body))


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def test_tags_follow_link_pagination() -> None:
    pages = {
        None: (["a", "b"], '</v2/org/app/tags/list?n=2&last=b>; rel="next"'),
        "b": (["c", "d"], f'<https://{HOST}/v2/org/app/tags/list?n=2&last=d>; rel="next"'),
        "d": (["e"], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        tags, link = pages[request.url.params.get("last")]
        headers = {"Link": link} if link else {}
        return answer(200, json_body={"name": "org/app", "tags": tags}, headers=headers)

    async with client(handler) as registry:
        assert await registry.tags() == ["a", "b", "c", "d", "e"]


async def test_bearer_token_flow() -> None:
    seen: list[tuple[str, str | None]] = []
    manifest = manifest_bytes(descriptor(FLUX_CONTENT, "1"))

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        if request.url.host == "auth.example":
            assert request.headers["Authorization"] == Credentials("u", "p").basic()
            return answer(200, json_body={"token": "t0k3n"})
        if request.headers.get("Authorization") != "Bearer t0k3n":
            challenge = (
                'Bearer realm="https://auth.example/token",service="reg",'
                'scope="repository:org/app:pull"'
            )
            return answer(401, headers={"WWW-Authenticate": challenge})
        return answer(200, content=manifest, headers={"Content-Type": OCI_MANIFEST})

    async with client(handler, Credentials("u", "p")) as registry:
        first = await registry.manifest("v1")
        second = await registry.manifest("v1")

    assert first == second
    assert first.digest == sha256(manifest)
    token_url = "https://auth.example/token?scope=repository%3Aorg%2Fapp%3Apull&service=reg"
    base = f"https://{HOST}/v2/org/app/manifests/v1"
    assert seen == [
        (base, None),
        (token_url, Credentials("u", "p").basic()),
        (base, "Bearer t0k3n"),
        (base, "Bearer t0k3n"),  # the token is reused
    ]


@pytest.mark.parametrize(
    ("challenge", "credentials", "insecure", "message"),
    [
        pytest.param(
            'Basic realm="r"',
            None,
            False,
            "requires authentication; set spec.secretRef",
            id="basic-without-credentials",
        ),
        pytest.param(
            'Basic realm="r"',
            Credentials("u", "wrong"),
            False,
            "refused the credentials (HTTP 401)",
            id="basic-refused",
        ),
        pytest.param(
            'Bearer realm="http://auth.example/token"',
            Credentials("u", "p"),
            False,
            "is plain HTTP; refusing to send credentials",
            id="plain-http-realm",
        ),
        pytest.param(
            'Bearer realm="https://auth.example/token"',
            Credentials("u", "wrong"),
            False,
            "token server https://auth.example/token refused the credentials",
            id="token-refused",
        ),
        pytest.param(
            'Bearer service="x"',
            Credentials("u", "p"),
            False,
            "no usable realm",
            id="no-realm",
        ),
        pytest.param(
            "Negotiate",
            Credentials("u", "p"),
            False,
            "without a Basic or Bearer challenge",
            id="unknown-scheme",
        ),
    ],
)
async def test_authentication_failures(
    challenge: str, credentials: Credentials | None, insecure: bool, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return answer(401)
        return answer(401, headers={"WWW-Authenticate": challenge})

    async with client(handler, credentials, insecure) as registry:
        with pytest.raises(AuthenticationError, match=re.escape(message)) as caught:
            await registry.manifest("v1")

    assert "wrong" not in caught.value.message


async def test_forbidden_is_an_authentication_error() -> None:
    async with client(lambda request: answer(403)) as registry:
        with pytest.raises(AuthenticationError, match="denied access"):
            await registry.tags()


async def test_registry_errors_carry_the_registry_code() -> None:
    body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}

    async with client(lambda request: answer(404, json_body=body)) as registry:
        with pytest.raises(RegistryError, match=r"manifest v9 not found .*MANIFEST_UNKNOWN"):
            await registry.manifest("v9")


async def test_resolve_digest_uses_head_and_falls_back_to_get() -> None:
    manifest = manifest_bytes()
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        if request.method == "HEAD":
            return answer(405)
        return answer(200, content=manifest)

    async with client(handler) as registry:
        assert await registry.resolve_digest("latest") == sha256(manifest)
    assert methods == ["HEAD", "GET"]

    def head(request: httpx.Request) -> httpx.Response:
        return answer(200, headers={"Docker-Content-Digest": DIGEST})

    async with client(head) as registry:
        assert await registry.resolve_digest("latest") == DIGEST


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        pytest.param(b"{}", {}, "has digest sha256:", id="other-content-than-asked"),
        pytest.param(
            b"x" * (MAX_MANIFEST_SIZE + 1), {}, "larger than 4194304 bytes", id="too-large"
        ),
    ],
)
async def test_manifest_by_digest_is_verified(
    content: bytes, headers: dict[str, str], message: str
) -> None:
    async with client(lambda request: answer(200, content=content)) as registry:
        with pytest.raises(ContentError, match=message):
            await registry.manifest(DIGEST)


async def test_manifest_digest_must_match_the_declared_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer(200, manifest_bytes(), headers={"Docker-Content-Digest": DIGEST})

    async with client(handler) as registry:
        with pytest.raises(ContentError, match=r"not the sha256:a+ the registry declared"):
            await registry.manifest("latest")


@pytest.mark.parametrize(
    ("served", "size", "limit", "message"),
    [
        pytest.param(b"other", 5, 100, "downloaded with 5 bytes and digest", id="other-content"),
        pytest.param(b"layer-data", 5, 100, "larger than the 5 bytes", id="longer-than-said"),
        pytest.param(b"layer", 500, 100, "more than the 100 byte limit", id="over-the-cap"),
    ],
)
async def test_fetch_blob_refuses(
    tmp_path: Path, served: bytes, size: int, limit: int, message: str
) -> None:
    layer = Descriptor(FLUX_CONTENT, sha256(b"layer"), size)

    async with client(lambda request: answer(200, content=served)) as registry:
        with pytest.raises(ContentError, match=message):
            await registry.fetch_blob(layer, tmp_path / "blob", limit)


async def test_content_coding_is_refused(tmp_path: Path) -> None:
    layer = Descriptor(FLUX_CONTENT, sha256(b"layer"), 5)
    headers = {"Content-Encoding": "gzip"}
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Accept-Encoding"))
        return answer(200, b"layer", headers=headers)

    async with client(handler) as registry:
        with pytest.raises(ContentError, match="Content-Encoding 'gzip'"):
            await registry.fetch_blob(layer, tmp_path / "blob", 100)

    assert seen == ["identity"]


async def test_fetch_blob(tmp_path: Path) -> None:
    data = b"layer" * 100_000
    layer = Descriptor(FLUX_CONTENT, sha256(data), len(data))

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v2/org/app/blobs/{layer.digest}"
        return answer(200, content=data)

    async with client(handler) as registry:
        await registry.fetch_blob(layer, tmp_path / "blob", len(data))

    assert (tmp_path / "blob").read_bytes() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"ca.crt": "not a certificate"}, "'ca.crt' is not a PEM certificate", id="ca"),
        pytest.param({"tls.crt": "x"}, "must be given together", id="half-pair"),
        pytest.param({"tls.crt": "x", "tls.key": "y"}, "not a matching PEM", id="bad-pair"),
    ],
)
def test_tls_context_refuses(data: dict[str, str], message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        tls_context(data, "ns/tls")


# -- the API model and its CRD ----------------------------------------------------------------


def ocirepository_crd() -> dict[str, Any]:
    path = CRDS_DIR / "source.toolkit.fluxcd.io_ocirepositories.yaml"
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


def test_ocirepository_crd_matches_flux() -> None:
    crd = ocirepository_crd()
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    properties = spec["properties"]

    assert crd["spec"]["names"]["shortNames"] == ["ocirepo"]
    assert crd["spec"]["names"]["categories"] == ["all", "fluxcd", "fluxcd-sources"]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "URL",
        "Ready",
        "Status",
        "Age",
    ]
    assert spec["required"] == ["interval", "url"]
    assert properties["url"]["pattern"] == "^oci://.*$"
    assert properties["timeout"] == {
        "default": "60s",
        "description": properties["timeout"]["description"],
        "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$",
        "type": "string",
    }
    assert properties["provider"]["default"] == "generic"
    assert properties["provider"]["enum"] == ["generic", "aws", "azure", "gcp"]
    assert properties["layerSelector"]["properties"]["operation"]["enum"] == ["extract", "copy"]
    assert set(properties["ref"]["properties"]) == {"digest", "semver", "semverFilter", "tag"}
    verify = properties["verify"]["properties"]
    assert verify["provider"]["default"] == "cosign"
    assert verify["provider"]["enum"] == ["cosign", "notation"]
    assert verify["matchOIDCIdentity"]["items"]["required"] == ["issuer", "subject"]
    assert set(properties) == {
        "url",
        "ref",
        "layerSelector",
        "provider",
        "secretRef",
        "verify",
        "serviceAccountName",
        "certSecretRef",
        "proxySecretRef",
        "interval",
        "timeout",
        "ignore",
        "insecure",
        "suspend",
    }
    assert set(status["properties"]) == {
        "observedGeneration",
        "conditions",
        "lastHandledReconcileAt",
        "url",
        "artifact",
        "observedIgnore",
        "observedLayerSelector",
    }
    assert "&id" not in (CRDS_DIR / "source.toolkit.fluxcd.io_ocirepositories.yaml").read_text()


def test_ocirepository_round_trips_flux_names() -> None:
    manifest: dict[str, Any] = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "podinfo", "namespace": "default"},
        "spec": {
            "interval": "5m0s",
            "url": "oci://ghcr.io/stefanprodan/manifests/podinfo",
            "ref": {"semver": ">= 6.1.x-0", "semverFilter": ".*-rc.*"},
            "layerSelector": {"mediaType": FLUX_CONTENT, "operation": "copy"},
            "verify": {
                "provider": "cosign",
                "matchOIDCIdentity": [{"issuer": "^https://token$", "subject": "^me$"}],
            },
        },
    }

    obj = OCIRepository.model_validate(manifest)

    assert obj.spec.timeout == "60s"
    assert obj.spec.provider == "generic"
    assert obj.spec.verify is not None
    assert obj.spec.verify.match_oidc_identity is not None
    assert obj.to_dict()["spec"] == {**manifest["spec"], "timeout": "60s", "provider": "generic"}
