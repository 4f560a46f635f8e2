"""Shell completion of the ``weir`` command (click's, for bash, zsh and fish)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def complete(words: str) -> list[str]:
    """What bash completion offers for the last of ``words``."""
    env = {
        **os.environ,
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        "_WEIR_COMPLETE": "bash_complete",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from weir.cli import main; main(prog_name='weir')"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split(",", 1)[1] for line in done.stdout.splitlines()]


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        pytest.param("weir re", ["reconcile", "resume"], id="verbs"),
        pytest.param("weir get k", ["kustomization"], id="kinds"),
        pytest.param(
            "weir get source ", ["all", "bucket", "chart", "git", "helm", "oci"], id="source-kinds"
        ),
        pytest.param(
            "weir get images ", ["all", "policy", "repository", "update"], id="image-kinds"
        ),
        pytest.param("weir bootstrap git --pri", ["--private-key-file"], id="options"),
        pytest.param("weir get alert", ["alert", "alert-provider"], id="notification-kinds"),
        # Alerts and Providers have no status: nothing to wait for, no reconcile command.
        pytest.param(
            "weir reconcile ",
            ["helmrelease", "image", "kustomization", "receiver", "source"],
            id="reconciled",
        ),
        pytest.param("weir trigger ", ["receiver"], id="trigger"),
        pytest.param("weir create alert-provider x --type=sla", ["slack"], id="provider-types"),
    ],
)
def test_completion_offers_commands_kinds_and_options(words: str, offered: list[str]) -> None:
    assert complete(words) == offered


def test_the_completion_script_is_printed_for_each_shell() -> None:
    for shell in ("bash", "zsh", "fish"):
        done = subprocess.run(
            [sys.executable, "-c", "from weir.cli import main; main(prog_name='weir')"],
            env={**os.environ, "_WEIR_COMPLETE": f"{shell}_source"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert "_WEIR_COMPLETE" in done.stdout, shell
