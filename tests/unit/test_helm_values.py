"""HelmRelease values: Helm's --set parser, Flux's merge and digest."""

from __future__ import annotations

from typing import Any

import pytest

from helm.strvals import StrvalsError, parse_into
from helm.values import encode_values, merge_maps, set_path_value, values_digest

# Flux's own expectations (fluxcd/pkg chartutil/digest_test.go, TestDigestValues).
FLUX_DIGESTS = [
    pytest.param(
        {}, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="empty"
    ),
    pytest.param(
        {
            "replicas": 3,
            "image": {"tag": "latest", "repository": "nginx"},
            "ports": [{"protocol": "TCP", "port": 8080}, {"port": 9090, "protocol": "UDP"}],
        },
        "sha256:fcdc2b0de1581a3633ada4afee3f918f6eaa5b5ab38c3fef03d5b48d3f85d9f6",
        id="value-map",
    ),
    pytest.param(
        {
            "test": {
                "632bd82398e71231a98004b6": "value4",
                "632bd817c559818a52307da2": "value3",
                "632bd80ddf416cf32fd50679": "value2",
                "632bd80235a05f4192aefade": "value1",
            },
            "replicas": 3,
        },
        "sha256:8a980fcbeadd6f05818f07e8aec14070c22250ca3d96af1fcd5f93b3e85b4d70",
        id="numeric-keys-bytewise-order",
    ),
]


@pytest.mark.parametrize(("values", "expected"), FLUX_DIGESTS)
def test_the_digest_is_fluxs(values: dict[str, Any], expected: str) -> None:
    assert values_digest(values) == expected


def test_whole_floats_digest_as_integers() -> None:
    # JSON gives Flux float64 for every number; sigs.k8s.io/yaml writes whole ones as integers.
    assert values_digest({"replicas": 3.0}) == values_digest({"replicas": 3})


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param("true", 's: "true"\n', id="bool-like-double-quoted"),
        pytest.param("012", 's: "012"\n', id="octal-like"),
        pytest.param("2024-01-02", 's: "2024-01-02"\n', id="timestamp-like"),
        pytest.param("1:20", 's: "1:20"\n', id="base60-like"),
        pytest.param("a\nb", "s: |-\n  a\n  b\n", id="multi-line-literal"),
        pytest.param("- x", "s: '- x'\n", id="indicator-single-quoted"),
        pytest.param(1.5e-7, "s: 1.5e-07\n", id="small-float"),
        pytest.param(1234567.5, "s: 1.2345675e+06\n", id="large-float"),
        pytest.param(None, "s: null\n", id="null"),
    ],
)
def test_scalars_are_encoded_as_go_yaml_v2(value: Any, encoded: str) -> None:
    assert encode_values({"s": value}).decode() == encoded


# strvals, with outcomes read from Helm's parser (helm.sh/helm/v4/pkg/strvals)
STRVALS = [
    pytest.param("a.b=1", False, {"a": {"b": 1}}, id="typed-int"),
    pytest.param("a.b=1", True, {"a": {"b": "1"}}, id="string"),
    pytest.param(
        "a=true,b=NULL,c=0,d=007",
        False,
        {"a": True, "b": None, "c": 0, "d": "007"},
        id="typed-values",
    ),
    pytest.param(r"a\.b.c=x", False, {"a.b": {"c": "x"}}, id="escaped-dot"),
    pytest.param("a[1].b=x", False, {"a": [None, {"b": "x"}]}, id="list-index"),
    pytest.param("a={x,2}", False, {"a": ["x", 2]}, id="inline-list"),
    pytest.param("a=", False, {"a": ""}, id="empty-value"),
    pytest.param("a=x=y", False, {"a": "x=y"}, id="equals-in-value"),
]


@pytest.mark.parametrize(("line", "strings_only", "expected"), STRVALS)
def test_strvals_parses_as_helm(line: str, strings_only: bool, expected: dict[str, Any]) -> None:
    parsed: dict[str, Any] = {}
    parse_into(line, parsed, strings_only=strings_only)
    assert parsed == expected


@pytest.mark.parametrize(
    ("line", "start"),
    [
        pytest.param("a=x,secret", {}, id="comma-then-key-without-value"),
        pytest.param("a.b=x", {"a": 1}, id="through-a-scalar"),
        pytest.param("a[0]=x", {"a": {}}, id="index-into-a-map"),
        pytest.param("a[65537]=x", {}, id="index-too-large"),
        pytest.param("a={x", {}, id="unterminated-list"),
    ],
)
def test_strvals_refusals_never_quote_the_line(line: str, start: dict[str, Any]) -> None:
    with pytest.raises(StrvalsError) as caught:
        parse_into(line, start)
    assert "secret" not in str(caught.value)
    assert "x" not in str(caught.value).replace("maximum", "").replace("index", "")


def test_merge_replaces_all_but_maps_and_keeps_nulls() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": {"e": 1}}
    merged = merge_maps(base, {"a": {"c": [2], "f": None}, "d": 5})
    assert merged == {"a": {"b": 1, "c": [2], "f": None}, "d": 5}
    assert base == {"a": {"b": 1, "c": [1]}, "d": {"e": 1}}


@pytest.mark.parametrize(
    ("value", "literal", "expected"),
    [
        pytest.param("8080", False, 8080, id="typed"),
        pytest.param('"8080"', False, "8080", id="double-quoted-is-a-string"),
        pytest.param("'true'", False, "true", id="single-quoted-is-a-string"),
        pytest.param("a,b={c}", True, "a,b={c}", id="literal-verbatim"),
        pytest.param("x\\y[0]", True, "x\\y[0]", id="literal-backslash"),
    ],
)
def test_set_path_value_as_flux(value: str, literal: bool, expected: Any) -> None:
    values: dict[str, Any] = {}
    set_path_value(values, r"cfg.app\.yml", value, literal=literal)
    assert values == {"cfg": {"app.yml": expected}}
