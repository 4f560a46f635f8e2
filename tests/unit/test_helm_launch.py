"""``helm.launch``: the process Helm runs in is ``helm-controller``, with Helm's homes set at
``exec`` (the Go runtime inside reads argv and the environment only from there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controllers.envtest import REPO_ROOT
from helm.launch import HELM_HOME_VARIABLES, helm_environment, needs_exec

HOMES = {name: f"/h/{name}" for name in HELM_HOME_VARIABLES}


def test_helm_environment_fills_only_what_is_unset() -> None:
    environ = helm_environment(
        {"HELM_DATA_HOME": "/mine", "HELM_PLUGINS": "", "PATH": "/bin"}, Path("/x")
    )
    assert environ == {
        "PATH": "/bin",
        "HELM_CACHE_HOME": "/x/cache",
        "HELM_CONFIG_HOME": "/x/config",
        "HELM_DATA_HOME": "/mine",
        "HELM_PLUGINS": "/x/data/plugins",
    }


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param(["/venv/bin/helm-controller", "-m", "helm"], HOMES, False, id="ready"),
        pytest.param(["/venv/bin/python", "-m", "helm"], HOMES, True, id="program-name"),
        pytest.param(["helm-controller"], {**HOMES, "HELM_PLUGINS": ""}, True, id="a-home-unset"),
        pytest.param([], HOMES, True, id="no-argv"),
    ],
)
def test_needs_exec(argv: list[str], environ: dict[str, str], expected: bool) -> None:
    assert needs_exec(argv, environ) is expected


SCRIPT = """
import json, os, sys
from helm.launch import exec_as_helm_controller
exec_as_helm_controller()
import helm_python  # the venv's packages are still found
with open("/proc/self/cmdline", "rb") as cmdline:
    argv0 = cmdline.read().split(b"\\0")[0].decode()
print(json.dumps({
    "argv0": argv0,
    "executable": sys.executable,
    "argv": sys.argv,
    "homes": {k: v for k, v in os.environ.items() if k.startswith("HELM_")},
}))
"""


def test_exec_as_helm_controller(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env["TMPDIR"] = str(tmp_path)
    env["HELM_CONFIG_HOME"] = "/kept"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "--flag", "value"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv0"] == str(Path(sys.executable).parent / "helm-controller")
    assert seen["executable"] == sys.executable  # put back: the argv[0] path does not exist
    assert seen["argv"] == ["-c", "--flag", "value"]
    assert seen["homes"] == {
        "HELM_CACHE_HOME": str(tmp_path / "helm-controller" / "cache"),
        "HELM_CONFIG_HOME": "/kept",
        "HELM_DATA_HOME": str(tmp_path / "helm-controller" / "data"),
        "HELM_PLUGINS": str(tmp_path / "helm-controller" / "data" / "plugins"),
    }
