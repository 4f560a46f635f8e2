"""weir on the embedded default: a local control plane, a local Git repository served by
``git daemon``, every controller built so far, and a GitRepository plus a Kustomization that
sync that repository into the cluster.

Run through ``hack/run-local.sh``. Everything lives under ``.weir/``; Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controllers.envtest import ControlPlane, ControlPlaneError, die_with_parent, free_port
from controllers.kinds import NAMESPACE
from controllers.kube import Conflict, KubeClient
from kustomize.api_v1 import Kustomization
from source.api_v1 import GitRepository

GITREPOSITORY = GitRepository.info
KUSTOMIZATION = Kustomization.info
DEMO_FILES = {
    "deploy/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
    "deploy/config.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: demo\n"
        "data:\n  message: hello from weir\n"
    ),
}


def demo_repository(root: Path) -> Path:
    """``root/demo.git``, created with a first commit of DEMO_FILES if it does not exist."""
    bare = root / "demo.git"
    if bare.exists():
        return bare
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "weir",
        "GIT_AUTHOR_EMAIL": "weir@localhost",
        "GIT_COMMITTER_NAME": "weir",
        "GIT_COMMITTER_EMAIL": "weir@localhost",
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for name, content in DEMO_FILES.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(content)
        for args in (
            ["init", "-q", "-b", "main"],
            ["add", "."],
            ["commit", "-qm", "Demo manifests"],
        ):
            subprocess.run(["git", *args], cwd=work, env=env, check=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


async def apply_demo(kubeconfig: Path, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create flux-system, the demo GitRepository and the Kustomization applying its
    ``deploy/``; wait for the artifact and for the Kustomization to be Ready."""
    client = await KubeClient.connect(str(kubeconfig))
    source_ref = {"kind": "GitRepository", "name": "weir-demo"}
    try:
        for info, obj in (
            (NAMESPACE, {"metadata": {"name": "flux-system"}}),
            (
                GITREPOSITORY,
                {
                    "apiVersion": "source.toolkit.fluxcd.io/v1",
                    "kind": "GitRepository",
                    "metadata": {"name": "weir-demo", "namespace": "flux-system"},
                    "spec": {"url": url, "interval": "1m", "ref": {"branch": "main"}},
                },
            ),
            (
                KUSTOMIZATION,
                {
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                    "kind": "Kustomization",
                    "metadata": {"name": "weir-demo", "namespace": "flux-system"},
                    "spec": {
                        "interval": "1m",
                        "path": "./deploy",
                        "prune": True,
                        "sourceRef": source_ref,
                    },
                },
            ),
        ):
            with contextlib.suppress(Conflict):  # left from an earlier run: keep it
                await client.create(info, obj)
        deadline = time.monotonic() + 90
        ready: dict[str, Any] = {}
        while time.monotonic() < deadline:
            source = await client.get(GITREPOSITORY, "flux-system", "weir-demo")
            applier = await client.get(KUSTOMIZATION, "flux-system", "weir-demo")
            artifact = (source.get("status") or {}).get("artifact")
            conditions = (applier.get("status") or {}).get("conditions") or []
            ready = next((dict(c) for c in conditions if c.get("type") == "Ready"), {})
            if artifact and ready.get("status") == "True":
                return dict(artifact), ready
            await asyncio.sleep(0.5)  # a person is watching; a plain poll is fine here
        raise ControlPlaneError(
            f"the demo was not synced within 90s: Kustomization Ready={ready or 'unknown'}"
        )
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="hack/run-local.sh")
    parser.add_argument("--dir", type=Path, default=Path(".weir"))
    args = parser.parse_args()
    base = args.dir.resolve()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with ControlPlane(base / "cluster") as plane:
            bare = demo_repository(base / "git")
            git_port, storage_port = free_port(), free_port()
            daemon = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--export-all",
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                    f"--port={git_port}",
                    f"--base-path={bare.parent}",
                    str(bare.parent),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            try:
                started = plane.start_controllers(
                    {
                        "source": [
                            f"--storage-path={base / 'storage'}",
                            f"--storage-addr=127.0.0.1:{storage_port}",
                            f"--storage-adv-addr=127.0.0.1:{storage_port}",
                        ]
                    }
                )
                url = f"git://127.0.0.1:{git_port}/demo.git"
                artifact, ready = asyncio.run(apply_demo(plane.admin_kubeconfig, url))
                print(f"control plane:  {plane.server}")
                print(f"controllers:    {', '.join(started)} (logs in {plane.workdir})")
                print(f"git repository: {url} (work on it in {bare})")
                print(f"artifact:       {artifact['revision']} at {artifact['url']}")
                print(f"kustomization:  flux-system/weir-demo {ready['message']}")
                print("                (kubectl get configmap -n demo greeting)")
                print(f"export KUBECONFIG={plane.admin_kubeconfig}")
                print("Ctrl-C stops everything.", flush=True)
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
                print("stopping", flush=True)
            finally:
                daemon.terminate()
                daemon.wait()
        return 0
    except ControlPlaneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
