"""``python -m notification``: the notification controller process.

Three parts in one process, as in Flux: the Receiver reconciler, the receiver server
(webhooks in, ``--receiver-addr``) and the event server (events from the other controllers in,
alerts out, ``--events-addr``). This controller forwards no events of its own: here
``--events-addr`` is where it listens.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controllers.cmd import build_parser, duration_arg, main
from controllers.manager import Service
from controllers.reconcile import Reconciler
from notification.event_server import event_service
from notification.receiver import ReceiverReconciler
from notification.receiver_server import receiver_service

NAME = "notification-controller"


def parser() -> argparse.ArgumentParser:
    p = build_parser(NAME, without=("--events-addr",))
    p.add_argument(
        "--events-addr",
        dest="events_listen_addr",
        default=":9090",
        help="address the event server listens on (default :9090)",
    )
    p.add_argument(
        "--receiver-addr",
        "--receiverAddr",
        dest="receiver_addr",
        default=":9292",
        help="address the webhook receiver server listens on (default :9292)",
    )
    p.add_argument(
        "--rate-limit-interval",
        type=duration_arg,
        default=300.0,
        metavar="DURATION",
        help="an event equal to one forwarded within this interval is dropped (default 5m)",
    )
    p.add_argument(
        "--no-cross-namespace-refs",
        action="store_true",
        help="refuse Alert event sources and Receiver resources in other namespaces",
    )
    return p


def reconcilers(args: argparse.Namespace) -> list[Reconciler[Any]]:
    return [ReceiverReconciler(no_cross_namespace_refs=args.no_cross_namespace_refs)]


def services(args: argparse.Namespace) -> list[Service]:
    return [
        receiver_service(args.receiver_addr, no_cross_namespace_refs=args.no_cross_namespace_refs),
        event_service(
            args.events_listen_addr,
            rate_limit_interval=args.rate_limit_interval,
            no_cross_namespace_refs=args.no_cross_namespace_refs,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(NAME, reconcilers, parser=parser(), services=services))
