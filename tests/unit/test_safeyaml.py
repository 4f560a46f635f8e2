"""controllers.safeyaml: YAML as PyYAML's safe loader reads it, within limits on size, nodes,
depth and alias expansion; every failure one YAMLLoadError that never quotes the input."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
import yaml

from controllers import safeyaml
from controllers.safeyaml import Limits, YAMLLoadError, load, load_all
from tests.fuzz import bombs

PURE = yaml.SafeLoader
C = getattr(yaml, "CSafeLoader", None)
needs_libyaml = pytest.mark.skipif(C is None, reason="PyYAML built without libyaml")
WHAT = "'app/manifest.yaml'"
SECRET = "hunter2"


def deployment(index: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"web-{index}", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
                        ]
                    },
                },
            },
        }
    )


# What real manifests use: read exactly as PyYAML's safe loader reads them.

ANCHORED_ENV = """\
base: &env [{name: A, value: "1"}, {name: B, value: "2"}]
containers:
  - {name: one, env: *env}
  - {name: two, env: *env}
"""
MERGED = """\
defaults: &defaults {cpu: 100m, memory: 64Mi}
small: {<<: *defaults}
large: {<<: *defaults, memory: 1Gi}
"""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("apiVersion: v1\nkind: ConfigMap\ndata: {a: '1'}\n", id="one-document"),
        pytest.param("a: 1\n---\nb: [1, 2.5, true, null]\n---\n", id="several-documents"),
        pytest.param("", id="empty"),
        pytest.param("---\n---\n", id="empty-documents"),
        pytest.param(ANCHORED_ENV, id="anchor-reused"),
        pytest.param(MERGED, id="merge-keys"),
        pytest.param("t: 2024-01-02\nb: !!binary aGk=\ns: !!set {a: null}\n", id="yaml-1.1-types"),
        pytest.param("---\n".join(deployment(i) for i in range(200)), id="200-deployments"),
    ],
)
def test_reads_what_pyyaml_reads(text: str) -> None:
    assert load_all(text, what=WHAT) == list(yaml.load_all(text, Loader=PURE))


def test_a_manifest_set_far_larger_than_real_ones_is_within_the_defaults() -> None:
    one = deployment(0)
    text = "---\n".join(one.replace("web-0", f"web-{i}") for i in range(10_000))

    assert len(text) > 3_000_000  # 330,000 nodes
    assert len(load_all(text.encode(), what=WHAT)) == 10_000


# Aliases: expansion within the limit is fine, past it refused before anything expands.


def laughs_expanding_to(alias_nodes: int) -> str:
    """An anchored list of 10 scalars (11 nodes), aliased so that aliases add ``alias_nodes``."""
    assert alias_nodes % 11 == 0
    return "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: [" + ", ".join(["*a"] * (alias_nodes // 11)) + "]\n"


@pytest.mark.parametrize(
    ("text", "limit", "accepted"),
    [
        pytest.param(laughs_expanding_to(1100), 1100, True, id="at-the-limit"),
        pytest.param(laughs_expanding_to(1111), 1100, False, id="one-alias-past-the-limit"),
        # b: 9 aliases of a (10 nodes each); c: 9 aliases of b (1 + 90 nodes each).
        pytest.param(bombs.flow_laughs(3, 9), 90 + 819, True, id="nested-at-the-limit"),
        pytest.param(bombs.flow_laughs(3, 9), 90 + 818, False, id="nested-past-the-limit"),
        pytest.param(ANCHORED_ENV, 2 * 11, True, id="anchors-of-a-real-manifest"),
    ],
)
def test_aliases_are_accepted_up_to_the_limit(text: str, limit: int, accepted: bool) -> None:
    limits = Limits(max_alias_nodes=limit)

    if accepted:
        assert load_all(text, what=WHAT, limits=limits) == list(yaml.load_all(text, Loader=PURE))
    else:
        with pytest.raises(YAMLLoadError, match="aliases expanding past") as caught:
            load_all(text, what=WHAT, limits=limits)
        assert caught.value.limit == limit


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(bombs.SUBSTITUTION_BOMB, "aliases expanding past", id="flow-9x9"),
        pytest.param(bombs.block_laughs(10, 10), "aliases expanding past", id="block-10x10"),
        pytest.param(bombs.merge_bomb(10, 10), "aliases expanding past", id="merge-keys"),
        pytest.param(
            "a: &a [" + ",".join(["x"] * 1000) + "]\nb: [" + ",".join(["*a"] * 200) + "]\n",
            "aliases expanding past",
            id="one-anchor-many-aliases",
        ),
        pytest.param(bombs.multi_document(20, 4, 10), "aliases expanding past", id="per-input"),
        pytest.param(bombs.deep_chain(20, 20), "nested deeper than", id="deep-by-aliases"),
    ],
)
def test_alias_bombs_are_refused_without_expanding(text: str, problem: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(YAMLLoadError) as caught:
            load_all(text, what=WHAT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert problem in str(caught.value)
    assert caught.value.limit is not None
    assert str(caught.value).startswith(f"{WHAT}: YAML ")
    assert peak < 1 << 20, f"the check itself held {peak} bytes"


@pytest.mark.parametrize(
    "text", [pytest.param(text, id=name) for name, text in bombs.RECURSIVE.items()]
)
def test_a_recursive_alias_is_refused(text: str) -> None:
    with pytest.raises(YAMLLoadError) as caught:
        load_all(text, what=WHAT)

    assert str(caught.value) == (
        f"{WHAT}: not valid YAML (line 1): an alias inside the node it refers to"
    )


# Size, nodes and depth.


@pytest.mark.parametrize(
    ("data", "accepted"),
    [
        pytest.param("a: " + "x" * 97, True, id="at-the-limit"),
        pytest.param("a: " + "x" * 98, False, id="one-byte-past"),
        pytest.param(b"a: " + b"x" * 98, False, id="bytes-one-byte-past"),
        pytest.param("a: " + "é" * 48, True, id="text-at-the-limit-in-utf8-bytes"),
        pytest.param("a: " + "é" * 49, False, id="text-counted-in-utf8-bytes"),
        pytest.param("a: " + "é" * 48 + "\n" * 10_000, False, id="far-past"),
    ],
)
def test_the_size_limit(data: str | bytes, accepted: bool) -> None:
    limits = Limits(max_bytes=100)

    if accepted:
        assert load(data, what=WHAT, limits=limits) == yaml.safe_load(data)
    else:
        with pytest.raises(YAMLLoadError) as caught:
            load(data, what=WHAT, limits=limits)
        assert str(caught.value) == f"{WHAT}: over the limit of 100 bytes of YAML"
        assert caught.value.limit == 100


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        pytest.param("[" + ",".join("x" * 99) + "]", True, id="list-of-99-is-100-nodes"),
        pytest.param("[" + ",".join("x" * 100) + "]", False, id="101-nodes"),
        pytest.param("\n---\n".join(["[x, x, x, x]"] * 20), True, id="20-documents-of-5"),
        pytest.param("\n---\n".join(["[x, x, x, x]"] * 21), False, id="counted-per-input"),
        pytest.param("{" + ", ".join(f"k{i}: v" for i in range(50)) + "}", False, id="keys-count"),
    ],
)
def test_the_node_limit(text: str, accepted: bool) -> None:
    limits = Limits(max_nodes=100)

    if accepted:
        load_all(text, what=WHAT, limits=limits)
    else:
        with pytest.raises(YAMLLoadError, match=r"over the limit of 100 YAML nodes \(line"):
            load_all(text, what=WHAT, limits=limits)


def nested(levels: int) -> str:
    return "[" * (levels - 1) + "x" + "]" * (levels - 1)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        pytest.param(nested(10), True, id="at-the-limit"),
        pytest.param(nested(11), False, id="one-past"),
        pytest.param("a: {b: {c: {d: {e: x}}}}", True, id="mapping-keys-and-values"),
        pytest.param("a: &a [[[[[[x]]]]]]\n", True, id="an-anchored-node-within"),
        pytest.param("a: &a [[[[[[x]]]]]]\nb: [[[*a]]]\n", False, id="through-an-alias"),
        pytest.param("\n".join(" " * i + "- " for i in range(0, 24, 2)), False, id="block"),
    ],
)
def test_the_depth_limit(text: str, accepted: bool) -> None:
    limits = Limits(max_depth=10)

    if accepted:
        load_all(text, what=WHAT, limits=limits)
    else:
        with pytest.raises(YAMLLoadError, match="nested deeper than the limit of 10 levels"):
            load_all(text, what=WHAT, limits=limits)


def test_nesting_past_what_the_pure_python_composer_can_recurse_is_refused() -> None:
    with pytest.raises(YAMLLoadError, match="nested deeper than the limit of 200 levels"):
        load_all(nested(5000), what=WHAT, loader=PURE)


# Errors: one line, naming the input, never quoting it.


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(f"a: *{SECRET}", id="undefined-alias"),
        pytest.param(f"a: !{SECRET} x", id="unknown-tag"),
        pytest.param(f"a: !x'{SECRET}\"{SECRET} x", id="unknown-tag-with-quotes"),
        pytest.param(f"a: !!int {SECRET}", id="not-an-int"),
        pytest.param(f"a: !!bool {SECRET}", id="not-a-bool"),
        pytest.param(f"a: !!timestamp {SECRET}", id="not-a-timestamp"),
        pytest.param("a: !!float ''", id="empty-float"),
        pytest.param(f"a: &{SECRET} 1\nb: &{SECRET} 2\nc: [&{SECRET} x]\n", id="duplicate-anchor"),
        pytest.param(f"a: '{SECRET}\n", id="unclosed-quote"),
        pytest.param(f"a: b\n\t{SECRET}: c", id="tab"),
        pytest.param(f"{SECRET}: [\n  {SECRET}", id="unclosed-list"),
        pytest.param(f"a: {SECRET}\x01", id="control-character"),
        pytest.param(f"a: {SECRET}".encode() + b"\xc3", id="truncated-utf8"),
        pytest.param(b"\xff\xfe\x00", id="truncated-utf16"),
        pytest.param(f"a: 1\n---\nb: {SECRET}", id="two-documents-for-load"),
        pytest.param("a: 1" + "0" * 5000, id="int-past-python-digit-limit"),
    ],
)
def test_an_error_names_the_input_on_one_line_and_never_quotes_it(data: str | bytes) -> None:
    for loader in [PURE] + ([C] if C else []):
        with pytest.raises(YAMLLoadError) as caught:
            load(data, what=WHAT, loader=loader)

        message = str(caught.value)
        assert message.startswith(f"{WHAT}: not valid YAML")
        assert "\n" not in message
        assert SECRET not in message
        assert caught.value.limit is None


def test_a_name_with_a_line_break_stays_on_one_line() -> None:
    with pytest.raises(YAMLLoadError) as caught:
        load("a: [", what="'app/evil\nname.yaml'")

    assert str(caught.value).startswith("'app/evil\\nname.yaml': not valid YAML (line ")
    assert "\n" not in str(caught.value)


def test_load_reads_one_document_or_none() -> None:
    assert load("a: 1\n", what=WHAT) == {"a": 1}
    assert load("", what=WHAT) is None
    assert load("---\n", what=WHAT) is None


# The two loaders


AGREEMENT = {
    "one-document": "a: 1\n",
    "anchors": ANCHORED_ENV,
    "merge": MERGED,
    "types": "i: 0x1f\no: 0o17\nf: 1e3\nb: yes\nn: ~\nt: 2001-12-14t21:59:43.10-05:00\n",
    "flow": "{a: [1, {b: c}], d: 'e', f: \"g\\n\"}",
    "multi": "a\n---\nb\n...\n---\nc\n",
    "deployments": "---\n".join(deployment(i) for i in range(5)),
    "bomb": bombs.SUBSTITUTION_BOMB,
    "merge-bomb": bombs.merge_bomb(10, 10),
    "deep": nested(300),
    "too-many-nodes": "[" + ",".join("x" * 10_000) + "]",
    "recursive": bombs.RECURSIVE["self-deeper"],
    "undefined-alias": "a: *b",
    "bad-int": "!!int x",
    "syntax": "a: [b",
}


def outcome(text: str, loader: Any) -> Any:
    try:
        return ("loaded", load_all(text, what=WHAT, loader=loader, limits=Limits(max_nodes=10_000)))
    except YAMLLoadError as err:
        # Where a syntax error is reported differs between the parsers; where a limit is
        # crossed does not.
        return ("refused", err.limit, err.line if err.limit is not None else None)


@needs_libyaml
@pytest.mark.parametrize("text", [pytest.param(text, id=name) for name, text in AGREEMENT.items()])
def test_libyaml_and_pure_python_loaders_agree(text: str) -> None:
    assert outcome(text, C) == outcome(text, PURE)


def test_the_default_loader_is_libyamls_when_present() -> None:
    assert safeyaml.Loader is (C or PURE)


class UpperLoader(safeyaml.Loader):
    pass


def _construct_upper(loader: UpperLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node)).upper()  # type: ignore[arg-type]


UpperLoader.add_constructor("!upper", _construct_upper)


def test_a_loader_subclass_keeps_its_constructors_and_the_limits() -> None:
    assert load("a: !upper shout", what=WHAT, loader=UpperLoader) == {"a": "SHOUT"}
    with pytest.raises(YAMLLoadError, match="aliases expanding past"):
        load(bombs.SUBSTITUTION_BOMB, what=WHAT, loader=UpperLoader)
