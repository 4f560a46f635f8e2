"""YAML alias bombs of several shapes, for the tests and the fuzz corpora.

Each one is small text whose aliases expand to far more nodes than it holds; none is recursive
(see :data:`RECURSIVE` for those).
"""

from __future__ import annotations

__all__ = [
    "RECURSIVE",
    "SUBSTITUTION_BOMB",
    "block_laughs",
    "deep_chain",
    "flow_laughs",
    "kustomization_bomb",
    "merge_bomb",
    "multi_document",
]

_NAMES = "abcdefghijklmnopqrstuvwxyz"


def flow_laughs(levels: int, width: int) -> str:
    """Billion laughs on one line: level ``n`` is a list of ``width`` aliases of level ``n-1``,
    so the last one expands to ``width ** levels`` scalars."""
    parts = [f"{_NAMES[0]}: &{_NAMES[0]} [{','.join('x' * width)}]"]
    for level in range(1, levels):
        name, previous = _NAMES[level], _NAMES[level - 1]
        parts.append(f"{name}: &{name} [{','.join([f'*{previous}'] * width)}]")
    return "{" + ", ".join(parts) + "}"


def block_laughs(levels: int, width: int) -> str:
    """The same in block style, one level per line, as a file in Git would hold it."""
    lines = [f"{_NAMES[0]}: &{_NAMES[0]} [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        name, previous = _NAMES[level], _NAMES[level - 1]
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * width)}]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int, width: int) -> str:
    """Merge keys instead of lists: each mapping merges ``width`` copies of the one before.
    PyYAML flattened these by copying until its fix for yaml/pyyaml#897, and ``PyYAML>=6``
    still allows such releases; safeyaml counts them as the aliases they are."""
    lines = ["a: &a {k0: v, k1: v, k2: v, k3: v}"]
    for level in range(1, levels):
        name, previous = _NAMES[level], _NAMES[level - 1]
        lines.append(f"{name}: &{name} {{<<: [{', '.join([f'*{previous}'] * width)}]}}")
    return "\n".join(lines) + "\n"


def deep_chain(levels: int, nesting: int) -> str:
    """Few nodes, each alias nesting the previous anchor ``nesting`` levels deeper: depth, not
    size, is what grows."""
    lines = ["a: &a x"]
    for level in range(1, levels):
        name, previous = _NAMES[level], _NAMES[level - 1]
        lines.append(f"{name}: &{name} {'[' * nesting}*{previous}{']' * nesting}")
    return "\n".join(lines) + "\n"


def kustomization_bomb(levels: int, width: int) -> str:
    """A kustomization file whose ``resources``, ``patches`` and ``components`` are lists of
    ``levels`` nested aliases: what issue 8's finding 4 committed (ten levels, 510 bytes)."""
    lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization"]
    lines.append("l0: &l0 [a.yaml, b.yaml]")
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    last = f"*l{levels - 1}"
    lines += [f"resources: {last}", f"patches: {last}", f"components: {last}"]
    return "\n".join(lines) + "\n"


def multi_document(documents: int, levels: int, width: int) -> str:
    """Several documents, each a bomb below the limit on its own; together above it."""
    return "".join(f"---\n{block_laughs(levels, width)}" for _ in range(documents))


# The finding of issue 8: a substitution value of about 326 bytes on one line (Flux removes the
# newlines of values), 9 ** 9 = 387,420,489 scalars when expanded.
SUBSTITUTION_BOMB = flow_laughs(9, 9)

RECURSIVE = {
    "self-in-list": "&a [*a]",
    "self-in-map": "&a {k: *a}",
    "self-deeper": "a: &a {b: [c, {d: *a}]}",
    "self-as-key": "&a {? *a : v}",
    "self-merge": "&a {<<: *a}",
}
