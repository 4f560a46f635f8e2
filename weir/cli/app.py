"""The root command, the options every command takes, and how a command fails.

Every command takes the cluster options (``--kubeconfig``, ``--context``, ``-n``, ``-A``,
``--timeout``) wherever they are written, as ``flux`` does. A command body is a coroutine
that receives a ``Session``; it fails by raising ``CliError`` with a one-line cause and an
exit code (``docs/cli.md`` lists them). API and connection errors become one line too.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from controllers.kube import ApiError, KubeClient, KubeConfigError, KubeError, NotFound

__all__ = [
    "CliError",
    "Exit",
    "Session",
    "cluster_command",
    "console",
    "err_console",
    "fail",
    "main",
    "note",
]

DEFAULT_NAMESPACE = "flux-system"
DEFAULT_TIMEOUT = "5m"


class Exit(IntEnum):
    """The exit codes of every command (``docs/cli.md``)."""

    OK = 0
    FAILED = 1
    """The command ran and the answer is no: a reconcile failed, ``diff`` found changes."""
    USAGE = 2
    """Bad arguments or input (click's own code for usage errors)."""
    CLUSTER = 3
    """No kubeconfig, or the API server cannot be reached or refused the request."""
    NOT_FOUND = 4
    TIMEOUT = 5


class CliError(Exception):
    """A failure to report as one line, with the exit code it ends the command with."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _console(stderr: bool) -> Console:
    # Wide enough that tables are never wrapped when output goes to a file or a pipe.
    width = None if (sys.stderr if stderr else sys.stdout).isatty() else 200
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=True)


console = _console(stderr=False)
err_console = _console(stderr=True)


@dataclass
class Session:
    """What a command was asked for, and the API client once connected."""

    kubeconfig: str | None
    context: str | None
    namespace: str
    all_namespaces: bool
    timeout: float
    _client: KubeClient | None = None

    @property
    def scope(self) -> str | None:
        """The namespace to list in: None with ``-A``."""
        return None if self.all_namespaces else self.namespace

    def within_timeout(self) -> asyncio.Timeout:
        """``--timeout`` for a wait (listing and watching are not bounded by it)."""
        return asyncio.timeout(self.timeout)

    async def client(self) -> KubeClient:
        if self._client is None:
            kubeconfig = self.kubeconfig
            default = Path.home() / ".kube" / "config"
            if not kubeconfig and not os.environ.get("KUBECONFIG") and default.exists():
                kubeconfig = str(default)
            try:
                self._client = await KubeClient.connect(kubeconfig, context=self.context)
            except KubeConfigError as err:
                raise CliError(f"cannot use the kubeconfig: {err}", Exit.CLUSTER) from None
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def _parse_timeout(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from controllers.api import parse_duration

    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def cluster_command(
    body: Callable[..., Awaitable[None]],
) -> Callable[..., None]:
    """A click command body that talks to the cluster: adds the cluster options and runs the
    coroutine ``body(session, **params)``, turning errors into one line and an exit code."""

    @click.option(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
    )
    @click.option("--context", default=None, help="kubeconfig context to use.")
    @click.option(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        show_default=True,
        help="namespace of the objects.",
    )
    @click.option(
        "-A", "--all-namespaces", is_flag=True, help="every namespace (where a command lists)."
    )
    @click.option(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        show_default=True,
        callback=_parse_timeout,
        help="how long to wait for the cluster (Go duration: 30s, 5m).",
    )
    @functools.wraps(body)
    def command(
        kubeconfig: str | None,
        context: str | None,
        namespace: str,
        all_namespaces: bool,
        timeout: float,
        **params: Any,
    ) -> None:
        session = Session(kubeconfig, context, namespace, all_namespaces, timeout)
        code = asyncio.run(_run(body, session, params))
        if code:
            sys.exit(code)

    return command


async def _run(
    body: Callable[..., Awaitable[None]], session: Session, params: dict[str, Any]
) -> int:
    try:
        await body(session, **params)
        return Exit.OK
    except CliError as err:
        fail(err.message)
        return err.code
    except NotFound as err:
        fail(err.message)
        return Exit.NOT_FOUND
    except ApiError as err:
        fail(f"the API server refused: {err.message}")
        return Exit.CLUSTER
    except KubeError as err:
        fail(f"cannot reach the cluster: {err}")
        return Exit.CLUSTER
    except TimeoutError:
        fail(f"timed out after {session.timeout:g}s")
        return Exit.TIMEOUT
    finally:
        await session.close()


def fail(message: str) -> None:
    err_console.print(f"[red]✗[/red] {message}", markup=True)


def note(message: str) -> None:
    """A step under way or done, on stderr so that stdout stays the command's output."""
    err_console.print(message, markup=False)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="weir", prog_name="weir")
def main() -> None:
    """weir: GitOps for Kubernetes, on Flux's APIs.

    \b
    Examples:
      weir get all -A
      weir reconcile kustomization flux-system --with-source
      weir create source git podinfo --url=https://github.com/stefanprodan/podinfo --branch=master
    """
