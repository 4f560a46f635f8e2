"""``python -m source``: the source controller process."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from controllers.cmd import build_parser, duration_arg, main
from controllers.manager import Service, ServiceContext
from controllers.reconcile import Reconciler
from source.bucket import BucketReconciler
from source.gitrepository import GitRepositoryReconciler
from source.helmchart import HelmChartReconciler
from source.helmrepository import HelmRepositoryReconciler
from source.ocirepository import OCIRepositoryReconciler
from source.server import start_artifact_server
from source.storage import DEFAULT_MAX_CONTENT_SIZE, ArtifactStorage

NAME = "source-controller"


def parser() -> argparse.ArgumentParser:
    p = build_parser(NAME, concurrent=2)
    p.add_argument("--storage-path", type=Path, default=Path("/data"))
    p.add_argument("--storage-addr", default=":9090")
    p.add_argument("--storage-adv-addr", default=None, help="host:port in artifact URLs")
    p.add_argument("--artifact-retention-ttl", type=duration_arg, default=60.0)
    p.add_argument("--artifact-retention-records", type=int, default=2)
    p.add_argument(
        "--artifact-max-size",
        type=int,
        default=DEFAULT_MAX_CONTENT_SIZE,
        help="bytes one artifact may hold before compression",
    )
    return p


def storage(args: argparse.Namespace) -> ArtifactStorage:
    advertised = args.storage_adv_addr or _advertised(args.storage_addr)
    return ArtifactStorage(
        args.storage_path,
        advertised,
        retention_ttl=args.artifact_retention_ttl,
        retention_records=args.artifact_retention_records,
        max_content_size=args.artifact_max_size,
    )


def reconcilers(artifacts: ArtifactStorage) -> list[Reconciler[Any]]:
    """Every kind this controller reconciles, sharing one storage."""
    return [
        GitRepositoryReconciler(artifacts),
        OCIRepositoryReconciler(artifacts),
        BucketReconciler(artifacts),
        HelmRepositoryReconciler(artifacts),
        HelmChartReconciler(artifacts),
    ]


def _advertised(addr: str) -> str:
    host, _, port = addr.rpartition(":")
    return f"{host or socket.gethostname()}:{port}"


def services(args: argparse.Namespace) -> list[Service]:
    @asynccontextmanager
    async def artifact_server(context: ServiceContext) -> AsyncIterator[None]:
        host, _, port = args.storage_addr.rpartition(":")
        runner = await start_artifact_server(args.storage_path, host or "0.0.0.0", int(port))  # noqa: S104
        try:
            yield
        finally:
            await runner.cleanup()

    return [artifact_server]


if __name__ == "__main__":
    sys.exit(
        main(
            NAME,
            lambda args: reconcilers(storage(args)),
            parser=parser(),
            services=services,
        )
    )
