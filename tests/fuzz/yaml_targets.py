"""atheris fuzz targets for the YAML weir reads from Git: :func:`controllers.safeyaml.load_all`,
post-build substitution, the SOPS pass's reading of kustomization files, and the kustomize
controller's rewriting of kustomization files before a build.

    python -m tests.fuzz.yaml_targets TARGET CORPUS_DIR [libFuzzer flags]

writes the target's seeds (real manifests and alias bombs) into ``CORPUS_DIR`` and fuzzes
until libFuzzer stops (``-max_total_time=N``, ``-runs=N``); ``--list`` names the targets.

Each target asserts its invariants: only the documented exception escapes, what is returned
is bounded by the limits (aliases expanded), and what is accepted is what PyYAML alone would
make of it. libFuzzer bounds time and memory per input (``-timeout``, ``-rss_limit_mb``): a
slow or greedy input is a crash, written to ``-artifact_prefix``.

``tests/fuzz/test_yaml_fuzz.py`` runs each target for a few seconds in the suite;
``hack/fuzz.sh SECONDS`` runs them for longer with a corpus kept under ``.weir/fuzz``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-untyped]

# Only what is imported here is instrumented for coverage: import the code under test inside.
with atheris.instrument_imports(include=["yaml", "controllers.safeyaml", "kustomize"]):
    import yaml

    from controllers import safeyaml
    from kustomize import build, decrypt, substitute
    from kustomize.api_v1 import KustomizationSpec

from tests.fuzz import bombs

__all__ = ["SEEDS", "TARGETS", "main"]

# Small limits, so that short inputs reach them.
LIMITS = safeyaml.Limits(max_bytes=1 << 16, max_nodes=2_000, max_depth=50, max_alias_nodes=5_000)
LOADERS = [yaml.SafeLoader] + ([yaml.CSafeLoader] if yaml.__with_libyaml__ else [])
WHAT = "'fuzz/input.yaml'"
RECURSIVE = "an alias inside the node it refers to"


# Invariants


def check_message(message: str, start: str) -> None:
    assert "\n" not in message, f"a message on more than one line: {message!r}"
    assert message.startswith(start), f"a message that does not start {start!r}: {message!r}"


def expanded(value: Any, most: int) -> tuple[int, int]:
    """Objects in ``value`` with every shared one counted each time it appears, and its depth;
    counting stops past ``most``."""
    count, deepest = 0, 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending and count <= most:
        item, depth = pending.pop()
        count += 1
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend((child, depth + 1) for child in item)
    return count, deepest


def check_bounded(value: Any, limits: safeyaml.Limits) -> None:
    most = limits.max_nodes + limits.max_alias_nodes
    count, depth = expanded(value, most)
    assert count <= most, f"more than {most} objects once aliases are expanded"
    assert depth <= limits.max_depth, f"{depth} levels deep, over {limits.max_depth}"


def plain_pyyaml(data: bytes, loader: Any) -> Any:
    """What PyYAML alone makes of ``data``: run only on what safeyaml has bounded."""
    return list(yaml.load_all(data, Loader=loader))


# Targets


def fuzz_safeyaml(data: bytes) -> None:
    """Any bytes, through both loaders: a bounded result equal to PyYAML's, or a
    YAMLLoadError that names the input on one line."""
    for loader in LOADERS:
        try:
            documents = safeyaml.load_all(data, what=WHAT, loader=loader, limits=LIMITS)
        except safeyaml.YAMLLoadError as err:
            check_message(str(err), f"{WHAT}: ")
            if err.limit is None and err.problem != RECURSIVE:
                assert_pyyaml_refuses(data, loader)
            continue
        check_bounded(documents, LIMITS)
        assert repr(documents) == repr(plain_pyyaml(data, loader)), "differs from PyYAML"


def assert_pyyaml_refuses(data: bytes, loader: Any) -> None:
    try:
        plain_pyyaml(data, loader)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, LookupError):
        return
    raise AssertionError("safeyaml refused as invalid what PyYAML reads")


def substitution_case(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """``NAME=value`` lines, a ``%%`` line, then one field of a ConfigMap per line."""
    text = data.decode(errors="replace")
    head, _, body = text.partition("\n%%\n")
    variables = dict(line.partition("=")[::2] for line in head.splitlines())
    fields = {f"f{index}": line for index, line in enumerate(body.split("\n")[:16])}
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fuzz"}, "data": fields}
    return obj, variables


def fuzz_substitute(data: bytes) -> None:
    """Variables and a template from the input, through ``substitute_objects``: one
    JSON-representable object bounded by safeyaml's default limits, or a SubstitutionError
    on one line naming the object or the variables."""
    obj, variables = substitution_case(data)
    try:
        [result] = substitute.substitute_objects([obj], variables, always=True)
    except substitute.SubstitutionError as err:
        check_message(str(err), "")
        return
    check_bounded(result, safeyaml.DEFAULT_LIMITS)
    json.dumps(result, allow_nan=False)


def fuzz_decrypt(data: bytes) -> None:
    """The input as the kustomization file of a source, through ``decrypt_tree`` without keys:
    nothing to decrypt, or a DecryptionError on one line."""
    root = SCRATCH / "decrypt-source"
    root.mkdir(exist_ok=True)
    (root / "kustomization.yaml").write_bytes(data)
    try:
        decrypted = asyncio.run(decrypt.decrypt_tree(root, decrypt.DecryptionKeys()))
    except decrypt.DecryptionError as err:
        check_message(str(err), "")
        return
    assert decrypted == [], "decrypted a file without a key"


# Overlay fields that make the preparation merge into whatever the input holds.
KUSTOMIZATION_SPEC = KustomizationSpec.model_validate(
    {
        "interval": "5m",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "app"},
        "targetNamespace": "fuzz",
        "namePrefix": "f-",
        "images": [{"name": "nginx", "newTag": "1.27"}],
        "patches": [{"patch": "- op: add\n  path: /x\n  value: y", "target": {"kind": "X"}}],
        "components": ["../component"],
    }
)


def fuzz_kustomization(data: bytes) -> None:
    """The input as a kustomization file, through the kustomize controller's preparation of
    the tree it builds (``kustomize/build.py``): a kustomization with kustomize's field names
    only and the spec's overlay in it, or a BuildError on one line naming the file."""
    source, tree = SCRATCH / "kustomization-source", SCRATCH / "kustomization-tree"
    (source / "app").mkdir(parents=True, exist_ok=True)
    (source / "app" / "kustomization.yaml").write_bytes(data)
    shutil.rmtree(tree, ignore_errors=True)
    try:
        entry = build._prepare(source, "app", KUSTOMIZATION_SPEC, tree)
    except build.BuildError as err:
        refused = str(err)
    else:
        refused = ""
    if refused:
        check_message(refused, "")
        assert "'app/kustomization.yaml'" in refused, f"the file is not named: {refused!r}"
        return
    written = safeyaml.load((entry / "kustomization.yaml").read_bytes(), what="written")
    assert isinstance(written, dict), "the controller wrote a kustomization that is no map"
    assert set(written) <= set(build._KUSTOMIZATION_FIELDS.values()), sorted(written)
    assert (written["namespace"], written["namePrefix"]) == ("fuzz", "f-")


# Where targets write files: beside the corpus (main sets it), as libFuzzer ends the process
# without running Python's clean-up.
SCRATCH = Path()
TARGETS: dict[str, Callable[[bytes], None]] = {
    "safeyaml": fuzz_safeyaml,
    "substitute": fuzz_substitute,
    "decrypt": fuzz_decrypt,
    "kustomization": fuzz_kustomization,
}


# Seeds: real manifests and the bombs.

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{containerPort: 8080}]
          env: &env
            - {name: GREETING, value: hello}
        - name: sidecar
          image: busybox:1.36
          env: *env
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1, default: 3}
                ratio: {type: number, x-kubernetes-int-or-string: true}
"""
KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: apps
resources: [deployment.yaml, ../base]
secretGenerator:
  - name: creds
    files: [password.txt, token=token.enc.yaml]
    envs: [secret.env]
patches:
  - path: patch.yaml
  - patch: |-
      - op: replace
        path: /spec/replicas
        value: 3
    target: {kind: Deployment}
"""
BOMBS = {
    "flow-9x9": bombs.SUBSTITUTION_BOMB,
    "block-10x10": bombs.block_laughs(10, 10),
    "merge-10x10": bombs.merge_bomb(10, 10),
    "deep-chain": bombs.deep_chain(10, 30),
    "multi-document": bombs.multi_document(5, 4, 10),
    **{f"recursive-{name}": text for name, text in bombs.RECURSIVE.items()},
}

SEEDS: dict[str, dict[str, str]] = {
    "safeyaml": {"deployment": DEPLOYMENT, "crd": CRD, "kustomization": KUSTOMIZATION, **BOMBS},
    "substitute": {
        "bomb": f"BOMB={bombs.SUBSTITUTION_BOMB}\n%%\n${{BOMB}}\nkey: ${{BOMB}}",
        "types": "count=3\nflag=on\nlist=[a, b]\n%%\n${count}\n${flag}\n${list}\n'${count}'",
        "operators": (
            "image=nginx\ntag=1.27\n%%\n${image:=busybox}:${tag:-latest}\n${image//n/nn}\n"
            "${image^^}\n${#tag}\n${tag:1:2}\n${image%x}\n$${literal}\n${unset:=${image}}"
        ),
        # Bounds past what Go's strconv.Atoi or Python's int() read.
        "huge-bounds": f"D={'9' * 5000}\nE={'9' * 30}\nx=abc\n%%\n${{x:${{D}}}}\n${{x:1:${{E}}}}",
        "structure": "v=a: b\nw=- item\nx=&anchor\ny=*anchor\n%%\n${v}\n${w}\n${x} ${y}\n${y}",
        **{
            name: f"BOMB={text.replace(chr(10), ' ')}\n%%\n${{BOMB}}"
            for name, text in BOMBS.items()
        },
    },
    "decrypt": {
        "kustomization": KUSTOMIZATION,
        "kustomization-bomb": bombs.kustomization_bomb(10, 4),
        "escape": "resources: [../../etc]\npatches: [{path: /etc/passwd}]\n",
        **BOMBS,
    },
    "kustomization": {
        "kustomization": KUSTOMIZATION,
        "capitalised": "Resources: [a.yaml]\nNamePrefix: x-\nimages: [{name: nginx}]\n",
        "kustomization-bomb": bombs.kustomization_bomb(10, 4),
        "not-a-map": "- a\n- b\n",
        "patches-not-a-list": "patches: {path: x}\n",
        **BOMBS,
    },
}


def seed_files(target: str) -> Iterator[tuple[str, bytes]]:
    for name, text in SEEDS[target].items():
        yield f"seed-{name}", text.encode()


# Entry point


def main(argv: list[str]) -> None:
    global SCRATCH
    if argv[1:] == ["--list"]:
        print("\n".join(TARGETS))
        return
    if len(argv) < 3 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} CORPUS_DIR [libFuzzer flags]")
    target, corpus = argv[1], Path(argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    SCRATCH = corpus.parent / f"{corpus.name}.scratch"
    SCRATCH.mkdir(exist_ok=True)
    for name, content in seed_files(target):
        (corpus / name).write_bytes(content)
    atheris.Setup([argv[0], *argv[3:], str(corpus)], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
