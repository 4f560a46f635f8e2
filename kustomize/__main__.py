"""``python -m kustomize``: the kustomize controller process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controllers.cmd import add_feature_gates, build_parser, main
from controllers.reconcile import Reconciler
from controllers.target import add_target_flags
from kustomize.buildworker import (
    DEFAULT_MAX_WORKERS,
    DEFAULT_MEMORY_LIMIT,
    BuildWorkers,
    find_build_worker,
)
from kustomize.kustomization import KustomizationReconciler

NAME = "kustomize-controller"
# AdditiveCELDependencyCheck: a dependsOn readyExpr adds to the built-in readiness check
# instead of replacing it.
FEATURE_GATES = {"StrictPostBuildSubstitutions": False, "AdditiveCELDependencyCheck": False}


def parser() -> argparse.ArgumentParser:
    p = build_parser(NAME)
    p.add_argument(
        "--kustomize-build-worker",
        default=None,
        metavar="PATH",
        help="path to the kustomize build worker binary (default: the build cache)",
    )
    p.add_argument(
        "--build-workers",
        type=at_least_one,
        default=DEFAULT_MAX_WORKERS,
        metavar="N",
        help="kustomize builds run at once, each in a worker process (default 4)",
    )
    p.add_argument(
        "--build-memory-limit",
        type=byte_size,
        default=DEFAULT_MEMORY_LIMIT,
        metavar="SIZE",
        help="resident memory one kustomize build may use, e.g. 512Mi or 1Gi (default 512Mi)",
    )
    p.add_argument(
        "--no-remote-bases",
        action="store_true",
        help="refuse kustomizations that pull bases or components from remote locations",
    )
    p.add_argument(
        "--no-cross-namespace-refs",
        action="store_true",
        help="refuse references to sources, dependencies and Secrets in other namespaces",
    )
    add_target_flags(p)
    add_feature_gates(p, FEATURE_GATES)
    return p


def at_least_one(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: at least 1")
    return int(text)


_BYTE_UNITS = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def byte_size(text: str) -> int:
    """``512Mi`` → 536870912: a Kubernetes-style binary quantity (Ki, Mi, Gi or bytes)."""
    number, unit = text.rstrip("KMGi"), text[len(text.rstrip("KMGi")) :]
    if unit not in _BYTE_UNITS or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 512Mi or 1Gi")
    return int(number) * _BYTE_UNITS[unit]


def reconcilers(args: argparse.Namespace) -> list[Reconciler[Any]]:
    gates = args.feature_gates
    return [
        KustomizationReconciler(
            build_workers=BuildWorkers(
                find_build_worker(args.kustomize_build_worker),
                allow_remote_bases=not args.no_remote_bases,
                memory_limit=args.build_memory_limit,
                max_workers=args.build_workers,
            ),
            no_cross_namespace_refs=args.no_cross_namespace_refs,
            default_service_account=args.default_service_account,
            requeue_dependency=args.requeue_dependency,
            strict_substitution=gates["StrictPostBuildSubstitutions"],
            additive_cel_dependency_check=gates["AdditiveCELDependencyCheck"],
            insecure_kubeconfig_exec=args.insecure_kubeconfig_exec,
            insecure_kubeconfig_tls=args.insecure_kubeconfig_tls,
        )
    ]


if __name__ == "__main__":
    sys.exit(main(NAME, reconcilers, parser=parser()))
