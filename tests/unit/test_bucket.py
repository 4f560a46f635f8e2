"""Bucket: Flux's revision digest, which keys are fetched, key safety and endpoints."""

from __future__ import annotations

import hashlib

import pytest

from source.bucket import InvalidObjectKey, build_index, check_object_key, index_revision
from source.ignore import InvalidIgnoreFile
from source.s3 import S3Object, endpoint_url


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("index", "hashed"),
    [
        pytest.param({}, "", id="empty"),
        # The vector of Flux's internal/index TestDigester_String.
        pytest.param({"foo": "bar", "bar": "baz"}, "bar baz\nfoo bar\n", id="flux-vector"),
        pytest.param(
            {"apps/b.yaml": "e2", "apps/a.yaml": "e1"},
            "apps/a.yaml e1\napps/b.yaml e2\n",
            id="sorted-keys",
        ),
        # Go's sort.Strings compares bytes: upper case first, '.' (0x2e) before '/' (0x2f),
        # multi-byte UTF-8 last.
        pytest.param(
            {"é": "5", "b": "4", "a/b": "3", "a.b": "2", "B": "1"},
            "B 1\na.b 2\na/b 3\nb 4\né 5\n",
            id="byte-order",
        ),
        pytest.param(
            {"a b.txt": "d41d8cd98f00b204e9800998ecf8427e-2"},
            "a b.txt d41d8cd98f00b204e9800998ecf8427e-2\n",
            id="space-and-multipart-etag",
        ),
    ],
)
def test_index_revision_is_fluxs_digest(index: dict[str, str], hashed: str) -> None:
    assert index_revision(index) == sha256(hashed)


def test_index_revision_ignores_insertion_order() -> None:
    forward = {f"k{i}": f"e{i}" for i in range(50)}
    backward = dict(reversed(list(forward.items())))

    assert index_revision(forward) == index_revision(backward)


def test_index_revision_changes_with_an_etag() -> None:
    assert index_revision({"a": "1"}) != index_revision({"a": "2"})


def objects(*keys: str) -> list[S3Object]:
    return [S3Object(key=key, etag=f"etag-{key}", size=1) for key in keys]


@pytest.mark.parametrize(
    ("keys", "sourceignore", "spec_ignore", "expected"),
    [
        pytest.param(
            ("a.yaml", "dir/", "dir/b.yaml"), None, None, {"a.yaml", "dir/b.yaml"}, id="dir-markers"
        ),
        pytest.param(
            (".sourceignore", "sub/.sourceignore"),
            None,
            None,
            {"sub/.sourceignore"},
            id="root-sourceignore-is-not-indexed",
        ),
        pytest.param(
            ("image.png", ".github/ci.yaml", "archive.tar.gz", ".git/config"),
            None,
            None,
            {"image.png", ".github/ci.yaml", "archive.tar.gz", ".git/config"},
            id="no-default-excludes",
        ),
        pytest.param(
            ("a.md", "docs/b.md", "c.yaml"), "*.md\n", None, {"c.yaml"}, id="sourceignore"
        ),
        pytest.param(
            ("a.md", "docs/b.md", "c.yaml"),
            "# comment\n\n*.md\n",
            "!docs/b.md\n",
            {"docs/b.md", "c.yaml"},
            id="spec-ignore-wins",
        ),
        pytest.param(
            ("tmp/a", "x/tmp/b", "tmpfile"), None, "tmp/\n", {"tmpfile"}, id="directory-pattern"
        ),
        pytest.param(
            ("root.yaml", "sub/root.yaml"), None, "/root.yaml\n", {"sub/root.yaml"}, id="anchored"
        ),
    ],
)
def test_build_index_selects_as_flux(
    keys: tuple[str, ...], sourceignore: str | None, spec_ignore: str | None, expected: set[str]
) -> None:
    index = build_index(objects(*keys), sourceignore, spec_ignore)

    assert set(index) == expected
    assert all(index[key].etag == f"etag-{key}" for key in index)


def test_build_index_refuses_a_bad_pattern() -> None:
    with pytest.raises(InvalidIgnoreFile, match="invalid ignore pattern"):
        build_index(objects("a"), "!\n", None)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("a", id="plain"),
        pytest.param("deploy/app.yaml", id="nested"),
        pytest.param(".hidden", id="dot-file"),
        pytest.param("..x/..y", id="dots-in-names"),
        pytest.param("a..b", id="inner-dots"),
        pytest.param("a\\b", id="backslash-is-a-name-on-posix"),
        pytest.param("ünï/ß.yaml", id="unicode"),
        pytest.param("a b/c+d.txt", id="space-and-plus"),
    ],
)
def test_safe_keys_are_accepted(key: str) -> None:
    check_object_key(key)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("/etc/x", "absolute", id="absolute"),
        pytest.param("../x", "'..'", id="parent"),
        pytest.param("../../etc/x", "'..'", id="parents"),
        pytest.param("a/../../x", "'..'", id="inner-parent"),
        pytest.param("a/..", "'..'", id="trailing-parent"),
        pytest.param("..", "'..'", id="only-parent"),
        pytest.param("./x", "'.'", id="dot"),
        pytest.param("a/./b", "'.'", id="inner-dot"),
        pytest.param("a//b", "empty", id="empty-component"),
        pytest.param("x\x00y", "NUL", id="nul"),
    ],
)
def test_unsafe_keys_are_refused(key: str, why: str) -> None:
    with pytest.raises(InvalidObjectKey, match=why):
        check_object_key(key)


@pytest.mark.parametrize(
    ("endpoint", "secure", "url"),
    [
        pytest.param("127.0.0.1:9000", False, "http://127.0.0.1:9000", id="insecure"),
        pytest.param("s3.amazonaws.com", True, "https://s3.amazonaws.com", id="tls"),
        pytest.param("minio.minio.svc:443", True, "https://minio.minio.svc:443", id="port"),
        pytest.param("[::1]:9000", False, "http://[::1]:9000", id="ipv6"),
    ],
)
def test_endpoint_url(endpoint: str, secure: bool, url: str) -> None:
    assert endpoint_url(endpoint, secure=secure) == url


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        pytest.param("https://s3.amazonaws.com", "without a scheme", id="scheme"),
        pytest.param("minio:9000/bucket", "without a path", id="path"),
        pytest.param("user:pass@minio:9000", "without a path", id="credentials"),
        pytest.param("", "without a scheme", id="empty"),
        pytest.param(":9000", "no host", id="no-host"),
    ],
)
def test_endpoint_url_refuses(endpoint: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        endpoint_url(endpoint, secure=True)
