"""``python -m helm``: the helm controller process.

It first makes itself ``helm-controller`` with Helm's homes set (:mod:`helm.launch`, which may
replace the process): that must happen before anything imports ``helm_python``, so the
reconciler (which loads Helm's library) is imported only after it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controllers.cmd import add_feature_gates, build_parser, main
from controllers.reconcile import Reconciler
from controllers.target import add_target_flags
from helm.launch import exec_as_helm_controller

NAME = "helm-controller"
# Flux's helm-controller gates weir implements, with Flux's defaults.
FEATURE_GATES = {"AdditiveCELDependencyCheck": False}


def parser() -> argparse.ArgumentParser:
    p = build_parser(NAME)
    p.add_argument(
        "--no-cross-namespace-refs",
        action="store_true",
        help="refuse references to charts and sources in other namespaces",
    )
    add_target_flags(p)
    add_feature_gates(p, FEATURE_GATES)
    return p


def reconcilers(args: argparse.Namespace) -> list[Reconciler[Any]]:
    # Imported only now: it loads Helm's library (see the module docstring).
    from helm.helmrelease import HelmReleaseReconciler

    return [
        HelmReleaseReconciler(
            kubeconfig=args.kubeconfig,
            no_cross_namespace_refs=args.no_cross_namespace_refs,
            default_service_account=args.default_service_account,
            requeue_dependency=args.requeue_dependency,
            additive_cel_dependency_check=args.feature_gates["AdditiveCELDependencyCheck"],
            insecure_kubeconfig_exec=args.insecure_kubeconfig_exec,
            insecure_kubeconfig_tls=args.insecure_kubeconfig_tls,
        )
    ]


def run() -> int:
    """Start the controller; the process's exit code."""
    exec_as_helm_controller()
    return main(NAME, reconcilers, parser=parser())


if __name__ == "__main__":
    sys.exit(run())
