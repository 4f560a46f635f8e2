"""The environment the tests run the Go-built ``helm`` in: Helm's own directories, and HOME
(where client-go keeps its discovery cache, else ``.kube/`` in the working directory), under
a home of the test's, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["helm_env"]


def helm_env(home: Path, *, inherit: bool = True) -> dict[str, str]:
    """The process environment (only ``PATH`` when not ``inherit``) with Helm's homes and
    HOME under ``home``."""
    base = dict(os.environ) if inherit else {"PATH": "/usr/bin:/bin"}
    return {
        **base,
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
