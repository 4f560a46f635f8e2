"""``python -m image_automation``: the image automation controller process.

One process for what Flux splits in two (image-reflector-controller and
image-automation-controller): the ImageRepository scans, and the reconcilers that read them
through the same ``TagStore``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controllers.cmd import build_parser, main
from controllers.reconcile import Reconciler
from image_automation.imagepolicy import ImagePolicyReconciler
from image_automation.imagerepository import ImageRepositoryReconciler
from image_automation.imageupdateautomation import ImageUpdateAutomationReconciler
from image_automation.tags import TagStore

NAME = "image-automation-controller"


def parser() -> argparse.ArgumentParser:
    p = build_parser(NAME)
    p.add_argument(
        "--no-cross-namespace-refs",
        action="store_true",
        help="refuse references to ImageRepositories and GitRepositories in other namespaces",
    )
    return p


def reconcilers(args: argparse.Namespace) -> list[Reconciler[Any]]:
    """Every kind this controller reconciles, sharing one tag store."""
    store = TagStore(field_manager=NAME)
    return [
        ImageRepositoryReconciler(store),
        ImagePolicyReconciler(
            store,
            no_cross_namespace_refs=args.no_cross_namespace_refs,
            requeue_dependency=args.requeue_dependency,
        ),
        ImageUpdateAutomationReconciler(no_cross_namespace_refs=args.no_cross_namespace_refs),
    ]


if __name__ == "__main__":
    sys.exit(main(NAME, reconcilers, parser=parser()))
