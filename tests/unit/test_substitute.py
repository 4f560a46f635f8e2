"""Post-build substitution: the envsubst syntax Flux uses, and objects substituted as YAML.

The expected expansions follow fluxcd/pkg envsubst's own tests (tldp.org's parameter
substitution examples) and Flux's kustomize-controller documentation.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import kustomize.substitute
from kustomize.substitute import (
    MAX_EXPANDED_CHARS,
    MAX_NESTING,
    SubstitutionError,
    expand,
    substitute_objects,
)

VARIABLES = {
    "var01": "abcdEFGH28ij",
    "upper": "ABCDEFGH28IJ",
    "path_name": "/home/bozo/ideas/thoughts.for.today",
    "stringZ": "abcABC123ABCabc",
    "filename": "bash.string.txt",
    "relative": "path/to/file",
    "slashed": "foo/bar/baz",
    "dotted": "foo.bar",
    "default_var": "foo",
    "empty": "",
    "unicode": "héllo",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("abcdEFGH28ij", "abcdEFGH28ij", id="text-only"),
        pytest.param("${var01}", "abcdEFGH28ij", id="variable"),
        pytest.param("a ${var01} b ${var01}", "a abcdEFGH28ij b abcdEFGH28ij", id="twice"),
        pytest.param("${unset}", "", id="unset-is-empty"),
        pytest.param("x${unset}y", "xy", id="unset-inside-text"),
        # Lengths and case
        pytest.param("${#var01}", "12", id="length"),
        pytest.param("${#unicode}", "6", id="length-in-bytes-as-go"),
        pytest.param("${#unset}", "0", id="length-of-unset"),
        pytest.param("${var01^}", "AbcdEFGH28ij", id="upper-first"),
        pytest.param("${var01^^}", "ABCDEFGH28IJ", id="upper-all"),
        pytest.param("${upper,}", "aBCDEFGH28IJ", id="lower-first"),
        pytest.param("${upper,,}", "abcdefgh28ij", id="lower-all"),
        # Substrings
        pytest.param("${path_name:11}", "ideas/thoughts.for.today", id="substring-offset"),
        pytest.param("${path_name:11:5}", "ideas", id="substring-offset-length"),
        pytest.param("${path_name:100}", "", id="substring-offset-past-end"),
        pytest.param("${path_name:30:100}", "today", id="substring-length-past-end"),
        pytest.param("${var01:1:-1}", "bcdEFGH28i", id="substring-negative-length"),
        pytest.param("${var01:8:-8}", "", id="substring-negative-length-before-offset"),
        pytest.param("${var01: -2}", "abcdEFGH28ij", id="substring-offset-not-a-number"),
        pytest.param("${var01:2:x}", "abcdEFGH28ij", id="substring-length-not-a-number"),
        pytest.param("${var01:${#default_var}:2}", "dE", id="substring-nested-offset"),
        # Defaults: every one means "the value, or the word when the value is empty"
        pytest.param("${var01=xyz}", "abcdEFGH28ij", id="assign-default-unused"),
        pytest.param("${unset=xyz}", "xyz", id="assign-default"),
        pytest.param("${unset:=xyz}", "xyz", id="colon-assign-default"),
        pytest.param("${empty:=xyz}", "xyz", id="colon-assign-default-empty"),
        pytest.param("${unset:-xyz}", "xyz", id="colon-minus-default"),
        pytest.param("${var01:-xyz}", "abcdEFGH28ij", id="colon-minus-default-unused"),
        pytest.param("${unset:+xyz}", "xyz", id="colon-plus-is-a-default-too"),
        pytest.param("${var01:+xyz}", "abcdEFGH28ij", id="colon-plus-keeps-the-value"),
        pytest.param("${unset:?xyz}", "xyz", id="colon-question-is-a-default-too"),
        pytest.param("${unset:=}", "", id="empty-default"),
        pytest.param("${unset:=a b: c}", "a b: c", id="default-with-spaces-and-colon"),
        pytest.param("${unset:=$x}", "$x", id="default-keeps-dollar"),
        pytest.param("${unset:=$$x}", "$$x", id="default-has-no-escapes"),
        # Nested defaults
        pytest.param("something ${var=${default_var}}", "something foo", id="nested-default"),
        pytest.param("${var=${default_var}-suffix}", "foo-suffix", id="nested-then-text"),
        pytest.param("${var=prefix${default_var}-suffix}", "prefixfoo-suffix", id="text-nested"),
        pytest.param("${var=${var01^^}}", "ABCDEFGH28IJ", id="nested-operator"),
        pytest.param("${a:=${b:=${c:=deep}}}", "deep", id="three-levels"),
        # Removing a prefix or suffix (shell patterns; * also crosses /)
        pytest.param("${filename#*.}", "string.txt", id="shortest-prefix"),
        pytest.param("${relative#*/}", "to/file", id="shortest-prefix-slash"),
        pytest.param("${filename##*.}", "txt", id="longest-prefix"),
        pytest.param("${relative##*/}", "file", id="longest-prefix-crosses-slash"),
        pytest.param("${filename%.*}", "bash.string", id="shortest-suffix"),
        pytest.param("${filename%%.*}", "bash", id="longest-suffix"),
        pytest.param("${filename#b?sh}", ".string.txt", id="question-mark"),
        pytest.param("${filename#[a-c]}", "ash.string.txt", id="character-class"),
        pytest.param("${filename#[^a-c]}", "bash.string.txt", id="negated-class-no-match"),
        pytest.param("${filename#\\b}", "ash.string.txt", id="escaped-character"),
        pytest.param("${filename#[}", "bash.string.txt", id="malformed-pattern-keeps-value"),
        pytest.param("${filename#x*}", "bash.string.txt", id="no-match"),
        # Replacing
        pytest.param("${stringZ/abc/xyz}", "xyzABC123ABCabc", id="replace-first"),
        pytest.param("${stringZ//abc/xyz}", "xyzABC123ABCxyz", id="replace-all"),
        pytest.param("${stringZ/#abc/XYZ}", "XYZABC123ABCabc", id="replace-prefix"),
        pytest.param("${stringZ/%abc/XYZ}", "abcABC123ABCXYZ", id="replace-suffix"),
        pytest.param("${stringZ/#123/XYZ}", "abcABC123ABCabc", id="replace-prefix-no-match"),
        pytest.param("${var01/#/prefix-}", "prefix-abcdEFGH28ij", id="empty-prefix-prepends"),
        pytest.param("${var01/%/-suffix}", "abcdEFGH28ij-suffix", id="empty-suffix-appends"),
        pytest.param("${dotted/./}", "foobar", id="replace-with-nothing"),
        pytest.param("${stringZ/c}a/}", "abcABC123ABCabc", id="pattern-runs-past-a-brace"),
        pytest.param("${slashed/\\//-}", "foo-bar/baz", id="escaped-slash"),
        pytest.param("${slashed//\\//-}", "foo-bar-baz", id="escaped-slash-all"),
        pytest.param("${dotted/./$$}", "foo$bar", id="escaped-dollar-in-replacement"),
        pytest.param("${dotted/./${default_var}}", "foofoobar", id="nested-replacement"),
        # Escapes and what is not an expression
        pytest.param("$${var01}", "${var01}", id="escaped-expression"),
        pytest.param("$${var01:=x}", "${var01:=x}", id="escaped-default"),
        pytest.param("$$${var01}", "$abcdEFGH28ij", id="dollar-then-expression"),
        pytest.param("$$$${var01}", "$${var01}", id="two-escapes"),
        pytest.param("a$$b", "a$b", id="double-dollar-anywhere"),
        pytest.param("$var01", "$var01", id="no-braces-untouched"),
        pytest.param("cost: 5$", "cost: 5$", id="trailing-dollar"),
        pytest.param("{var01} $ {x}", "{var01} $ {x}", id="braces-without-dollar"),
        pytest.param("\\\\something ${default_var}", "\\\\something foo", id="backslash-in-text"),
        pytest.param(
            "some text ${var01}$${var$${var01}$var01${var01}",
            "some text abcdEFGH28ij${var${var01}$var01abcdEFGH28ij",
            id="mixed-escapes",
        ),
        pytest.param(
            "something $${var=${default_var}}", "something ${var=foo}", id="escape-then-nested"
        ),
        # Names: what envsubst reads as a name, whatever Flux accepts as a variable
        pytest.param("${var01}_x", "abcdEFGH28ij_x", id="name-ends-at-brace"),
        pytest.param("${1abc}", "", id="name-may-start-with-digit"),
        pytest.param("${héllo}", "", id="unicode-name-is-parsed"),
    ],
)
def test_expand(template: str, expected: str) -> None:
    assert expand(template, VARIABLES) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("${}", "unable to parse variable name", id="empty-name"),
        pytest.param("${ var}", "unable to parse variable name", id="space-before-name"),
        pytest.param("${var", "missing closing brace", id="unterminated"),
        pytest.param("${var }", "missing closing brace", id="space-after-name"),
        pytest.param("${a.b}", "missing closing brace", id="dot-in-name"),
        pytest.param("${var-default}", "missing closing brace", id="minus-without-colon"),
        pytest.param("${var+alt}", "missing closing brace", id="plus-without-colon"),
        pytest.param("${var?msg}", "missing closing brace", id="question-without-colon"),
        pytest.param("${var:=abc", "unable to parse substitution within function", id="eof"),
        pytest.param("${var:}", "unable to parse substitution within function", id="colon"),
        pytest.param("${var:1x", "bad substitution", id="substring-unterminated"),
        pytest.param("${var#}", "unable to parse substitution within function", id="hash"),
        pytest.param("${var/x}", "bad substitution", id="replace-without-slash"),
        pytest.param("${var^x}", "bad substitution", id="casing-then-text"),
        pytest.param("${#}", "bad substitution", id="length-without-name"),
        pytest.param("${#var:1}", "bad substitution", id="length-with-operator"),
        pytest.param("${a:=${b}", "unable to parse substitution within function", id="nested"),
    ],
)
def test_malformed_expressions_are_errors(template: str, message: str) -> None:
    with pytest.raises(SubstitutionError, match=message):
        expand(template, VARIABLES)


def nested(depth: int) -> str:
    return "${v:=" * (depth - 1) + "${v:=deep}" + "}" * (depth - 1)


def test_expressions_nest_up_to_the_limit() -> None:
    assert expand(nested(MAX_NESTING), {}) == "deep"


def test_deeper_nesting_is_an_error() -> None:
    with pytest.raises(SubstitutionError, match=f"nested more than {MAX_NESTING} deep"):
        expand(nested(MAX_NESTING + 1), {})


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        pytest.param("${big}" * 9, {"big": "x" * (MAX_EXPANDED_CHARS // 8)}, id="many-references"),
        pytest.param(
            "${v//a/" + "b" * 1000 + "}", {"v": "a" * (MAX_EXPANDED_CHARS // 500)}, id="replace-all"
        ),
        pytest.param(
            "${v:=${big}${big}${big}}", {"big": "x" * (MAX_EXPANDED_CHARS // 2)}, id="in-a-default"
        ),
    ],
)
def test_text_cannot_grow_past_the_limit(template: str, variables: dict[str, str]) -> None:
    with pytest.raises(SubstitutionError, match=f"limit of {MAX_EXPANDED_CHARS} characters"):
        expand(template, variables)


def test_text_up_to_the_limit_is_fine() -> None:
    assert len(expand("${big}${big}", {"big": "x" * (MAX_EXPANDED_CHARS // 2)})) == (
        MAX_EXPANDED_CHARS // 2 * 2
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("${v:" + "9" * 5000 + "}", "abc", id="start-past-int64"),
        pytest.param("${v:1:" + "9" * 30 + "}", "abc", id="length-past-int64"),
        pytest.param("${v:1:9223372036854775807}", "bc", id="length-at-int64-max"),
    ],
)
def test_bounds_past_int64_keep_the_value_as_go_does(template: str, expected: str) -> None:
    assert expand(template, {"v": "abc"}) == expected


# Strict mode (the StrictPostBuildSubstitutions feature gate)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("${var01}", "abcdEFGH28ij", id="set"),
        pytest.param("${empty}", "", id="set-but-empty"),
        pytest.param("${unset:=default}", "default", id="colon-assign"),
        pytest.param("${unset=default}", "default", id="assign"),
        pytest.param("${unset:-default}", "default", id="colon-minus"),
        pytest.param("${unset:+default}", "default", id="colon-plus"),
        pytest.param("${unset:?default}", "default", id="colon-question"),
        pytest.param("${unset:=}", "", id="empty-default"),
        pytest.param("$${unset}", "${unset}", id="escaped"),
        pytest.param("$unset", "$unset", id="no-braces"),
    ],
)
def test_strict_mode_accepts_set_variables_and_defaults(template: str, expected: str) -> None:
    assert expand(template, VARIABLES, strict=True) == expected


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("${missing}", id="plain"),
        pytest.param("text ${var01} ${missing}", id="after-a-set-one"),
        pytest.param("${#missing}", id="length"),
        pytest.param("${missing^^}", id="upper"),
        pytest.param("${missing,}", id="lower"),
        pytest.param("${missing:0}", id="substring"),
        pytest.param("${missing:0:10}", id="substring-length"),
        pytest.param("${missing/a/b}", id="replace"),
        pytest.param("${missing//a/b}", id="replace-all"),
        pytest.param("${missing#a}", id="trim-prefix"),
        pytest.param("${missing%%a}", id="trim-suffix"),
        pytest.param("${var01:=${missing}}", id="in-an-unused-default"),
    ],
)
def test_strict_mode_rejects_an_unset_variable_without_default(template: str) -> None:
    with pytest.raises(SubstitutionError, match="variable 'missing' is not set"):
        expand(template, VARIABLES, strict=True)


# Objects


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": spec,
    }


def config_map(data: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", **metadata},
        "data": data,
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        pytest.param("${count}", "3", 3, id="string-becomes-int"),
        pytest.param("${count}", "0x1F", 31, id="hex"),
        pytest.param("${count}", "0755", 493, id="octal"),
        pytest.param("${count}", "1_000", 1000, id="underscores"),
        pytest.param("${count}", "1.5", 1.5, id="float"),
        pytest.param("${count}", "1e3", 1000.0, id="exponent"),
        pytest.param("${count}", "true", True, id="bool"),
        pytest.param("${count}", "on", True, id="yaml-1.1-on"),
        pytest.param("${count}", "n", False, id="go-yaml-n"),
        pytest.param("${count}", "null", None, id="null"),
        pytest.param("${count}", "", None, id="empty-is-null"),
        pytest.param("${count}", "12:30", "12:30", id="no-base-60"),
        pytest.param("${count}", "2024-01-02", "2024-01-02", id="dates-stay-strings"),
        pytest.param("${count}", "[a, b]", ["a", "b"], id="flow-list"),
        pytest.param("${count}", "{a: 1}", {"a": 1}, id="flow-map"),
        pytest.param("v${count}", "3", "v3", id="text-around-stays-string"),
        pytest.param("${count}${count}", "1", 11, id="two-make-a-number"),
        pytest.param("'${count}'", "3", "'3'", id="quotes-in-the-value-are-kept"),
        pytest.param("${quote}${count}${quote}", "3", "3", id="flux-quote-trick"),
    ],
)
def test_substituted_values_take_the_yaml_type_of_the_text(
    field: str, value: str, expected: Any
) -> None:
    [result] = substitute_objects([deployment(replicas=field)], {"count": value, "quote": '"'})

    assert result["spec"]["replicas"] == expected
    assert type(result["spec"]["replicas"]) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(value, id=repr(value))
        for value in [
            "y",
            "no",
            "On",
            "12:30",
            "190:20:30",
            "2024-01-02",
            "2024-01-02T03:04:05Z",
            "0755",
            "08",
            "1e3",
            "0b_",
            ".inf",
            "~",
            "",
            "null",
            "=",
            "<<",
            "*alias",
            "&anchor",
            "!tag",
            "- item",
            "a: b",
            "#comment",
            "'quoted'",
            '"double"',
            "line one\nline two\n",
            "trailing space \nnext",
            "tab\there",
            "ünïcödé",
            "x" * 500 + " " + "y" * 500,
        ]
    ],
)
def test_strings_survive_the_yaml_round_trip(value: str) -> None:
    obj = config_map({"value": value, "other": "${x}"})

    [result] = substitute_objects([obj], {"x": "1"})

    assert result["data"]["value"] == value


def test_non_string_values_survive_the_yaml_round_trip() -> None:
    spec = {"replicas": 3, "ratio": 0.5, "big": 2**62, "on": True, "none": None, "list": [1, "2"]}
    obj = deployment(**spec, image="${image}")

    [result] = substitute_objects([obj], {"image": "nginx"})

    assert result["spec"] == {**spec, "image": "nginx"}


def test_a_multi_line_script_gets_the_value_verbatim() -> None:
    script = '#!/bin/sh\necho "${greeting}, $USER" > /tmp/out\nexit 0\n'
    obj = config_map({"run.sh": script})

    [result] = substitute_objects([obj], {"greeting": 'it\'s "quoted": yes'})

    assert result["data"]["run.sh"] == (
        '#!/bin/sh\necho "it\'s "quoted": yes, $USER" > /tmp/out\nexit 0\n'
    )


def test_keys_and_names_are_substituted_too() -> None:
    obj = config_map({"${key}": "v"}, namespace="${ns}")

    [result] = substitute_objects([obj], {"key": "7", "ns": "team-a"})

    assert result["data"] == {"7": "v"}
    assert result["metadata"]["namespace"] == "team-a"


def test_objects_keep_their_order_and_the_input_is_not_changed() -> None:
    objects = [config_map({"n": f"${{v{index}}}"}, namespace=f"ns{index}") for index in range(3)]
    before = copy.deepcopy(objects)

    result = substitute_objects(objects, {"v0": "a", "v1": "b", "v2": "c"})

    assert [obj["data"]["n"] for obj in result] == ["a", "b", "c"]
    assert objects == before


@pytest.mark.parametrize(
    ("metadata", "substituted"),
    [
        pytest.param(
            {"labels": {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}}, False, id="label"
        ),
        pytest.param(
            {"annotations": {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}},
            False,
            id="annotation",
        ),
        pytest.param(
            {"annotations": {"kustomize.toolkit.fluxcd.io/substitute": "Disabled"}},
            True,
            id="value-is-case-sensitive",
        ),
        pytest.param(
            {"annotations": {"kustomize.toolkit.fluxcd.io/substitute": "enabled"}},
            True,
            id="enabled",
        ),
        pytest.param({"labels": None, "annotations": None}, True, id="empty-metadata"),
    ],
)
def test_objects_opt_out_with_a_label_or_annotation(
    metadata: dict[str, Any], substituted: bool
) -> None:
    obj = config_map({"script": "echo ${x}"}, **metadata)

    [result] = substitute_objects([obj], {"x": "1"})

    assert result["data"]["script"] == ("echo 1" if substituted else "echo ${x}")


def test_an_opted_out_object_may_hold_what_would_not_parse() -> None:
    opted_out = config_map(
        {"script": "echo ${broken"},
        annotations={"kustomize.toolkit.fluxcd.io/substitute": "disabled"},
    )

    [result] = substitute_objects([opted_out], {"x": "1"}, strict=True)

    assert result == opted_out


def test_nothing_is_substituted_without_variables() -> None:
    obj = config_map({"a": "${x:=default}", "b": "${broken"})

    assert substitute_objects([obj], {}, strict=True) == [obj]


def test_always_substitutes_even_without_variables() -> None:
    obj = config_map({"a": "${x:=default}", "b": "${y}"})

    [result] = substitute_objects([obj], {}, always=True)

    assert result["data"] == {"a": "default", "b": None}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my-var", id="dash"),
        pytest.param("1st", id="leading-digit"),
        pytest.param("a.b", id="dot"),
        pytest.param("", id="empty"),
        pytest.param("héllo", id="non-ascii-letter"),
        pytest.param("x\n", id="trailing-newline"),
    ],
)
def test_invalid_variable_names_are_an_error(name: str) -> None:
    with pytest.raises(
        SubstitutionError, match=r"(?s)invalid variable name .*must match"
    ) as caught:
        substitute_objects([config_map({"a": "${ok}"})], {"ok": "1", name: "secret-value"})

    assert repr(name) in str(caught.value)
    assert "secret-value" not in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("_", id="underscore"),
        pytest.param("_private", id="leading-underscore"),
        pytest.param("CamelCase_9", id="mixed"),
    ],
)
def test_valid_variable_names(name: str) -> None:
    [result] = substitute_objects([config_map({"a": f"${{{name}}}"})], {name: "v"})

    assert result["data"]["a"] == "v"


def test_strict_mode_names_the_object_and_the_variable() -> None:
    with pytest.raises(SubstitutionError) as caught:
        substitute_objects([deployment(image="${image}")], {"tag": "1"}, strict=True)

    assert str(caught.value) == "Deployment/apps/app: variable 'image' is not set (strict mode)"


def test_without_strict_mode_an_unset_variable_is_empty() -> None:
    [result] = substitute_objects([deployment(image="nginx-${tag}")], {"other": "1"})

    assert result["spec"]["image"] == "nginx-"


def test_a_syntax_error_names_the_object() -> None:
    with pytest.raises(SubstitutionError, match=r"^ConfigMap/settings: missing closing brace$"):
        substitute_objects([config_map({"a": "${oops"})], {"x": "1"})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("[unclosed hunter2", id="unclosed"),
        pytest.param("*hunter2", id="undefined-alias"),
        pytest.param("!hunter2 x", id="unknown-tag"),
        pytest.param('"hunter2', id="unclosed-quote"),
        pytest.param("x\n  hunter2: [", id="nested"),
    ],
)
def test_a_value_that_breaks_the_yaml_is_named_but_not_shown(value: str) -> None:
    obj = config_map({"a": "${x}"})

    with pytest.raises(SubstitutionError) as caught:
        substitute_objects([obj], {"x": value})

    assert str(caught.value).startswith("ConfigMap/settings: not valid YAML after substitution")
    assert "hunter2" not in str(caught.value)


def test_a_value_that_is_not_json_is_an_error() -> None:
    with pytest.raises(SubstitutionError, match="JSON cannot represent"):
        substitute_objects([config_map({"a": "${x}"})], {"x": "!!binary aGk="})


def test_the_public_surface() -> None:
    names = set(kustomize.substitute.__all__)

    assert names == {name for name in names if hasattr(kustomize.substitute, name)}
    assert {"expand", "load_variables", "substitute_objects", "SubstitutionError"} <= names
