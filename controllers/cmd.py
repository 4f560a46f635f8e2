"""The process entry point every weir controller uses, with Flux's flags."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
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


def build_parser(name: str, *, concurrent: int = 4) -> argparse.ArgumentParser:
    """The flags shared by every controller; a controller may add its own to the result."""
    p = argparse.ArgumentParser(prog=name, description=f"weir {name}")
    p.add_argument("--kubeconfig", default=None, help="path to a kubeconfig (default in-cluster)")
    p.add_argument("--concurrent", type=int, default=concurrent, help="workers per kind")
    p.add_argument("--requeue-dependency", type=duration_arg, default=30.0, metavar="DURATION")
    p.add_argument("--metrics-addr", default=":8080")
    p.add_argument("--health-addr", default=":9440")
    p.add_argument("--events-addr", default="", help="notification controller events URL")
    p.add_argument(
        "--enable-leader-election", type=_flag_bool, nargs="?", const=True, default=False
    )
    p.add_argument(
        "--leader-election-namespace", default=os.environ.get("RUNTIME_NAMESPACE", "flux-system")
    )
    p.add_argument("--leader-election-lease-duration", type=duration_arg, default=35.0)
    p.add_argument("--leader-election-renew-deadline", type=duration_arg, default=30.0)
    p.add_argument("--leader-election-retry-period", type=duration_arg, default=5.0)
    p.add_argument("--min-retry-delay", type=duration_arg, default=0.75, metavar="DURATION")
    p.add_argument("--max-retry-delay", type=duration_arg, default=900.0, metavar="DURATION")
    p.add_argument("--kube-api-qps", type=float, default=50.0)
    p.add_argument("--kube-api-burst", type=int, default=300)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "error"])
    p.add_argument(
        "--log-encoding",
        default=None,
        choices=["json", "console"],
        help="default json, console on a terminal",
    )
    p.add_argument("--interval-jitter-percentage", type=float, default=5.0)
    p.add_argument("--watch-all-namespaces", type=_flag_bool, nargs="?", const=True, default=True)
    p.add_argument("--watch-label-selector", default=None)
    p.add_argument("--graceful-shutdown-timeout", type=duration_arg, default=30.0)
    return p


def parse_options(name: str, args: argparse.Namespace) -> Options:
    """Options from parsed flags; the identity is the pod name (or host) plus a random suffix."""
    if not 0 <= args.interval_jitter_percentage < 100:
        raise SystemExit(f"{name}: --interval-jitter-percentage must be in [0, 100)")
    if args.concurrent < 1:
        raise SystemExit(f"{name}: --concurrent must be at least 1")
    # Zero would retry failures, or renew the lease, in a loop without pause.
    for flag in ("min_retry_delay", "max_retry_delay", "leader_election_retry_period"):
        if getattr(args, flag) <= 0:
            raise SystemExit(f"{name}: --{flag.replace('_', '-')} must be above zero")
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return Options(
        name=name,
        identity=f"{host}_{uuid.uuid4().hex[:8]}",
        kubeconfig=args.kubeconfig,
        concurrent=args.concurrent,
        requeue_dependency=args.requeue_dependency,
        metrics_addr=args.metrics_addr,
        health_addr=args.health_addr,
        events_addr=args.events_addr,
        enable_leader_election=args.enable_leader_election,
        leader_election_namespace=args.leader_election_namespace,
        lease_duration=args.leader_election_lease_duration,
        renew_deadline=args.leader_election_renew_deadline,
        retry_period=args.leader_election_retry_period,
        min_retry_delay=args.min_retry_delay,
        max_retry_delay=args.max_retry_delay,
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        interval_jitter_percentage=args.interval_jitter_percentage,
        watch_all_namespaces=args.watch_all_namespaces,
        watch_namespace=os.environ.get("RUNTIME_NAMESPACE"),
        watch_label_selector=args.watch_label_selector,
        graceful_shutdown_timeout=args.graceful_shutdown_timeout,
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
