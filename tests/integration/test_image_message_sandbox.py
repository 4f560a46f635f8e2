"""What a commit message template cannot reach, with the real renderer (``hack/tools/gotemplate``):
Sprig's functions that read the environment, the network, the clock or a random source are not
defined (Flux's ``HermeticTxtFuncMap``), so a tenant's template cannot read the controller's
environment (its service-account token path, proxy settings) or resolve names from inside the
cluster. ``docs/security.md`` cites this file.

Integration tests by place only: they need the built binary, not the control plane.
"""

from __future__ import annotations

import pytest

from image_automation.message import MessageTemplateError, render_message
from image_automation.update_result import Result, template_data

pytestmark = pytest.mark.integration

DATA = template_data(Result(), namespace="apps", name="auto")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param('env "HOME"', id="env"),
        pytest.param('expandenv "$HOME"', id="expandenv"),
        pytest.param('getHostByName "kubernetes.default"', id="dns"),
        pytest.param("now", id="clock"),
        pytest.param("randAlpha 8", id="random"),
        pytest.param("uuidv4", id="uuid"),
    ],
)
async def test_functions_that_reach_outside_the_data_are_not_defined(call: str) -> None:
    name = call.split()[0]

    with pytest.raises(MessageTemplateError) as raised:
        await render_message(f"before {{{{ {call} }}}} after", DATA)

    assert str(raised.value) == f'template: commit message:1: function "{name}" not defined'


async def test_the_automation_and_its_values_are_all_a_template_sees() -> None:
    data = template_data(Result(), namespace="apps", name="auto", values={"env": "dev"})

    message = await render_message("{{ .AutomationObject }} {{ .Values.env }}", data)

    assert message == "apps/auto dev"
