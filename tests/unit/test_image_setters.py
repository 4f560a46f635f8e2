"""Setter markers rewritten as image-automation-controller sets them, with every byte other
than the marked values kept: each case compares whole files, byte for byte."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from image_automation.api_v1 import ImageRef
from image_automation.setters import Update, rewrite_text, update_with_setters
from image_automation.update_result import Change, ObjectIdentifier, Result, template_data

REFS = {
    "apps:web": ImageRef(name="ghcr.io/org/web", tag="1.2.0", digest=None),
    "apps:api": ImageRef(name="registry.local:5000/api", tag="2.0.1", digest="sha256:" + "ab" * 32),
    "apps:num": ImageRef(name="reg/num", tag="1.10", digest=None),
}
API_IMAGE = "registry.local:5000/api:2.0.1@sha256:" + "ab" * 32
DEPLOYMENT = ObjectIdentifier("apps/v1", "Deployment", "web", "apps")


def rewrite(text: str) -> str:
    return rewrite_text(text, REFS)[0]


# Whole files


DEPLOYMENT_BEFORE = """\
# The web front end.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps   # where it runs

spec:
  template:
    spec:
      containers:
        - name: web
          image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}
          args: ["--port", "8080"]  # flow style stays

        - name: api
          image:   "registry.local:5000/api:1.9.0"   # {"$imagepolicy": "apps:api"}
      # trailing comment
"""
DEPLOYMENT_AFTER = DEPLOYMENT_BEFORE.replace(
    "ghcr.io/org/web:1.0.0", "ghcr.io/org/web:1.2.0"
).replace('"registry.local:5000/api:1.9.0"', f'"{API_IMAGE}"')


def test_deployment_container_images() -> None:
    text, changes = rewrite_text(DEPLOYMENT_BEFORE, REFS)
    assert text == DEPLOYMENT_AFTER
    assert changes == [
        (DEPLOYMENT, Change("ghcr.io/org/web:1.0.0", "ghcr.io/org/web:1.2.0", "apps:web")),
        (DEPLOYMENT, Change("registry.local:5000/api:1.9.0", API_IMAGE, "apps:api")),
    ]


KUSTOMIZATION_BEFORE = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
images:
- name: web
  newName: ghcr.io/old/web # {"$imagepolicy": "apps:web:name"}
  newTag: '1.0.0' # {"$imagepolicy": "apps:web:tag"}
- name: api
  newTag: 1.9.0 # {"$imagepolicy": "apps:api:tag"}
  digest: sha256:0000 # {"$imagepolicy": "apps:api:digest"}
"""
KUSTOMIZATION_AFTER = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
images:
- name: web
  newName: ghcr.io/org/web # {"$imagepolicy": "apps:web:name"}
  newTag: '1.2.0' # {"$imagepolicy": "apps:web:tag"}
- name: api
  newTag: 2.0.1 # {"$imagepolicy": "apps:api:tag"}
  digest: sha256:abababababababababababababababababababababababababababababababab \
# {"$imagepolicy": "apps:api:digest"}
"""


def test_kustomization_images_with_suffix_markers() -> None:
    text, changes = rewrite_text(KUSTOMIZATION_BEFORE, REFS)
    assert text == KUSTOMIZATION_AFTER
    kustomization = ObjectIdentifier("kustomize.config.k8s.io/v1beta1", "Kustomization")
    assert [(obj, change.setter, change.new_value) for obj, change in changes] == [
        (kustomization, "apps:web:name", "ghcr.io/org/web"),
        (kustomization, "apps:web:tag", "1.2.0"),
        (kustomization, "apps:api:tag", "2.0.1"),
        (kustomization, "apps:api:digest", "sha256:" + "ab" * 32),
    ]


BLOCK_SCALARS = """\
kind: ConfigMap
data:
  script: |
    image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}
    echo done
  # {"$imagepolicy": "apps:web"}
  folded: >-
    ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}
  header: | # {"$imagepolicy": "apps:web"}
    ghcr.io/org/web:1.0.0
  image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}
"""


def test_block_scalars_are_text_whatever_they_hold() -> None:
    expected = BLOCK_SCALARS.replace(
        "\n  image: ghcr.io/org/web:1.0.0", "\n  image: ghcr.io/org/web:1.2.0"
    )
    assert rewrite(BLOCK_SCALARS) == expected
    assert expected.count("1.0.0") == 3


def test_crlf_tabs_and_a_bom_are_kept() -> None:
    # A tab as indentation is not YAML; a tab before a comment is.
    before = (
        "\ufeffkind: Deployment\r\n"
        "metadata: {name: web}\r\n"
        "spec:\r\n"
        '  image: ghcr.io/org/web:1.0.0\t\t# {"$imagepolicy":\t"apps:web"}\r\n'
        "  other: x\t# comment\twith tabs\r\n"
        "\r\n"
    )
    after = before.replace("web:1.0.0", "web:1.2.0")
    text, changes = rewrite_text(before, REFS)
    assert text == after
    assert text.encode() == after.encode()
    assert changes[0][0] == ObjectIdentifier(kind="Deployment", name="web")


MULTI_DOCUMENT = """\
%YAML 1.1
---
# first
kind: Service
metadata: {name: web, namespace: apps}
...
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}
---
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  image: reg/num:1.9 # {"$imagepolicy": "apps:num"}
"""


def test_multi_document_file() -> None:
    text, changes = rewrite_text(MULTI_DOCUMENT, REFS)
    assert text == MULTI_DOCUMENT.replace("web:1.0.0", "web:1.2.0").replace("num:1.9", "num:1.10")
    assert [obj for obj, _ in changes] == [
        DEPLOYMENT,
        ObjectIdentifier("batch/v1", "Job", "migrate"),
    ]


def test_a_list_stands_for_its_items() -> None:
    before = """\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: apps}
  spec: {image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}
    }
"""
    _, changes = rewrite_text(before, REFS)
    assert [obj for obj, _ in changes] == [DEPLOYMENT]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            'tag: 1.0 # {"$imagepolicy": "apps:num:tag"}',
            'tag: "1.10" # {"$imagepolicy": "apps:num:tag"}',
            id="plain-number-quoted",
        ),
        pytest.param(
            'tag: \'1.0\' # {"$imagepolicy": "apps:num:tag"}',
            'tag: \'1.10\' # {"$imagepolicy": "apps:num:tag"}',
            id="single-stays-single",
        ),
        pytest.param(
            'image: "ghcr.io/org/\\x77eb:1.0.0" # {"$imagepolicy": "apps:web"}',
            'image: "ghcr.io/org/web:1.2.0" # {"$imagepolicy": "apps:web"}',
            id="double-with-escapes",
        ),
        pytest.param(
            'image: !!str &anchor ghcr.io/org/web:1.0.0 #{"$imagepolicy":"apps:web"}',
            'image: !!str &anchor ghcr.io/org/web:1.2.0 #{"$imagepolicy":"apps:web"}',
            id="tag-and-anchor-kept",
        ),
        pytest.param(
            'image: ghcr.io/org/web:1.0.0 ## {"$imagepolicy": "apps:web"}  ',
            'image: ghcr.io/org/web:1.2.0 ## {"$imagepolicy": "apps:web"}  ',
            id="hashes-and-trailing-spaces",
        ),
        pytest.param(
            'image: old\n  continued # {"$imagepolicy": "apps:web"}',
            'image: ghcr.io/org/web:1.2.0 # {"$imagepolicy": "apps:web"}',
            id="multi-line-plain",
        ),
        pytest.param(
            '- ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}',
            '- ghcr.io/org/web:1.2.0 # {"$imagepolicy": "apps:web"}',
            id="sequence-item",
        ),
    ],
)
def test_quoting(line: str, expected: str) -> None:
    assert rewrite(f"# head\n{line}\n# tail\n") == f"# head\n{expected}\n# tail\n"


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(
            'image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:gone"}',
            id="policy-without-latest-ref",
        ),
        pytest.param(
            'image: ghcr.io/org/web:1.2.0 # {"$imagepolicy": "apps:web"}',
            id="already-current",
        ),
        pytest.param('tag: "1.10" # {"$imagepolicy": "apps:num:tag"}', id="current-tag"),
        pytest.param('digest: x # {"$imagepolicy": "apps:web:digest"}', id="policy-without-digest"),
        pytest.param('tag: x # {"$imagepolicy": "apps:web:size"}', id="unknown-suffix"),
        pytest.param(
            'image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"} trailing',
            id="comment-not-json",
        ),
        pytest.param('image: x # {"$imagepolicy": "apps:web", "n": 1}', id="not-strings"),
        pytest.param(
            'image: # {"$imagepolicy": "apps:web"}\n  ghcr.io/org/web:1.0.0',
            id="marker-on-the-key-line",
        ),
        pytest.param(
            '# {"$imagepolicy": "apps:web"}\nimage: ghcr.io/org/web:1.0.0',
            id="marker-on-the-line-above",
        ),
        pytest.param('image: # {"$imagepolicy": "apps:web"}', id="empty-value"),
        pytest.param(
            'spec: {image: ghcr.io/org/web:1.0.0} # {"$imagepolicy": "apps:web"}',
            id="comment-after-a-flow-mapping",
        ),
        pytest.param(
            '? ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}\n: value',
            id="mapping-key",
        ),
    ],
)
def test_left_as_is(line: str) -> None:
    text = f"kind: Thing\n{line}\n"
    assert rewrite_text(text, REFS) == (text, [])


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        pytest.param("1.10", '"1.10"', id="float"),
        pytest.param("10", '"10"', id="int"),
        pytest.param("1e3", '"1e3"', id="yaml-1.2-float"),
        pytest.param("0x1F", '"0x1F"', id="hex"),
        pytest.param("1_000", '"1_000"', id="underscores"),
        pytest.param("true", '"true"', id="bool"),
        pytest.param("yes", '"yes"', id="yaml-1.1-bool"),
        pytest.param("null", '"null"', id="null"),
        pytest.param("2024-01-31", '"2024-01-31"', id="timestamp"),
        pytest.param("1.2.3", "1.2.3", id="semver-stays-plain"),
        pytest.param("v1.10", "v1.10", id="prefixed"),
        pytest.param("main-1d2e3f4-1700000100", "main-1d2e3f4-1700000100", id="timestamped"),
        pytest.param("-rc", '"-rc"', id="leading-dash"),
        pytest.param("a #b", '"a #b"', id="would-start-a-comment"),
        pytest.param('é\x07😀"', '"\\xe9\\x07\\U0001f600\\""', id="escapes"),
    ],
)
def test_new_plain_values_that_would_not_read_as_strings_are_quoted(
    tag: str, expected: str
) -> None:
    refs = {"apps:x": ImageRef(name="reg/x", tag=tag)}
    text, changes = rewrite_text('tag: old # {"$imagepolicy": "apps:x:tag"}\n', refs)
    assert text == f'tag: {expected} # {{"$imagepolicy": "apps:x:tag"}}\n'
    assert yaml.safe_load(text) == {"tag": tag}
    assert changes[0][1].new_value == tag


def test_single_quotes_are_doubled() -> None:
    refs = {"apps:x": ImageRef(name="reg/x", tag="it's")}
    text, _ = rewrite_text('tag: \'old\' # {"$imagepolicy": "apps:x:tag"}\n', refs)
    assert text == "tag: 'it''s' # {\"$imagepolicy\": \"apps:x:tag\"}\n"


def test_yaml_that_does_not_parse_raises() -> None:
    from controllers.safeyaml import YAMLLoadError

    with pytest.raises(YAMLLoadError):
        rewrite_text('a: [b # {"$imagepolicy": "apps:web"}\n', REFS)


# Files under the update path


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    return path


MARKED = 'image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}\n'
SET = 'image: ghcr.io/org/web:1.2.0 # {"$imagepolicy": "apps:web"}\n'


def test_files_flux_visits(tmp_path: Path) -> None:
    root = tmp_path / "clusters" / "dev"
    outside = write(tmp_path / "outside" / "secret.yaml", MARKED)
    for name in (
        "a.yaml",
        "b.yml",
        "Kustomization",
        ".hidden/c.yaml",
        "deep/er/d.yaml",
    ):
        write(root / name, MARKED)
    for name in ("e.YAML", "f.json", "g.yaml.txt", ".git/h.yaml", "kustomization"):
        write(root / name, MARKED)
    write(root / "current.yaml", SET)
    write(root / "plain.yaml", "# no marker here\nimage: ghcr.io/org/web:1.0.0\n")
    write(root / "broken.yaml", 'image: [ghcr.io/org/web:1.0.0 # "$imagepolicy"\n')
    write(root / "latin1.yaml", MARKED.encode() + b"# caf\xe9\n")
    (root / "link.yaml").symlink_to(outside)
    (root / "linked-dir").symlink_to(outside.parent, target_is_directory=True)
    (root / "inside-link.yaml").symlink_to(root / "a.yaml")

    update = update_with_setters(root, REFS)

    assert sorted(update.files) == [
        ".hidden/c.yaml",
        "Kustomization",
        "a.yaml",
        "b.yml",
        "deep/er/d.yaml",
    ]
    assert set(update.files.values()) == {SET.encode()}
    assert sorted(update.result.file_changes) == sorted(update.files)
    assert update.problem_files == ["broken.yaml", "latin1.yaml"]
    assert outside.read_text() == MARKED  # nothing is written, outside or in
    assert (root / "a.yaml").read_text() == MARKED


def test_a_single_file_as_the_update_path(tmp_path: Path) -> None:
    path = write(tmp_path / "app.yaml", MARKED)
    update = update_with_setters(path, REFS)
    assert update.files == {"app.yaml": SET.encode()}


def test_a_symbolic_link_as_the_update_path_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "real" / "app.yaml", MARKED)
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link"):
        update_with_setters(tmp_path / "link", REFS)


def test_nothing_to_change(tmp_path: Path) -> None:
    write(tmp_path / "app.yaml", SET)
    assert update_with_setters(tmp_path, REFS) == Update()


# The result and its template data


def test_result_shape_for_commit_message_templates(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", DEPLOYMENT_BEFORE)
    write(tmp_path / "a" / "kustomization.yaml", KUSTOMIZATION_BEFORE)
    # The same object in a second file, with a change already reported for the first.
    write(tmp_path / "c.yaml", DEPLOYMENT_BEFORE.split("      containers:")[0] + "  " + MARKED)
    result = update_with_setters(tmp_path, REFS).result

    web = Change("ghcr.io/org/web:1.0.0", "ghcr.io/org/web:1.2.0", "apps:web")
    assert result.objects()[DEPLOYMENT] == [
        web,
        Change("registry.local:5000/api:1.9.0", API_IMAGE, "apps:api"),
        web,
    ]
    assert len(result.changes()) == 6  # four in the kustomization, two distinct in the rest
    data = template_data(result, namespace="flux-system", name="auto", values={"env": "dev"})
    json.dumps(data)  # plain JSON data
    assert data["AutomationObject"] == {"Name": "auto", "Namespace": "flux-system"}
    assert data["Values"] == {"env": "dev"}
    changed = data["Changed"]
    assert list(changed["FileChanges"]) == ["a/kustomization.yaml", "b.yaml", "c.yaml"]
    assert changed["FileChanges"]["c.yaml"] == [
        {
            "Object": {
                "APIVersion": "apps/v1",
                "Kind": "Deployment",
                "Name": "web",
                "Namespace": "apps",
            },
            "Changes": [
                {
                    "OldValue": "ghcr.io/org/web:1.0.0",
                    "NewValue": "ghcr.io/org/web:1.2.0",
                    "Setter": "apps:web",
                }
            ],
        }
    ]
    # Objects and Changes are Go methods: the renderer computes them.
    assert set(changed) == {"FileChanges"}


def test_empty_result() -> None:
    assert Result().template_data() == {"FileChanges": {}}


# Properties, over generated files


def generated_file(rng: random.Random) -> tuple[str, str]:
    """A file of a few documents in random styles, and what it becomes once set."""
    newline = rng.choice(["\n", "\r\n"])
    before, after = [], []
    for index in range(rng.randint(1, 4)):
        lines_before = [f"kind: Thing{newline}", f"metadata: {{name: n{index}}}{newline}"]
        lines_after = list(lines_before)
        for field in range(rng.randint(0, 6)):
            gap = rng.choice([" ", "  ", "\t", " \t "])
            old = rng.choice(["1.0", "ghcr.io/org/web:1.0.0", "reg/num:1.10", "x y"])
            quote = rng.choice(["", "'", '"'])
            setter = rng.choice(["apps:web", "apps:num:tag", "apps:gone", "apps:web:digest"])
            marker = f'#{rng.choice(["", " "])}{{"$imagepolicy": "{setter}"}}'
            comment = rng.choice([marker, "# plain comment", ""])
            line = f"f{field}: {quote}{old}{quote}"
            new = old
            if comment == marker:
                new = {
                    "apps:web": "ghcr.io/org/web:1.2.0",
                    "apps:num:tag": "1.10",
                }.get(setter, old)
            if new != old and not quote and new == "1.10":
                new_text = f'"{new}"'
            else:
                new_text = f"{quote}{new}{quote}"
            tail = f"{gap}{comment}" if comment else ""
            lines_before.append(f"{line}{tail}{newline}")
            lines_after.append(f"f{field}: {new_text}{tail}{newline}")
            if rng.random() < 0.3:
                block = f"b{field}: |{newline}  {line} {marker}{newline}{newline}"
                lines_before.append(block)
                lines_after.append(block)
        separators = [f"---{newline}", f"--- # doc{newline}"] + ([""] if index == 0 else [])
        separator = rng.choice(separators)
        before += [separator, *lines_before]
        after += [separator, *lines_after]
    return "".join(before), "".join(after)


@pytest.mark.parametrize("seed", range(150))
def test_generated_files_change_only_at_markers(seed: int) -> None:
    before, after = generated_file(random.Random(seed))
    text, changes = rewrite_text(before, REFS)
    assert text == after
    assert (text == before) == (changes == [])
    untouched, _ = rewrite_text(before, {})
    assert untouched == before
