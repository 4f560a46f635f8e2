"""The process entry point every weir controller uses, with Flux's flags."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from controllers.api import parse_duration
from controllers.logs import configure_logging
from controllers.manager import Manager, Options, Service
from controllers.reconcile import Reconciler
from controllers.scratch import claim_scratch_dir

__all__ = ["build_parser", "duration_arg", "main", "parse_options"]


def duration_arg(text: str) -> float:
    """An argparse type for Flux-style durations (30s, 5m, 750ms)."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _flag_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class _Flag:
    """A flag shared by every controller and the ``Options`` field it sets; the default is
    the field's, written once, in ``Options``."""

    name: str
    field: str
    type: Callable[[str], Any] = str
    metavar: str | None = None
    help: str | None = None


_FLAGS = (
    _Flag("--kubeconfig", "kubeconfig", help="path to a kubeconfig (default in-cluster)"),
    _Flag("--concurrent", "concurrent", int, help="workers per kind"),
    _Flag("--requeue-dependency", "requeue_dependency", duration_arg, "DURATION"),
    _Flag("--metrics-addr", "metrics_addr"),
    _Flag("--health-addr", "health_addr"),
    _Flag("--events-addr", "events_addr", help="notification controller events URL"),
    _Flag("--enable-leader-election", "enable_leader_election", _flag_bool),
    _Flag("--leader-election-namespace", "leader_election_namespace"),
    _Flag("--leader-election-lease-duration", "lease_duration", duration_arg, "DURATION"),
    _Flag("--leader-election-renew-deadline", "renew_deadline", duration_arg, "DURATION"),
    _Flag("--leader-election-retry-period", "retry_period", duration_arg, "DURATION"),
    _Flag("--min-retry-delay", "min_retry_delay", duration_arg, "DURATION"),
    _Flag("--max-retry-delay", "max_retry_delay", duration_arg, "DURATION"),
    _Flag("--kube-api-qps", "kube_api_qps", float),
    _Flag("--kube-api-burst", "kube_api_burst", int),
    _Flag("--interval-jitter-percentage", "interval_jitter_percentage", float),
    _Flag("--watch-all-namespaces", "watch_all_namespaces", _flag_bool),
    _Flag("--watch-label-selector", "watch_label_selector"),
    _Flag(
        "--watch-configs-label-selector",
        "watch_configs_label_selector",
        help="ConfigMaps and Secrets whose changes requeue the objects referring to them",
    ),
    _Flag("--graceful-shutdown-timeout", "graceful_shutdown_timeout", duration_arg, "DURATION"),
    _Flag(
        "--suspended-reminder-interval",
        "suspended_reminder_interval",
        duration_arg,
        "DURATION",
        help="how often a suspended object gets a StillSuspended Warning event (0s: never)",
    ),
)
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Options)}


def build_parser(
    name: str, *, concurrent: int | None = None, without: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """The flags shared by every controller; a controller may add its own to the result.
    ``concurrent`` overrides the default number of workers per kind; the flags named in
    ``without`` are left out (their options keep the default), for a controller that gives
    the name another meaning (the notification controller's ``--events-addr`` is where it
    listens)."""
    p = argparse.ArgumentParser(prog=name, description=f"weir {name}")
    defaults = {
        **_DEFAULTS,
        "leader_election_namespace": os.environ.get(
            "RUNTIME_NAMESPACE", _DEFAULTS["leader_election_namespace"]
        ),
    }
    if concurrent is not None:
        defaults["concurrent"] = concurrent
    for flag in _FLAGS:
        if flag.name in without:
            continue
        extra: dict[str, Any] = {}
        if flag.type is _flag_bool:
            # --flag alone means true, as with Go's boolean flags.
            extra = {"nargs": "?", "const": True}
        p.add_argument(
            flag.name,
            dest=flag.field,
            type=flag.type,
            default=defaults[flag.field],
            metavar=flag.metavar,
            help=flag.help,
            **extra,
        )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "error"])
    p.add_argument(
        "--log-encoding",
        default=None,
        choices=["json", "console"],
        help="default json, console on a terminal",
    )
    return p


def add_feature_gates(p: argparse.ArgumentParser, known: Mapping[str, bool]) -> None:
    """``--feature-gates A=true,B=false`` (Flux's flag) over the gates ``known`` (name: default);
    ``args.feature_gates`` is then every known gate with its value. An unknown gate or a value
    other than true/false is a usage error."""

    def parse(text: str) -> dict[str, bool]:
        gates = dict(known)
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if name not in known or not sep or value.lower() not in ("true", "false"):
                names = ", ".join(known)
                raise argparse.ArgumentTypeError(f"invalid feature gate {item!r} (known: {names})")
            gates[name] = value.lower() == "true"
        return gates

    p.add_argument(
        "--feature-gates",
        type=parse,
        default=dict(known),
        help="comma-separated Name=true|false: " + ", ".join(known),
    )


def parse_options(name: str, args: argparse.Namespace) -> Options:
    """Options from parsed flags; the identity is the pod name (or host) plus a random suffix."""
    if not 0 <= args.interval_jitter_percentage < 100:
        raise SystemExit(f"{name}: --interval-jitter-percentage must be in [0, 100)")
    if args.concurrent < 1:
        raise SystemExit(f"{name}: --concurrent must be at least 1")
    # Zero would retry failures, or renew the lease, in a loop without pause.
    positive = ("min_retry_delay", "max_retry_delay", "retry_period")
    for flag in _FLAGS:
        if flag.field in positive and getattr(args, flag.field) <= 0:
            raise SystemExit(f"{name}: {flag.name} must be above zero")
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return Options(
        name=name,
        identity=f"{host}_{uuid.uuid4().hex[:8]}",
        watch_namespace=os.environ.get("RUNTIME_NAMESPACE"),
        **{flag.field: getattr(args, flag.field) for flag in _FLAGS if hasattr(args, flag.field)},
    )


async def _serve(manager: Manager) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, manager.stop.set)
    await manager.run()


def main(
    name: str,
    reconcilers: Callable[[argparse.Namespace], Sequence[Reconciler[Any]]],
    argv: Sequence[str] | None = None,
    *,
    parser: argparse.ArgumentParser | None = None,
    services: Callable[[argparse.Namespace], Sequence[Service]] = lambda args: (),
) -> int:
    """Parse flags, set up logging and run the manager; the exit code of the process."""
    parser = parser or build_parser(name)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_encoding)
    options = parse_options(name, args)
    scratch = claim_scratch_dir(name)
    try:
        asyncio.run(_serve(Manager(options, reconcilers(args), services(args))))
    except Exception as err:
        structlog.get_logger().exception("controller failed", controller=name, error=str(err))
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0
