"""The ``weir`` command line, with the habits of ``flux`` and ``kubectl``.

``app`` holds the root group, the options every command takes and the one way a command
talks to the cluster and fails; ``kinds`` says which kinds the commands know; each other
module adds its commands to the root group. A kind is added by registering it in ``kinds``
(``get``, ``reconcile``, ``suspend``, ``resume`` and ``export`` then know it) and, if it can
be created, with a ``create`` command (``create_image`` holds the image automation kinds').
"""

from weir.cli import (
    bootstrap,
    build,
    check,
    create,
    create_image,
    diff,
    drift,
    events,
    export,
    get,
    helmdiff,
    install,
    logs,
    reconcile,
    secret,
    stats,
    suspend,
    trace,
    tree,
    trigger,
    uninstall,
)
from weir.cli.app import main

__all__ = [
    "bootstrap",
    "build",
    "check",
    "create",
    "create_image",
    "diff",
    "drift",
    "events",
    "export",
    "get",
    "helmdiff",
    "install",
    "logs",
    "main",
    "reconcile",
    "secret",
    "stats",
    "suspend",
    "trace",
    "tree",
    "trigger",
    "uninstall",
]
