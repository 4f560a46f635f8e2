"""Running the ``weir`` console script as a user does, and golden files for its output."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "cli"
WEIR = [sys.executable, "-m", "weir"]
# Bootstrap and install wait for rollouts; anything slower than this is a hang.
TIMEOUT_SECONDS = 240


@dataclass
class Result:
    code: int
    out: str
    err: str


async def run_weir(*args: str) -> Result:
    done = await asyncio.to_thread(
        subprocess.run,
        [*WEIR, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass
class Cli:
    """Runs ``weir`` with the control plane's kubeconfig in the test's namespace."""

    kubeconfig: Path
    namespace: str

    async def __call__(self, *args: str) -> Result:
        return await run_weir(
            *args, f"--kubeconfig={self.kubeconfig}", f"--namespace={self.namespace}"
        )

    def normalized(self, text: str) -> str:
        """``text`` with what changes from run to run replaced: namespace, SHAs, ages."""
        text = text.replace(self.namespace, "NAMESPACE")
        text = re.sub(r"sha1:[0-9a-f]{40}", "sha1:SHA", text)
        text = re.sub(r"git://127\.0\.0\.1:\d+/", "git://GIT/", text)
        return re.sub(r"[ \t]+\n", "\n", text)


def golden(name: str, actual: str) -> None:
    """``actual`` equals the golden file (``WEIR_UPDATE_GOLDEN=1`` rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("WEIR_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} differs from the golden file"
