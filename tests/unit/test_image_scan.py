"""ImageRepository scans apart from the network: the image name, exclusion, revision and latest
tags (Flux's rules), the stored form of a scan, the policy requeue, and the v1 models."""

from __future__ import annotations

import base64
import gzip
import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from controllers.oci.errors import InvalidReference
from image_automation.api_v1 import ImagePolicy, ImageRepository, ImageUpdateAutomation
from image_automation.scan import exclude_tags, latest_tags, parse_image, scan_revision
from image_automation.tags import (
    MAX_NAME_LENGTH,
    ScanResult,
    TagStoreError,
    _config_map,
    _decode,
    config_map_name,
    policies_to_requeue,
)


@pytest.mark.parametrize(
    ("image", "host", "name", "canonical"),
    [
        pytest.param(
            "nginx",
            "docker.io",
            "library/nginx",
            "index.docker.io/library/nginx",
            id="hub-official",
        ),
        pytest.param(
            "fluxcd/flux", "docker.io", "fluxcd/flux", "index.docker.io/fluxcd/flux", id="hub-user"
        ),
        pytest.param(
            "docker.io/nginx",
            "docker.io",
            "library/nginx",
            "index.docker.io/library/nginx",
            id="hub-explicit",
        ),
        pytest.param(
            "index.docker.io/library/nginx",
            "docker.io",
            "library/nginx",
            "index.docker.io/library/nginx",
            id="hub-index",
        ),
        pytest.param(
            "ghcr.io/fluxcd/flux",
            "ghcr.io",
            "fluxcd/flux",
            "ghcr.io/fluxcd/flux",
            id="other-registry",
        ),
        pytest.param(
            "127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "127.0.0.1:5000/a/b", id="port"
        ),
        pytest.param("localhost/app", "localhost", "app", "localhost/app", id="localhost"),
    ],
)
def test_images_are_parsed_as_docker_does(image: str, host: str, name: str, canonical: str) -> None:
    parsed = parse_image(image)
    assert (parsed.repository.host, parsed.repository.name, parsed.canonical) == (
        host,
        name,
        canonical,
    )


@pytest.mark.parametrize(
    ("image", "message"),
    [
        pytest.param(
            "https://ghcr.io/a/b", "should not include URL scheme; remove 'https://'", id="scheme"
        ),
        pytest.param("nginx:1.25", "should not include a tag; remove ':1.25'", id="tag"),
        pytest.param(
            "ghcr.io:443/a/b:v1", "should not include a tag; remove ':v1'", id="tag-after-port"
        ),
        pytest.param("nginx@sha256:" + "a" * 64, "should not include a digest", id="digest"),
        pytest.param("Nginx", "is not a valid repository", id="uppercase"),
        pytest.param("", "must not be empty", id="empty"),
    ],
)
def test_images_with_more_than_a_repository_are_refused(image: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message.replace("(", r"\(")):
        parse_image(image)


def test_insecure_images_are_scanned_over_http() -> None:
    assert parse_image("127.0.0.1:5000/a", insecure=True).repository.base_url.startswith("http:")
    assert parse_image("127.0.0.1:5000/a").repository.base_url.startswith("https:")


@pytest.mark.parametrize(
    ("patterns", "kept"),
    [
        pytest.param([r"^.*\.sig$"], ["1.0.0", "sha256-abc.att", "main"], id="default"),
        pytest.param(
            ["^main$", r"\.att$"], ["1.0.0", "sha256-abc.sig"], id="searched-not-anchored"
        ),
        pytest.param([], ["1.0.0", "sha256-abc.sig", "sha256-abc.att", "main"], id="none"),
    ],
)
def test_exclusion_list(patterns: list[str], kept: list[str]) -> None:
    tags = ["1.0.0", "sha256-abc.sig", "sha256-abc.att", "main"]
    assert exclude_tags(tags, patterns) == kept


def test_an_exclusion_pattern_go_rejects_is_an_error() -> None:
    with pytest.raises(ValueError, match="failed to compile regex"):
        exclude_tags(["a"], ["(?<=a)b"])  # lookbehind: not RE2


def test_latest_tags_are_the_first_ten_in_descending_byte_order() -> None:
    tags = [f"1.{i}.0" for i in range(12)] + ["Z", "a"]
    assert latest_tags(tags) == [
        "a",
        "Z",
        "1.9.0",
        "1.8.0",
        "1.7.0",
        "1.6.0",
        "1.5.0",
        "1.4.0",
        "1.3.0",
        "1.2.0",
    ]
    assert latest_tags([]) == []


def test_the_revision_is_flux_sha256_of_the_sorted_lines() -> None:
    # Flux's filesystem tag storage: the tags sorted descending, each followed by "\n".
    expected = "sha256:" + hashlib.sha256(b"b\na\n").hexdigest()
    assert scan_revision(["a", "b"]) == scan_revision(["b", "a"]) == expected
    assert scan_revision([]) == "sha256:" + hashlib.sha256(b"").hexdigest()


def repository(name: str = "app", uid: str = "uid-1") -> ImageRepository:
    return ImageRepository.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"image": "ghcr.io/a/b", "interval": "5m"},
        }
    )


def test_a_stored_scan_reads_back_and_is_owned_by_its_repository() -> None:
    result = ScanResult(
        ("b", "a"), scan_revision(["a", "b"]), "2025-01-01T00:00:00Z", "ghcr.io/a/b"
    )
    body = _config_map(repository(), result, gzip.compress(b"b\na\n"))
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "name": "app",
            "uid": "uid-1",
            "controller": True,
        }
    ]
    assert _decode(body, "ns/app") == result


def test_a_stored_scan_that_inflates_past_the_bound_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("image_automation.tags.MAX_INFLATED_SIZE", 1000)
    body: dict[str, Any] = {
        "binaryData": {"tags.gz": base64.b64encode(gzip.compress(b"a\n" * 1000)).decode()}
    }
    with pytest.raises(TagStoreError, match="inflate past"):
        _decode(body, "ns/app")
    body["binaryData"]["tags.gz"] = base64.b64encode(b"not gzip").decode()
    with pytest.raises(TagStoreError, match="corrupt"):
        _decode(body, "ns/app")


def test_config_map_names_stay_within_the_limit_and_distinct() -> None:
    assert config_map_name("app") == "app.image-tags"
    long_a, long_b = "a" * 253, "a" * 252 + "b"
    assert len(config_map_name(long_a)) <= MAX_NAME_LENGTH
    assert config_map_name(long_a) != config_map_name(long_b)


def repo_object(name: str, revision: str | None, namespace: str = "ns") -> dict[str, Any]:
    status = {"lastScanResult": {"revision": revision, "tagCount": 1}} if revision else {}
    return {"metadata": {"name": name, "namespace": namespace}, "status": status}


def policy(
    name: str, repo: str, namespace: str = "ns", repo_namespace: str | None = None
) -> dict[str, Any]:
    ref = {"name": repo, **({"namespace": repo_namespace} if repo_namespace else {})}
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"imageRepositoryRef": ref}}


POLICIES = [
    policy("same", "app"),
    policy("other-repo", "web"),
    policy("cross", "app", namespace="elsewhere", repo_namespace="ns"),
    policy("other-namespace", "app", namespace="elsewhere"),
]


@pytest.mark.parametrize(
    ("old", "new", "keys"),
    [
        pytest.param(
            repo_object("app", "sha256:1"),
            repo_object("app", "sha256:2"),
            ["ns/same", "elsewhere/cross"],
            id="new-scan",
        ),
        pytest.param(
            repo_object("app", "sha256:1"), repo_object("app", "sha256:1"), [], id="same-scan"
        ),
        pytest.param(
            None, repo_object("app", "sha256:1"), ["ns/same", "elsewhere/cross"], id="created"
        ),
        pytest.param(
            repo_object("app", "sha256:1"), None, ["ns/same", "elsewhere/cross"], id="deleted"
        ),
        pytest.param(
            repo_object("app", None),
            repo_object("app", "sha256:1"),
            ["ns/same", "elsewhere/cross"],
            id="first-scan",
        ),
    ],
)
def test_policies_are_requeued_when_their_repository_scan_changes(
    old: dict[str, Any] | None, new: dict[str, Any] | None, keys: list[str]
) -> None:
    assert policies_to_requeue(old, new, POLICIES) == keys


def test_image_repository_defaults_are_flux() -> None:
    repo = repository()
    assert repo.spec.exclusion_list == [r"^.*\.sig$"]
    assert repo.spec.provider == "generic"
    assert repo.timeout_seconds == 300.0
    quick = ImageRepository.model_validate(
        {"metadata": {"name": "a"}, "spec": {"image": "a", "interval": "100ms"}}
    )
    assert quick.timeout_seconds == 1.0  # Flux's GetTimeout: at least a second
    with pytest.raises(ValidationError):
        ImageRepository.model_validate(
            {"metadata": {"name": "a"}, "spec": {"image": "a", "interval": "1m", "timeout": "1h"}}
        )


@pytest.mark.parametrize(
    ("spec", "valid", "interval"),
    [
        pytest.param({}, True, 0.0, id="never-no-interval"),
        pytest.param(
            {"digestReflectionPolicy": "Always", "interval": "1m"}, True, 60.0, id="always-interval"
        ),
        pytest.param(
            {"digestReflectionPolicy": "Always"}, False, None, id="always-without-interval"
        ),
        pytest.param({"interval": "1m"}, False, None, id="interval-without-always"),
        pytest.param(
            {"digestReflectionPolicy": "IfNotPresent", "interval": "1m"},
            False,
            None,
            id="interval-with-ifnotpresent",
        ),
    ],
)
def test_image_policy_interval_rules(
    spec: dict[str, Any], valid: bool, interval: float | None
) -> None:
    body = {
        "metadata": {"name": "p"},
        "spec": {
            "imageRepositoryRef": {"name": "app"},
            "policy": {"semver": {"range": "1.x"}},
            **spec,
        },
    }
    if not valid:
        with pytest.raises(ValidationError, match=r"spec\.interval"):
            ImagePolicy.model_validate(body)
        return
    assert ImagePolicy.model_validate(body).interval_seconds == interval


def test_image_update_automation_defaults() -> None:
    auto = ImageUpdateAutomation.model_validate(
        {
            "metadata": {"name": "a"},
            "spec": {
                "sourceRef": {"name": "repo"},
                "interval": "5m",
                "git": {"commit": {"author": {"email": "bot@example.com"}}},
            },
        }
    )
    assert auto.spec.source_ref.kind == "GitRepository"
    assert auto.spec.update is not None
    assert auto.spec.update.strategy == "Setters"
