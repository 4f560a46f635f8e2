"""HelmRepository: the model's defaults, where the index is, and the index as Flux keeps it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from source.api_v1 import HelmRepository
from source.helmindex import InvalidIndex, index_json, load_index
from source.helmrepository import _size, index_url, shown_url


def repository(**spec: Any) -> HelmRepository:
    body = {"metadata": {"name": "charts", "namespace": "apps"}, "spec": spec}
    return HelmRepository.model_validate(body)


@pytest.mark.parametrize(
    ("spec", "interval", "timeout", "static"),
    [
        pytest.param({"url": "https://charts.example.com"}, 60.0, 60.0, False, id="defaults"),
        pytest.param(
            {"url": "https://c.example.com", "interval": "0s"}, 60.0, 60.0, False, id="zero"
        ),
        pytest.param(
            {"url": "https://c.example.com", "interval": "5m", "timeout": "30s"},
            300.0,
            30.0,
            False,
            id="set",
        ),
        pytest.param(
            {"url": "oci://ghcr.io/charts", "type": "oci"}, 60.0, 60.0, True, id="oci-static"
        ),
        pytest.param(
            {"url": "https://c.example.com", "type": "default"}, 60.0, 60.0, False, id="default"
        ),
    ],
)
def test_the_model_gives_flux_defaults(
    spec: dict[str, Any], interval: float, timeout: float, static: bool
) -> None:
    obj = repository(**spec)
    assert (obj.interval_seconds, obj.timeout_seconds, obj.static) == (interval, timeout, static)
    assert obj.spec.provider == "generic"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"url": "ftp://charts.example.com"}, id="scheme"),
        pytest.param({"url": "https://c.example.com", "type": "chartmuseum"}, id="type"),
        pytest.param({"url": "https://c.example.com", "provider": "ibm"}, id="provider"),
        pytest.param({"url": "https://c.example.com", "timeout": "1h"}, id="timeout-hours"),
    ],
)
def test_the_model_refuses_what_the_crd_refuses(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        repository(**spec)


def test_access_from_is_accepted() -> None:
    obj = repository(
        url="https://c.example.com",
        accessFrom={"namespaceSelectors": [{"matchLabels": {"team": "a"}}]},
    )
    assert obj.to_dict()["spec"]["accessFrom"] == {
        "namespaceSelectors": [{"matchLabels": {"team": "a"}}]
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://c.example.com", "https://c.example.com/index.yaml", id="bare"),
        pytest.param("https://c.example.com/", "https://c.example.com/index.yaml", id="slash"),
        pytest.param(
            "https://c.example.com/a//b/", "https://c.example.com/a/b/index.yaml", id="cleaned"
        ),
        pytest.param(
            "http://c.example.com:8080/charts?token=x",
            "http://c.example.com:8080/charts/index.yaml?token=x",
            id="query-kept",
        ),
    ],
)
def test_the_index_is_joined_to_the_url_path(url: str, expected: str) -> None:
    assert str(index_url(url)) == expected


def test_a_url_without_host_is_invalid() -> None:
    with pytest.raises(httpx.InvalidURL):
        index_url("https:///charts")


def test_shown_urls_carry_no_credentials() -> None:
    shown = shown_url(httpx.URL("https://user:hunter2@c.example.com/index.yaml"))
    assert shown == "https://c.example.com/index.yaml"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param(None, "unknown size", id="unknown"),
        pytest.param(999, "size 999B", id="bytes"),
        pytest.param(30880, "size 30.88kB", id="kilobytes"),
        pytest.param(52_428_800, "size 52.43MB", id="megabytes"),
    ],
)
def test_sizes_read_as_flux_writes_them(size: int | None, expected: str) -> None:
    assert _size(size) == expected


def _versions(index: dict[str, Any], chart: str) -> list[str]:
    return [entry["version"] for entry in index["entries"][chart]]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            "apiVersion: v1\nentries:\n  a:\n  - {name: a, version: 1.2.0}\n"
            "  - {name: a, version: 1.10.0}\n  - {name: a, version: 1.10.0-rc.1}\n"
            "  - {name: a, version: v2}\n",
            ["v2", "1.10.0", "1.10.0-rc.1", "1.2.0"],
            id="highest-first",
        ),
        pytest.param(
            "apiVersion: v1\nentries:\n  a:\n  - {name: a, version: 1.0.0}\n"
            "  - {name: a, version: latest}\n  - {name: a}\n  - {name: a/b, version: 2.0.0}\n"
            "  - {name: '..', version: 2.0.0}\n  - {name: a, version: 3.0.0, type: plugin}\n"
            "  - {name: a, version: 4.0.0, dependencies: [{name: d, alias: 'bad alias'}]}\n"
            "  - {name: a, version: 5.0.0, maintainers: [null]}\n  - null\n",
            ["1.0.0"],
            id="invalid-dropped",
        ),
        pytest.param(
            '{"apiVersion": "v1", "entries": {"a": [{"name": "a", "version": "0.1.0"}, '
            '{"name": "a", "version": "0.2.0"}]}}',
            ["0.2.0", "0.1.0"],
            id="json",
        ),
        pytest.param(
            "apiVersion: v1\nentries:\n  a:\n  - {name: a, version: 1.0.0, dependencies: "
            "[{name: d}, {name: d}]}\n",
            ["1.0.0"],
            id="duplicate-dependencies-allowed",
        ),
    ],
)
def test_an_index_is_kept_as_flux_keeps_it(document: str, expected: list[str]) -> None:
    assert _versions(load_index(document.encode()), "a") == expected


def test_versions_without_api_version_get_v1_and_timestamps_stay_as_written() -> None:
    document = (
        b"apiVersion: v1\ngenerated: 2024-05-01T10:00:00.123456789Z\nentries:\n"
        b"  a:\n  - name: a\n    version: 1.0.0\n    created: 2024-05-01T10:00:00.123456789Z\n"
    )
    stored = json.loads(index_json(load_index(document)))
    assert stored["generated"] == "2024-05-01T10:00:00.123456789Z"
    assert stored["entries"]["a"][0]["created"] == "2024-05-01T10:00:00.123456789Z"
    assert stored["entries"]["a"][0]["apiVersion"] == "v1"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(b"", "empty index.yaml file", id="empty"),
        pytest.param(b"entries: {}\n", "no API version specified", id="no-api-version"),
        pytest.param(b"- a\n- b\n", "not a mapping", id="list"),
        pytest.param(b"apiVersion: v1\nentries: [a]\n", "'entries' is not a mapping", id="entries"),
        pytest.param(b"apiVersion: v1\nentries: {a: [\n", "not valid YAML", id="broken-yaml"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nests", id="deep-json"),
        pytest.param(
            b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode()
                for i in range(7)
            ),
            "alias",
            id="alias-bomb",
        ),
    ],
)
def test_what_is_no_index_is_refused(document: bytes, message: str) -> None:
    with pytest.raises(InvalidIndex, match=message):
        load_index(document)
