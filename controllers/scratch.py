"""Each controller process's temporary files live in one directory of its own.

``claim_scratch_dir`` makes ``<system temp>/weir-<controller>-<pid>`` the process's temporary
directory (``tempfile.tempdir``: every ``mkdtemp`` of the process lands there, the runtime's
per-run directories and build workers' included) and removes the directories that processes of
the same controller left when they were killed: a ``SIGKILL`` or an OOM kill runs no
``finally``, and an unpacked artifact can be large.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["claim_scratch_dir"]


def claim_scratch_dir(controller: str, base: Path | None = None) -> Path:
    """Create this process's directory under ``base`` (default: the system's temporary
    directory), make it the process's temporary directory, and remove those of ``controller``
    processes that no longer run. Returns the directory; the caller removes it at exit."""
    base = Path(base or tempfile.gettempdir())
    pattern = re.compile(rf"weir-{re.escape(controller)}-(\d+)")
    for stale in base.glob(f"weir-{controller}-*"):
        found = pattern.fullmatch(stale.name)
        if found and not _running(int(found[1])) and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    scratch = base / f"weir-{controller}-{os.getpid()}"
    # Left by a dead process that had this pid.
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    tempfile.tempdir = str(scratch)
    return scratch


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
