"""Commit message rendering without the renderer: the default message, the data's Go shape,
and a missing renderer. The renderer itself: tests/integration/test_image_message.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from image_automation.message import (
    DEFAULT_MESSAGE,
    RendererError,
    TemplateData,
    render_message,
)

DATA: dict[str, Any] = {
    "AutomationObject": {"Namespace": "flux-system", "Name": "apps"},
    "Changed": {
        "FileChanges": {
            "kustomization.yaml": [
                {
                    "Object": {"APIVersion": "kustomize.config.k8s.io/v1beta1"},
                    "Changes": [{"OldValue": "1", "NewValue": "2", "Setter": "ns:p:tag"}],
                }
            ]
        }
    },
}


@pytest.fixture
def no_renderer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    missing = tmp_path / "gotemplate"
    monkeypatch.setenv("WEIR_GOTEMPLATE", str(missing))
    return missing


async def test_an_empty_template_is_flux_default_message_without_running_anything(
    no_renderer: Path,
) -> None:
    assert (
        await render_message("", DATA) == DEFAULT_MESSAGE == "Update from image update automation"
    )


async def test_a_missing_renderer_is_a_renderer_error(no_renderer: Path) -> None:
    with pytest.raises(RendererError, match="cannot run gotemplate"):
        await render_message("{{ .AutomationObject }}", DATA)


def test_the_data_has_flux_field_names_and_defaults() -> None:
    data = TemplateData.model_validate(DATA)

    assert data.model_dump(mode="json") == {
        "AutomationObject": {"Namespace": "flux-system", "Name": "apps"},
        "Changed": {
            "FileChanges": {
                "kustomization.yaml": [
                    {
                        # An object without a name, as a kustomization.yaml's images entry.
                        "Object": {
                            "APIVersion": "kustomize.config.k8s.io/v1beta1",
                            "Kind": "",
                            "Name": "",
                            "Namespace": "",
                        },
                        "Changes": [{"OldValue": "1", "NewValue": "2", "Setter": "ns:p:tag"}],
                    }
                ]
            }
        },
        "Values": {},
    }


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({**DATA, "Updated": {}}, id="a field Flux removed"),
        pytest.param(
            {**DATA, "AutomationObject": {"namespace": "flux-system", "name": "apps"}},
            id="JSON names instead of Go's",
        ),
        pytest.param({**DATA, "Values": {"replicas": 3}}, id="a value that is no string"),
    ],
)
async def test_data_not_in_flux_shape_is_refused_before_rendering(
    data: dict[str, Any], no_renderer: Path
) -> None:
    with pytest.raises(pydantic.ValidationError):
        await render_message("{{ . }}", data)
