"""The Receiver reconciler's checks of the spec, and the pieces of the receiver server that
need no API server: target kinds, requestedAt, the token bucket, the CEL filters."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controllers.cel import INVALID_CEL_EXPRESSION
from controllers.httpserver import Headers, Request
from notification.api_v1 import RECEIVER_TYPES, Receiver, ReceiverResource, webhook_path
from notification.receiver import ACCESS_DENIED, VALIDATION_FAILED, spec_problem
from notification.receiver_server import (
    TokenBucket,
    _Failed,
    _Filters,
    _is_hook_path,
    _request_variable,
    requested_at,
)
from notification.targets import DEFAULT_API_VERSIONS, target_info


def receiver(**spec: Any) -> Receiver:
    return Receiver.from_dict(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1",
            "kind": "Receiver",
            "metadata": {"name": "hook", "namespace": "apps", "generation": 1},
            "spec": {
                "type": "github",
                "secretRef": {"name": "token"},
                "resources": [{"kind": "GitRepository", "name": "app"}],
                **spec,
            },
        }
    )


def star(**extra: Any) -> dict[str, Any]:
    return {"kind": "GitRepository", "name": "*", **extra}


@pytest.mark.parametrize(
    ("spec", "cross_namespace_refused", "expected"),
    [
        pytest.param({}, True, None, id="valid"),
        pytest.param(
            {"resources": [star(matchLabels={"team": "a"})]}, False, None, id="star-with-labels"
        ),
        pytest.param({"resources": [star(matchLabels={})]}, False, None, id="star-empty-labels"),
        pytest.param(
            {"resources": [star()]},
            False,
            (VALIDATION_FAILED, "matchLabels is required when the name is '*'"),
            id="star-without-labels",
        ),
        pytest.param(
            {"resources": [{"kind": "GitRepository", "name": "app", "matchLabels": {"a": "b"}}]},
            False,
            (VALIDATION_FAILED, "matchLabels selects objects only when the name is '*'"),
            id="labels-with-a-name",
        ),
        pytest.param(
            {"resources": [{"kind": "Kustomization", "name": "app", "namespace": "other"}]},
            True,
            (ACCESS_DENIED, "can't access 'Kustomization/other/app', cross-namespace references"),
            id="cross-namespace-refused",
        ),
        pytest.param(
            {"resources": [{"kind": "Kustomization", "name": "app", "namespace": "other"}]},
            False,
            None,
            id="cross-namespace-allowed",
        ),
        pytest.param(
            {"resources": [{"kind": "Kustomization", "name": "app", "namespace": "apps"}]},
            True,
            None,
            id="own-namespace-named",
        ),
        pytest.param(
            {"resourceFilter": "res.metadata.name =="},
            False,
            (INVALID_CEL_EXPRESSION, "invalid resourceFilter expression: failed to parse"),
            id="resource-filter-invalid",
        ),
        pytest.param(
            {"resources": [{"kind": "GitRepository", "name": "app", "filter": "(("}]},
            False,
            (
                INVALID_CEL_EXPRESSION,
                'invalid filter expression for resources[0] (kind="GitRepository", name="app")',
            ),
            id="resource-filter-of-a-resource-invalid",
        ),
        pytest.param(
            {"resourceFilter": "req.ref == 'refs/heads/main'"}, False, None, id="filter-valid"
        ),
        pytest.param(
            {"type": "gcr"},
            False,
            (VALIDATION_FAILED, "receiver type 'gcr' is not supported by weir"),
            id="gcr-refused",
        ),
        pytest.param(
            {"type": "generic", "secretRef": None},
            False,
            (VALIDATION_FAILED, "secretRef is required when type is not generic-oidc"),
            id="secret-required",
        ),
        pytest.param(
            {
                "oidcProviders": [
                    {
                        "issuerURL": "https://issuer.example",
                        "validations": [{"expression": "true", "message": "m"}],
                    }
                ]
            },
            False,
            (VALIDATION_FAILED, "oidcProviders can only be set when type is generic-oidc"),
            id="oidc-providers-on-github",
        ),
    ],
)
def test_spec_problem(
    spec: dict[str, Any], cross_namespace_refused: bool, expected: tuple[str, str] | None
) -> None:
    problem = spec_problem(receiver(**spec), no_cross_namespace_refs=cross_namespace_refused)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem[0] == expected[0]
        assert expected[1] in problem[1]


def test_every_type_is_either_served_or_refused_with_a_reason() -> None:
    """No type is accepted by the CRD and then silently ignored: gcr is refused, saying so."""
    for receiver_type in RECEIVER_TYPES:
        spec: dict[str, Any] = {"type": receiver_type}
        if receiver_type == "generic-oidc":
            spec |= {"secretRef": None, "oidcProviders": [oidc_provider()]}
        problem = spec_problem(receiver(**spec), no_cross_namespace_refs=False)
        if receiver_type == "gcr":
            assert problem is not None
            assert "not supported by weir" in problem[1]
        else:
            assert problem is None, receiver_type


def oidc_provider(issuer: str = "https://token.actions.example", **fields: Any) -> dict[str, Any]:
    validations = [{"expression": "claims.sub == 'repo:weir/app'", "message": "weir/app only"}]
    return {"issuerURL": issuer, "validations": validations, **fields}


OIDC = {"type": "generic-oidc", "secretRef": None}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({**OIDC, "oidcProviders": [oidc_provider()]}, None, id="valid"),
        pytest.param(
            {**OIDC, "resourceFilter": "claims.sub != ''", "oidcProviders": [oidc_provider()]},
            None,
            id="filter-on-claims",
        ),
        pytest.param(
            OIDC,
            (VALIDATION_FAILED, "generic-oidc receiver requires at least one oidcProvider"),
            id="no-providers",
        ),
        pytest.param(
            {"type": "generic-oidc", "oidcProviders": [oidc_provider()]},
            (VALIDATION_FAILED, "secretRef cannot be set when type is generic-oidc"),
            id="with-a-secret",
        ),
        pytest.param(
            {**OIDC, "oidcProviders": [oidc_provider(), oidc_provider()]},
            (VALIDATION_FAILED, "duplicate issuerURL 'https://token.actions.example'"),
            id="duplicate-issuers",
        ),
        pytest.param(
            {
                **OIDC,
                "oidcProviders": [
                    oidc_provider(variables=[{"name": "repo", "expression": "claims.("}])
                ],
            },
            (INVALID_CEL_EXPRESSION, "invalid expression for variable 'repo'"),
            id="variable-invalid",
        ),
        pytest.param(
            {
                **OIDC,
                "oidcProviders": [
                    oidc_provider(validations=[{"expression": "==", "message": "never"}])
                ],
            },
            (INVALID_CEL_EXPRESSION, "invalid expression for validation 'never'"),
            id="validation-invalid",
        ),
    ],
)
def test_oidc_spec_problem(spec: dict[str, Any], expected: tuple[str, str] | None) -> None:
    problem = spec_problem(receiver(**spec), no_cross_namespace_refs=False)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem[0] == expected[0]
        assert expected[1] in problem[1]


def test_webhook_path_is_fluxs() -> None:
    # sha256("token" + "receiver" + "flux-system"), as Flux computes it.
    import hashlib

    digest = hashlib.sha256(b"tokenreceiverflux-system").hexdigest()
    assert webhook_path("token", "receiver", "flux-system") == f"/hook/{digest}"
    assert _is_hook_path(webhook_path("token", "receiver", "flux-system"))


@pytest.mark.parametrize(
    "path",
    [
        "/hook/",
        "/hook/" + "a" * 63,
        "/hook/" + "a" * 65,
        "/hook/" + "A" * 64,
        "/hook/" + "g" * 64,
        "/hooks/" + "a" * 64,
        "/hook/" + "a" * 64 + "/x",
    ],
    ids=["empty", "short", "long", "upper-case", "not-hex", "other-prefix", "sub-path"],
)
def test_not_hook_paths(path: str) -> None:
    assert not _is_hook_path(path)


@pytest.mark.parametrize(
    ("kind", "api_version", "expected"),
    [
        ("GitRepository", None, ("source.toolkit.fluxcd.io", "v1", "gitrepositories")),
        ("Kustomization", None, ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")),
        ("HelmRelease", None, ("helm.toolkit.fluxcd.io", "v2", "helmreleases")),
        ("ImagePolicy", None, ("image.toolkit.fluxcd.io", "v1", "imagepolicies")),
        (
            "ArtifactGenerator",
            None,
            ("source.extensions.fluxcd.io", "v1beta1", "artifactgenerators"),
        ),
        (
            "HelmRepository",
            "source.toolkit.fluxcd.io/v1beta2",
            ("source.toolkit.fluxcd.io", "v1beta2", "helmrepositories"),
        ),
    ],
    ids=["source", "kustomization", "helmrelease", "image", "artifactgenerator", "explicit-wins"],
)
def test_target_info(kind: str, api_version: str | None, expected: tuple[str, str, str]) -> None:
    info = target_info(kind, api_version)
    assert (info.group, info.version, info.plural) == expected
    assert info.kind == kind


def test_every_kind_a_receiver_may_name_has_a_target() -> None:
    kinds = ReceiverResource.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    assert set(kinds) == set(DEFAULT_API_VERSIONS)
    with pytest.raises(LookupError):
        target_info("ConfigMap")


def test_requested_at_is_gos_time_string() -> None:
    when = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    ns = int(when.timestamp()) * 1_000_000_000
    assert requested_at(ns + 123_450_000) == "2026-03-04 05:06:07.12345 +0000 UTC"
    assert requested_at(ns) == "2026-03-04 05:06:07 +0000 UTC"
    assert requested_at(ns + 1) == "2026-03-04 05:06:07.000000001 +0000 UTC"
    assert requested_at() != requested_at(ns)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.4) is False  # 0.8 of a token
    assert bucket.take(100.5) is True
    assert bucket.take(100.5) is False
    # A long pause refills to the burst, never beyond.
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]


def request(body: bytes, content_type: str | None) -> Request:
    headers = Headers([("Content-Type", content_type)] if content_type else [])
    return Request("POST", "/hook/x", "", headers, body, "127.0.0.1")


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"ref": "main"}', "application/json", {"ref": "main"}),
        (b'{"ref": "main"}', "application/json; charset=utf-8", {"ref": "main"}),
        (b'{"ref": "main"}', "text/plain", {}),
        (b'{"ref": "main"}', None, {}),
        (b"[1]", "application/json", None),
        (b"{", "application/json", None),
    ],
    ids=["json", "json-charset", "not-json-type", "no-type", "json-array", "broken-json"],
)
def test_request_variable(body: bytes, content_type: str | None, expected: Any) -> None:
    assert _request_variable(request(body, content_type)) == expected


OBJ = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "GitRepository",
    "metadata": {"name": "app", "namespace": "apps", "labels": {"team": "a"}},
    "spec": {"url": "https://example.invalid/repo.git"},
}


@pytest.mark.parametrize(
    ("resource_filter", "own_filter", "expected"),
    [
        (None, None, True),
        ("res.metadata.name == 'app'", None, True),
        ("res.metadata.name == 'other'", None, False),
        (None, "req.ref == 'refs/heads/main'", True),
        ("res.kind == 'GitRepository'", "req.ref == 'refs/heads/dev'", False),
        ("res.metadata.labels.team == 'a'", "res.apiVersion.startsWith('source.')", True),
    ],
    ids=["none", "top-true", "top-false", "own-true", "both-one-false", "both-true"],
)
def test_filters(resource_filter: str | None, own_filter: str | None, expected: bool) -> None:
    filters = _Filters({"ref": "refs/heads/main"}, resource_filter)
    resource = ReceiverResource(kind="GitRepository", name="app", filter=own_filter)
    assert filters.accepts(resource, OBJ) is expected


def test_filters_of_a_generic_oidc_receiver_see_the_claims() -> None:
    filters = _Filters({}, "claims.sub == 'repo:weir/app'", {"sub": "repo:weir/app"})
    resource = ReceiverResource(kind="GitRepository", name="app")
    assert filters.accepts(resource, OBJ) is True
    without = _Filters({}, "claims.sub == 'repo:weir/app'")
    with pytest.raises(_Failed):
        without.accepts(resource, OBJ)


def test_filters_see_only_metadata_of_the_object() -> None:
    filters = _Filters({}, "has(res.spec)")
    resource = ReceiverResource(kind="GitRepository", name="app")
    assert filters.accepts(resource, OBJ) is False


def test_a_filter_that_fails_fails_the_resource() -> None:
    filters = _Filters({}, "req.missing.field == 1")
    resource = ReceiverResource(kind="GitRepository", name="app")
    with pytest.raises(_Failed, match="failed to evaluate"):
        filters.accepts(resource, OBJ)
