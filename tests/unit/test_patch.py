"""Merge patches against a snapshot, and laying owned conditions onto the newest list."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from controllers.patch import _merge_conditions, merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, MergePatch(Target, Patch), on a copy of ``target``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply_merge_patch(result.get(name), value)
    return result


CONDITION = {"type": "Ready", "status": "True", "reason": "Succeeded", "message": ""}


@pytest.mark.parametrize(
    ("before", "after", "patch"),
    [
        pytest.param({"a": 1}, {"a": 1}, {}, id="no-op"),
        pytest.param({}, {}, {}, id="empty"),
        pytest.param(
            {"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2}]}}, {}, id="nested-no-op"
        ),
        pytest.param({}, {"a": 1}, {"a": 1}, id="added"),
        pytest.param({"a": 1, "b": 2}, {"b": 2}, {"a": None}, id="removed"),
        pytest.param({"a": 1}, {"a": "1"}, {"a": "1"}, id="changed-type"),
        pytest.param({"a": 1, "b": 2}, {"a": 3, "b": 2}, {"a": 3}, id="changed"),
        pytest.param(
            {"artifact": {"revision": "main@sha1:1", "size": 10}, "observedGeneration": 1},
            {"artifact": {"revision": "main@sha1:2", "size": 10}, "observedGeneration": 1},
            {"artifact": {"revision": "main@sha1:2"}},
            id="nested-changed",
        ),
        pytest.param(
            {"artifact": {"revision": "r", "metadata": {"x": "1"}}},
            {"artifact": {"revision": "r"}},
            {"artifact": {"metadata": None}},
            id="nested-removed",
        ),
        pytest.param(
            {"a": {"b": {"c": 1}}},
            {"a": {"b": {"c": 1, "d": 2}}},
            {"a": {"b": {"d": 2}}},
            id="deeply-nested-added",
        ),
        pytest.param({"a": 1}, {"a": {"b": 1}}, {"a": {"b": 1}}, id="scalar-to-dict"),
        pytest.param({"a": {"b": 1}}, {"a": 1}, {"a": 1}, id="dict-to-scalar"),
        pytest.param({"a": {"b": 1}}, {"a": {}}, {"a": {"b": None}}, id="dict-emptied"),
        pytest.param(
            {"conditions": [CONDITION, {**CONDITION, "type": "FetchFailed"}]},
            {"conditions": [CONDITION]},
            {"conditions": [CONDITION]},
            id="list-replaced-whole",
        ),
        pytest.param(
            {"conditions": [{**CONDITION, "message": "old"}]},
            {"conditions": [{**CONDITION, "message": "new"}]},
            {"conditions": [{**CONDITION, "message": "new"}]},
            id="list-of-dicts-not-merged",
        ),
        pytest.param({"a": [1, 2]}, {"a": []}, {"a": []}, id="list-emptied"),
        pytest.param(
            {"a": 1, "b": {"c": 1}, "d": [1]},
            {"b": {"c": 2}, "d": [1], "e": True},
            {"a": None, "b": {"c": 2}, "e": True},
            id="added-removed-changed-together",
        ),
    ],
)
def test_merge_patch(before: dict[str, Any], after: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(before, after) == patch
    assert apply_merge_patch(before, patch) == after


def test_merge_patch_copies_values_from_after() -> None:
    after: dict[str, Any] = {"conditions": [dict(CONDITION)], "artifact": {"url": "http://a"}}

    patch = merge_patch({}, after)
    patch["conditions"][0]["status"] = "False"
    patch["artifact"]["url"] = "http://b"

    assert after == {"conditions": [CONDITION], "artifact": {"url": "http://a"}}


KEYS = ["a", "b", "c", "observedGeneration", "conditions"]


def random_value(rng: random.Random, depth: int) -> Any:
    """A JSON value without nulls (a merge patch cannot set a field to null)."""
    kind = rng.choice(["int", "str", "bool", "list", "dict", "dict"] if depth else ["int", "str"])
    if kind == "int":
        return rng.randint(0, 3)
    if kind == "str":
        return rng.choice(["x", "y", ""])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "list":
        return [random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return random_dict(rng, depth - 1)


def random_dict(rng: random.Random, depth: int) -> dict[str, Any]:
    return {key: random_value(rng, depth) for key in rng.sample(KEYS, rng.randint(0, len(KEYS)))}


def mutated(rng: random.Random, value: dict[str, Any], depth: int) -> dict[str, Any]:
    """``value`` with some keys removed, added, changed or recursively mutated."""
    result = copy.deepcopy(value)
    for key in KEYS:
        action = rng.choice(["keep", "keep", "drop", "set", "recurse"])
        if action == "drop":
            result.pop(key, None)
        elif action == "set":
            result[key] = random_value(rng, depth)
        elif action == "recurse" and isinstance(result.get(key), dict):
            result[key] = mutated(rng, result[key], depth - 1)
    return result


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"seed-{seed}") for seed in range(10)])
def test_applying_the_merge_patch_to_before_gives_after(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        before = random_dict(rng, 3)
        after = mutated(rng, before, 3)
        before_copy = copy.deepcopy(before)

        patch = merge_patch(before, after)

        assert apply_merge_patch(before, patch) == after, (before, after, patch)
        assert (patch == {}) == (before == after)
        assert before == before_copy, "merge_patch must not change its input"


def cond(type_: str, status: str = "True", reason: str = "Succeeded") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": ""}


OWNED = frozenset({"Ready", "Reconciling", "Stalled", "FetchFailed"})


@pytest.mark.parametrize(
    ("latest", "desired", "merged"),
    [
        pytest.param(
            [cond("Healthy"), cond("Ready", "Unknown", "Progressing"), cond("Other")],
            [cond("Ready")],
            [cond("Healthy"), cond("Ready"), cond("Other")],
            id="owned-replaced-in-place",
        ),
        pytest.param(
            [cond("Healthy"), cond("Reconciling"), cond("Ready", "Unknown")],
            [cond("Ready")],
            [cond("Healthy"), cond("Ready")],
            id="owned-removed",
        ),
        pytest.param(
            [cond("Healthy"), cond("Ready", "False")],
            [cond("Stalled", "True", "Invalid"), cond("Ready", "False", "Invalid")],
            [
                cond("Healthy"),
                cond("Ready", "False", "Invalid"),
                cond("Stalled", "True", "Invalid"),
            ],
            id="owned-added-at-the-end",
        ),
        pytest.param(
            [cond("Other", "False", "New"), cond("Ready")],
            [cond("Other", "True", "Stale"), cond("Ready")],
            [cond("Other", "False", "New"), cond("Ready")],
            id="others-newest-version-kept",
        ),
        pytest.param(
            [cond("Ready")],
            [cond("Ready"), cond("Other")],
            [cond("Ready")],
            id="others-removal-kept",
        ),
        pytest.param(
            [cond("B"), cond("Ready"), cond("A"), cond("FetchFailed"), cond("C")],
            [cond("FetchFailed", "True", "Git"), cond("Ready", "False", "Git")],
            [
                cond("B"),
                cond("Ready", "False", "Git"),
                cond("A"),
                cond("FetchFailed", "True", "Git"),
                cond("C"),
            ],
            id="order-of-latest-kept",
        ),
        pytest.param(
            [cond("Ready", "Unknown"), cond("Ready", "False")],
            [cond("Ready")],
            [cond("Ready")],
            id="duplicate-owned-collapsed",
        ),
        pytest.param([], [cond("Ready")], [cond("Ready")], id="latest-empty"),
        pytest.param([cond("Other")], [], [cond("Other")], id="desired-empty"),
    ],
)
def test_merge_conditions(
    latest: list[dict[str, Any]], desired: list[dict[str, Any]], merged: list[dict[str, Any]]
) -> None:
    assert _merge_conditions(latest, desired, OWNED) == merged
