"""Commit message templates rendered by the real renderer (``hack/tools/gotemplate``, built like
every other Go binary the suite runs), against what Go's ``text/template`` and Sprig make of
Flux's documented templates.

Each template is taken as a user writes it, in an ImageUpdateAutomation's YAML (Flux's
documentation and tests), and parsed with a YAML parser; each expected message is worked out
from the template language's rules (``{{-``/``-}}`` trim the whitespace beside them, ranges over
maps go in key order, structs print as ``{field field}``, ``NamespacedName`` prints
``<namespace>/<name>``), or, where said, is Flux's own test expectation.

Integration tests by place only: they need the built binary, not the control plane.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.binaries import find_binary
from image_automation.message import (
    DEFAULT_MESSAGE,
    MAX_MESSAGE_BYTES,
    MessageTemplateError,
    RendererError,
    TemplateData,
    render_message,
)

pytestmark = pytest.mark.integration

OLD_IMAGE = "ghcr.io/stefanprodan/podinfo:5.0.0"
NEW_IMAGE = "ghcr.io/stefanprodan/podinfo:5.0.3"

# Two files: a Deployment's image, and the tag of a kustomization.yaml `images:` entry (an
# object without a name). Keys in reverse order: the renderer sorts, not the caller.
PODINFO: dict[str, Any] = {
    "AutomationObject": {"Namespace": "flux-system", "Name": "podinfo-update"},
    "Changed": {
        "FileChanges": {
            "apps/podinfo/kustomization.yaml": [
                {
                    "Object": {
                        "APIVersion": "kustomize.config.k8s.io/v1beta1",
                        "Kind": "Kustomization",
                    },
                    "Changes": [
                        {
                            "OldValue": "5.0.0",
                            "NewValue": "5.0.3",
                            "Setter": "flux-system:podinfo:tag",
                        }
                    ],
                }
            ],
            "apps/podinfo/deployment.yaml": [
                {
                    "Object": {
                        "APIVersion": "apps/v1",
                        "Kind": "Deployment",
                        "Name": "podinfo",
                        "Namespace": "podinfo",
                    },
                    "Changes": [
                        {
                            "OldValue": OLD_IMAGE,
                            "NewValue": NEW_IMAGE,
                            "Setter": "flux-system:podinfo",
                        },
                        {
                            "OldValue": "nginx:1.0",
                            "NewValue": "nginx:1.1",
                            "Setter": "flux-system:proxy",
                        },
                    ],
                }
            ],
        }
    },
    "Values": {"env": "staging"},
}


def message_template(manifest: str) -> str:
    """``spec.git.commit.messageTemplate`` of an automation's YAML (or of its ``spec``)."""
    document = yaml.safe_load(manifest)
    spec = document.get("spec", document)
    template = spec.get("git", spec)["commit"]["messageTemplate"]
    assert isinstance(template, str)
    return template


# Flux's docs, "Message Template": the helper methods.
DOCS_METHODS = """
spec:
  commit:
    messageTemplate: |
      Automated image update
      
      Automation name: {{ .AutomationObject }}

      Files:
      {{ range $filename, $_ := .Changed.FileChanges -}}
      - {{ $filename }}
      {{ end -}}

      Objects:
      {{ range $resource, $changes := .Changed.Objects -}}
      - {{ $resource.Kind }} {{ $resource.Name }}
        Changes:
      {{- range $_, $change := $changes }}
          - {{ $change.OldValue }} -> {{ $change.NewValue }}
      {{ end -}}
      {{ end -}}
"""  # noqa: W293 (the blank line with spaces is in Flux's docs)

# Objects go in the order of their fields (apiVersion first); the kustomization has no name, so
# "Kustomization " keeps the space before it.
DOCS_METHODS_MESSAGE = f"""Automated image update

Automation name: flux-system/podinfo-update

Files:
- apps/podinfo/deployment.yaml
- apps/podinfo/kustomization.yaml
Objects:
- Deployment podinfo
  Changes:
    - {OLD_IMAGE} -> {NEW_IMAGE}

    - nginx:1.0 -> nginx:1.1
- Kustomization 
  Changes:
    - 5.0.0 -> 5.0.3
"""  # noqa: W291

# Flux's docs: the same with Sprig functions.
DOCS_FUNCTIONS = """
spec:
  commit:
    messageTemplate: |
      Automated image update
      
      Automation name: {{ .AutomationObject }}

      Files:
      {{ range $filename, $_ := .Changed.FileChanges -}}
      - {{ $filename }}
      {{ end -}}

      Objects:
      {{ range $resource, $changes := .Changed.Objects -}}
      - {{ $resource.Kind | lower }} {{ $resource.Name | lower }}
        Changes:
      {{- range $_, $change := $changes }}
        {{ if contains "5.0.3" $change.NewValue -}}
          - {{ $change.OldValue }} -> {{ $change.NewValue }}
        {{ else -}}
          [skip ci] wrong image
        {{ end -}}
      {{ end -}}
      {{ end -}}
"""  # noqa: W293

# Each inner iteration starts with "\n  " and ends with the "\n  " before `{{ else` or
# `{{ end` (only their right side trims), so each next line starts two spaces in.
DOCS_FUNCTIONS_MESSAGE = f"""Automated image update

Automation name: flux-system/podinfo-update

Files:
- apps/podinfo/deployment.yaml
- apps/podinfo/kustomization.yaml
Objects:
- deployment podinfo
  Changes:
  - {OLD_IMAGE} -> {NEW_IMAGE}
  
  [skip ci] wrong image
  - kustomization 
  Changes:
  - 5.0.0 -> 5.0.3
  """  # noqa: W291, W293

# Flux's docs, the example automation.
DOCS_CHANGES = """
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
spec:
  git:
    commit:
      author:
        email: flux@eaample.com
        name: fluxcd
      messageTemplate: '{{range .Changed.Changes}}{{print .OldValue}} -> {{println
        .NewValue}}{{end}}'
"""

# Flux's docs, `messageTemplateValues`.
DOCS_VALUES = """
spec:
  git:
    commit:
      messageTemplate: |-
        Automated image update by Flux for cluster {{ .Values.cluster }}.
"""

# Flux's docs, Gerrit: a Change-Id from the printed data.
DOCS_GERRIT = """
spec:
  git:
    commit:
      messageTemplate: |
        Perform automatic image update

        Automation name: {{ .AutomationObject }}

        {{- $ChangeId := .AutomationObject -}}
        {{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.FileChanges | toString ) -}}
        {{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.Objects | toString ) -}}
        {{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.Changes | toString ) }}
        Change-Id: {{ printf "I%s" ( sha256sum $ChangeId | trunc 40 ) }}
"""

ONE_CHANGE: dict[str, Any] = {
    "AutomationObject": {"Namespace": "flux-system", "Name": "podinfo-update"},
    "Changed": {
        "FileChanges": {
            "deploy.yaml": [
                {
                    "Object": {"APIVersion": "apps/v1", "Kind": "Deployment", "Name": "podinfo"},
                    "Changes": [{"OldValue": "a:1", "NewValue": "a:2", "Setter": "flux-system:a"}],
                }
            ]
        }
    },
}


async def test_flux_docs_helper_methods() -> None:
    message = await render_message(message_template(DOCS_METHODS), PODINFO)

    assert message == DOCS_METHODS_MESSAGE


async def test_flux_docs_sprig_functions() -> None:
    message = await render_message(message_template(DOCS_FUNCTIONS), PODINFO)

    assert message == DOCS_FUNCTIONS_MESSAGE


async def test_flux_docs_changes_each_once_files_then_objects_in_order() -> None:
    message = await render_message(message_template(DOCS_CHANGES), PODINFO)

    assert message == (f"{OLD_IMAGE} -> {NEW_IMAGE}\nnginx:1.0 -> nginx:1.1\n5.0.0 -> 5.0.3\n")


async def test_flux_docs_values_and_a_missing_value() -> None:
    data = {**PODINFO, "Values": {"cluster": "prod"}}
    template = message_template(DOCS_VALUES) + " {{ .Values.env }}"

    message = await render_message(template, data)

    # A missing map key prints Go's "<no value>": Flux sets no missingkey option.
    assert message == "Automated image update by Flux for cluster prod. <no value>"


async def test_flux_docs_gerrit_change_id_from_printed_go_values() -> None:
    # How fmt prints them: map[key:value], structs as {fields}, embedded structs nested.
    object_id = "{{{apps/v1 Deployment} {podinfo }}}"
    changes = "[{a:1 a:2 flux-system:a}]"
    change_id = (
        "flux-system/podinfo-update"
        + f"map[deploy.yaml:map[{object_id}:{changes}]]"
        + f"map[{object_id}:{changes}]"
        + changes
    )
    expected = hashlib.sha256(change_id.encode()).hexdigest()[:40]

    message = await render_message(message_template(DOCS_GERRIT), ONE_CHANGE)

    assert message == (
        "Perform automatic image update\n\n"
        f"Automation name: flux-system/podinfo-update\nChange-Id: I{expected}\n"
    )


# Flux's own test (internal/source/source_test.go, "commit with update ResultV2 template"): its
# template, data and expected message.
FLUX_RESULT_V2 = """Commit summary with ResultV2

Automation: {{ .AutomationObject }}

{{ range $filename, $objchange := .Changed.FileChanges -}}
- File: {{ $filename }}
{{- range $obj, $changes := $objchange }}
  - Object: {{ $obj.Kind }}/{{ $obj.Namespace }}/{{ $obj.Name }}
    Changes:
{{- range $_ , $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
{{ end -}}
"""


async def test_flux_own_expectation_for_its_result_v2_template() -> None:
    data = {
        "AutomationObject": {"Namespace": "test-ns", "Name": "test-update"},
        "Changed": {
            "FileChanges": {
                "deploy.yaml": [
                    {
                        "Object": {"APIVersion": "apps/v1", "Kind": "Deployment", "Name": "test"},
                        "Changes": [
                            {
                                "OldValue": "helloworld:1.0.0",
                                "NewValue": "helloworld:1.0.1",
                                "Setter": "test-ns:policy",
                            }
                        ],
                    }
                ]
            }
        },
    }

    message = await render_message(FLUX_RESULT_V2, data)

    assert message == (
        "Commit summary with ResultV2\n\nAutomation: test-ns/test-update\n\n"
        "- File: deploy.yaml\n  - Object: Deployment//test\n    Changes:\n"
        "    - helloworld:1.0.0 -> helloworld:1.0.1\n"
    )


async def test_one_object_twice_in_a_file_is_one_object() -> None:
    entry = ONE_CHANGE["Changed"]["FileChanges"]["deploy.yaml"][0]
    second = {**entry, "Changes": [{"OldValue": "b:1", "NewValue": "b:2", "Setter": "ns:b"}]}
    data = {**ONE_CHANGE, "Changed": {"FileChanges": {"deploy.yaml": [entry, second]}}}
    template = "{{ range $o, $c := .Changed.Objects }}{{ $o.Name }}: {{ len $c }}{{ end }}"

    assert await render_message(template, data) == "podinfo: 2"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param('{{ "podinfo" | upper }}', "PODINFO", id="upper"),
        pytest.param('{{ list "a" "b" "c" | join ", " }}', "a, b, c", id="join"),
        pytest.param(
            "{{ .AutomationObject.Name | trunc 3 }}-{{ .AutomationObject.Namespace }}",
            "pod-flux-system",
            id="struct fields",
        ),
        pytest.param("{{ .AutomationObject.String }}", "flux-system/podinfo-update", id="method"),
        pytest.param('{{ semver "1.2.3" | toString }}', "1.2.3", id="semver"),
        pytest.param('{{ index .Values "env" }}', "staging", id="index"),
    ],
)
async def test_go_and_sprig_functions(template: str, expected: str) -> None:
    assert await render_message(template, PODINFO) == expected


async def test_an_empty_template_is_the_default_message_as_go_renders_it() -> None:
    assert await render_message("", PODINFO) == DEFAULT_MESSAGE
    # Flux renders its default through the template engine; so does this, to the same bytes.
    assert await render_message(DEFAULT_MESSAGE, PODINFO) == DEFAULT_MESSAGE


@pytest.mark.parametrize(
    ("template", "go_error"),
    [
        pytest.param(
            "Update {{ .AutomationObject ",
            "template: commit message:1: unclosed action",
            id="parse",
        ),
        pytest.param(
            "{{ .Nope }}",
            'template: commit message:1:3: executing "commit message" at <.Nope>: '
            "can't evaluate field Nope in type source.TemplateData",
            id="unknown field",
        ),
        pytest.param(
            "{{ now }}",
            'template: commit message:1: function "now" not defined',
            id="non-hermetic function left out",
        ),
    ],
)
async def test_a_bad_template_raises_gos_own_message(template: str, go_error: str) -> None:
    with pytest.raises(MessageTemplateError) as raised:
        await render_message(template, PODINFO)

    assert str(raised.value) == go_error


@pytest.mark.parametrize(
    ("template", "instead"),
    [
        pytest.param("{{ range .Updated.Images }}{{ . }}{{ end }}", "'.Changed'", id="Updated"),
        pytest.param(
            "{{ .Changed.ImageResult.Files }}",
            "'.Changed.FileChanges' or '.Changed.Objects'",
            id="ImageResult",
        ),
    ],
)
async def test_removed_fields_say_what_to_use_instead(template: str, instead: str) -> None:
    with pytest.raises(MessageTemplateError, match="no longer has") as raised:
        await render_message(template, PODINFO)

    assert f"use {instead} instead" in str(raised.value)


async def test_a_message_over_the_size_cap_is_refused() -> None:
    count = MAX_MESSAGE_BYTES + 1

    with pytest.raises(MessageTemplateError) as raised:
        await render_message(f'{{{{ repeat {count} "x" }}}}', PODINFO)

    assert str(raised.value) == f"the message is longer than {MAX_MESSAGE_BYTES} bytes"


async def test_a_template_that_writes_without_end_is_stopped_at_the_cap() -> None:
    with pytest.raises(MessageTemplateError, match="longer than"):
        await render_message("{{ range until 200000 }}0123456789{{ end }}", PODINFO)


async def test_a_string_too_large_to_build_is_stopped_at_the_memory_limit() -> None:
    with pytest.raises(MessageTemplateError, match="bytes of memory"):
        await render_message('{{ repeat 4000000000 "x" }}', PODINFO)


async def test_a_template_that_never_ends_is_stopped_at_the_timeout() -> None:
    template = "{{ range until 1000000 }}{{ range until 1000000 }}{{ end }}{{ end }}"

    with pytest.raises(MessageTemplateError, match="within 1s"):
        await render_message(template, PODINFO, timeout=1)


async def test_the_data_round_trips_through_the_pydantic_model() -> None:
    """The reconciler may pass a TemplateData built in Python: the renderer reads it as Go."""
    data = TemplateData.model_validate(PODINFO)

    assert await render_message(message_template(DOCS_METHODS), data) == DOCS_METHODS_MESSAGE


def test_the_renderer_refuses_a_request_with_a_field_it_has_no_place_for() -> None:
    binary = find_binary("gotemplate")
    assert binary is not None
    request = {"template": "x", "data": {**ONE_CHANGE, "Updated": {}}}

    done = subprocess.run(
        [binary], input=json.dumps(request), capture_output=True, text=True, check=False
    )

    assert done.returncode == 3
    assert done.stderr == 'bad request: json: unknown field "Updated"\n'


async def test_a_crashing_renderer_is_a_renderer_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing = tmp_path / "gotemplate"
    crashing.write_text(
        "#!/bin/sh\necho 'panic: boom' >&2\necho 'goroutine 1 [running]:' >&2\nexit 2\n"
    )
    crashing.chmod(0o755)
    monkeypatch.setenv("WEIR_GOTEMPLATE", str(crashing))

    with pytest.raises(RendererError) as raised:
        await render_message("{{ . }}", PODINFO)

    assert str(raised.value) == "gotemplate failed with exit code 2: panic: boom"
