"""``weir diff helmrelease``'s pure parts: the artifact URL at ``--source-addr``, and that the
``weir`` process never loads Helm's library (its Go runtime must see Helm's homes at exec, so
only the render's child process may)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from weir.cli.helmdiff import _at_address


@pytest.mark.parametrize(
    ("url", "address", "expected"),
    [
        pytest.param(
            "http://source-controller.flux-system.svc.cluster.local./helmchart/a/b/c-1.0.0.tgz",
            "http://127.0.0.1:9090",
            "http://127.0.0.1:9090/helmchart/a/b/c-1.0.0.tgz",
            id="port-forward",
        ),
        pytest.param(
            "http://source-controller.flux-system.svc/helmchart/a/b/c-1.0.0.tgz",
            "127.0.0.1:9090",
            "http://127.0.0.1:9090/helmchart/a/b/c-1.0.0.tgz",
            id="no-scheme",
        ),
        pytest.param(
            "http://source-controller/ocirepository/a/b/sha256.tar.gz?x=1",
            "https://gateway.example/flux/",
            "https://gateway.example/flux/ocirepository/a/b/sha256.tar.gz?x=1",
            id="behind-a-path",
        ),
    ],
)
def test_artifact_url_at_the_source_address(url: str, address: str, expected: str) -> None:
    assert _at_address(url, address) == expected


def test_the_command_line_does_not_load_helm() -> None:
    code = "import sys, weir.cli; sys.exit('helm_python' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
