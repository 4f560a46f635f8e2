"""Each YAML fuzz target (tests/fuzz/yaml_targets.py) for a few seconds, from its seeds: no
input may break an invariant, take more than a few seconds or grow the process past a bound.
``hack/fuzz.sh`` runs the same targets for longer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 3
TIMEOUT_PER_INPUT = 10
RSS_LIMIT_MB = 1536


def target_names() -> list[str]:
    """The keys of ``TARGETS`` in yaml_targets.py, read from its source: importing it here
    would instrument nothing, as what it instruments is already imported."""
    source = (ROOT / "tests" / "fuzz" / "yaml_targets.py").read_text()
    listed = re.search(r"^TARGETS: .*?^\}", source, re.MULTILINE | re.DOTALL)
    assert listed is not None
    return re.findall(r'^    "(\w+)": fuzz_', listed[0], re.MULTILINE)


def fuzz(target: str, workdir: Path, seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.yaml_targets",
            target,
            str(workdir / "corpus"),
            f"-max_total_time={seconds}",
            f"-timeout={TIMEOUT_PER_INPUT}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-artifact_prefix={workdir}/",
            "-print_final_stats=1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )


def test_every_target_is_found() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.yaml_targets", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    assert listed.stdout.split() == target_names()
    assert {"safeyaml", "substitute", "decrypt"} <= set(target_names())


@pytest.mark.parametrize("target", target_names())
def test_a_short_fuzzing_run_finds_nothing(target: str, tmp_path: Path) -> None:
    run = fuzz(target, tmp_path, SECONDS)

    crashes = sorted(path.name for path in tmp_path.iterdir() if path.is_file())
    output = "\n".join(run.stderr.splitlines()[-60:])
    assert (run.returncode, crashes) == (0, []), f"{target} fuzzing failed:\n{output}"
    assert re.search(r"^Done \d+ runs", run.stderr, re.MULTILINE), output
