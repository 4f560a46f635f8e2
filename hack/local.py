"""weir's main job on the embedded default: a local control plane, a Git repository served by
``git daemon``, ``weir bootstrap git`` onto that repository, and the controllers following it.

With no arguments the repository is a new example fleet (an app with a base and two
overlays, as teams lay them out, and ``clusters/local`` selecting the staging overlay). With
``--repo PATH|URL`` it is a copy of your own repository (weir never pushes to the original),
and ``--path`` names the cluster directory to bootstrap (``clusters/<name>``).

The local cluster has no container runtime: the bundle's Deployments are applied (kwok reports
their pods running) and the controllers run here as processes with the arguments of those
Deployments, only the addresses, the storage directory and the kubeconfig changed: the others
send their events to the notification controller's event server on loopback, and its webhook
receiver listens on a loopback port (the same one at each start, when free), printed so that a
Git host on this machine can post to it.

Run through ``hack/run-local.sh``. Everything lives under ``.weir/``; Ctrl-C stops it all, and
a second start reuses the cluster's data and the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from controllers.envtest import ControlPlane, ControlPlaneError, die_with_parent, free_port
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from weir.bundle import COMPONENTS, BundleOptions, render

NAMESPACE = "flux-system"
ALL_READY_SECONDS = 180
GIT_ENV = {
    "GIT_AUTHOR_NAME": "weir",
    "GIT_AUTHOR_EMAIL": "weir@localhost",
    "GIT_COMMITTER_NAME": "weir",
    "GIT_COMMITTER_EMAIL": "weir@localhost",
}


def _dump(*objects: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects)


def example_fleet() -> dict[str, str]:
    """An app (ConfigMap, Deployment, Service) with staging and production overlays, and the
    cluster directory ``clusters/local`` whose Kustomization applies the staging overlay."""
    labels = {"app": "podinfo"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "podinfo",
                            "image": "ghcr.io/stefanprodan/podinfo:6.7.1",
                            "ports": [{"containerPort": 9898, "name": "http"}],
                            "envFrom": [{"configMapRef": {"name": "podinfo"}}],
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "podinfo"},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "podinfo"},
        "data": {"PODINFO_UI_MESSAGE": "hello from weir"},
    }
    apps = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": NAMESPACE},
        "spec": {
            "interval": "1m",
            "path": "./apps/overlays/staging",
            "prune": True,
            "wait": True,
            "timeout": "2m",
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        },
    }
    return {
        "apps/base/kustomization.yaml": _dump(
            {"resources": ["configmap.yaml", "deployment.yaml", "service.yaml"]}
        ),
        "apps/base/configmap.yaml": _dump(config),
        "apps/base/deployment.yaml": _dump(deployment),
        "apps/base/service.yaml": _dump(service),
        "apps/overlays/staging/namespace.yaml": _dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}}
        ),
        "apps/overlays/staging/kustomization.yaml": _dump(
            {"namespace": "staging", "resources": ["namespace.yaml", "../../base"]}
        ),
        "apps/overlays/production/namespace.yaml": _dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "production"}}
        ),
        "apps/overlays/production/kustomization.yaml": _dump(
            {
                "namespace": "production",
                "resources": ["namespace.yaml", "../../base"],
                "replicas": [{"name": "podinfo", "count": 3}],
            }
        ),
        "clusters/local/apps.yaml": _dump(apps),
    }


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ControlPlaneError(f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def fleet_repository(root: Path, repo: str | None) -> Path:
    """The bare repository weir follows: kept from an earlier start; else a copy of ``repo``
    (a path or a URL); else the example fleet."""
    bare = root / "fleet.git"
    if bare.exists():
        return bare
    root.mkdir(parents=True, exist_ok=True)
    if repo is not None:
        _git("clone", "--quiet", "--bare", repo, str(bare))
    else:
        with tempfile.TemporaryDirectory(prefix="weir-fleet-") as scratch:
            work = Path(scratch)
            for name, content in example_fleet().items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_text(content)
            _git("init", "--quiet", "-b", "main", cwd=work)
            _git("add", ".", cwd=work)
            _git(
                "commit",
                "--quiet",
                "-m",
                "An example fleet: podinfo, staging and production",
                cwd=work,
            )
            _git("clone", "--quiet", "--bare", str(work), str(bare))
    # git daemon accepts pushes to it (bootstrap commits over git://).
    _git("config", "daemon.receivepack", "true", cwd=bare)
    return bare


def default_branch(bare: Path) -> str:
    return _git("symbolic-ref", "--short", "HEAD", cwd=bare).strip()


def controller_commands(
    base: Path, plane: ControlPlane, receiver_port: int
) -> dict[str, list[str]]:
    """Each controller's command line: the bundle Deployment's command and arguments, with
    this machine's addresses, storage directory and kubeconfig. The notification controller's
    event server gets a free port, which the others send their events to, and its webhook
    receiver ``receiver_port``."""
    commands = {}
    events_port = free_port()
    for deployment in render(BundleOptions(namespace=NAMESPACE)):
        if deployment["kind"] != "Deployment":
            continue
        name = deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        storage_port = free_port()
        local = {
            "--metrics-addr": f"127.0.0.1:{free_port()}",
            "--health-addr": f"127.0.0.1:{free_port()}",
            "--storage-path": str(base / "storage"),
            "--storage-addr": f"127.0.0.1:{storage_port}",
            "--storage-adv-addr": f"127.0.0.1:{storage_port}",
            "--receiver-addr": f"127.0.0.1:{receiver_port}",
            # Where the event server listens, for itself; where to send, for the others.
            "--events-addr": (
                f"127.0.0.1:{events_port}"
                if COMPONENTS[name].events_endpoint
                else f"http://127.0.0.1:{events_port}/"
            ),
        }
        args = []
        for arg in container.get("args") or []:
            flag, _, _ = arg.partition("=")
            args.append(f"{flag}={local[flag]}" if flag in local else arg)
        command = [sys.executable, *container["command"][1:]]
        commands[name] = [*command, *args, f"--kubeconfig={plane.admin_kubeconfig}"]
    return commands


def main() -> int:
    parser = argparse.ArgumentParser(prog="hack/run-local.sh", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".weir"), help="where everything lives")
    parser.add_argument("--repo", help="your repository (a path or a URL) instead of the example")
    parser.add_argument("--path", default="clusters/local", help="the cluster's directory in it")
    args = parser.parse_args()
    base = args.dir.resolve()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with ControlPlane(base / "cluster") as plane:
            bare = fleet_repository(base / "git", args.repo)
            processes: list[subprocess.Popen[bytes]] = []
            try:
                url = serve(bare, processes)
                receiver = start_controllers(base, plane, processes)
                run_bootstrap(plane, bare, url, args.path, receiver)
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
                print("stopping", flush=True)
            finally:
                # Before the control plane goes: the controllers then stop without errors.
                for process in reversed(processes):
                    process.terminate()
                    process.wait()
        return 0
    except ControlPlaneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def remembered_port(remembered: Path) -> int:
    """The loopback port of an earlier start, kept in ``remembered``, if it is free; else a
    free one, remembered for the next start."""
    port = int(remembered.read_text()) if remembered.exists() else 0
    with socket.socket() as probe:
        # As git daemon's --reuseaddr (and asyncio's servers): a port the last start left in
        # TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            port = 0
    port = port or free_port()
    remembered.write_text(str(port))
    return port


def serve(bare: Path, processes: list[subprocess.Popen[bytes]]) -> str:
    """Serve ``bare``'s directory with ``git daemon`` (pushes allowed); its URL. The port of
    an earlier start is taken again if free: the URL is in the committed sync manifests."""
    port = remembered_port(bare.parent / "daemon-port")
    daemon = [
        "git",
        "daemon",
        "--export-all",
        "--enable=receive-pack",
        "--reuseaddr",
        "--listen=127.0.0.1",
        f"--port={port}",
        f"--base-path={bare.parent}",
        str(bare.parent),
    ]
    processes.append(
        subprocess.Popen(
            daemon,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
    )
    return f"git://127.0.0.1:{port}/{bare.name}"


def start_controllers(
    base: Path, plane: ControlPlane, processes: list[subprocess.Popen[bytes]]
) -> str:
    """Start every controller; the webhook receiver's URL."""
    # What the Deployment's fieldRef env gives a pod.
    env = {**os.environ, "RUNTIME_NAMESPACE": NAMESPACE, "POD_NAME": "local"}
    # The same port at each start: a Git host's webhook names it.
    receiver_port = remembered_port(base / "receiver-port")
    for name, command in controller_commands(base, plane, receiver_port).items():
        with (plane.workdir / f"{name}.log").open("ab") as log:
            processes.append(
                subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=die_with_parent,
                )
            )
    receiver = f"http://127.0.0.1:{receiver_port}"
    print(
        f"► control plane at {plane.server}; the controllers run here as processes with the "
        f"bundle's arguments (logs in {plane.workdir})\n"
        f"► webhook receiver at {receiver}: a Git host's webhook posts to it plus a "
        "Receiver's webhook path (weir get receivers)",
        flush=True,
    )
    return receiver


async def wait_until_all_ready(plane: ControlPlane) -> None:
    """Until every Kustomization the repository holds is Ready (those bootstrap did not wait
    for: the apps), or 3 minutes."""
    client = await KubeClient.connect(str(plane.admin_kubeconfig))
    print("► waiting for every Kustomization to be Ready", flush=True)
    try:
        deadline = time.monotonic() + ALL_READY_SECONDS
        while True:
            items = (await client.list(Kustomization.info))["items"]
            waiting = [
                f"{ks['metadata']['namespace']}/{ks['metadata']['name']}"
                for ks in items
                if not any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (ks.get("status") or {}).get("conditions") or []
                )
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"not Ready after 3 minutes: {', '.join(waiting)}")
            await asyncio.sleep(1)  # a person is watching; a plain poll is fine here
    finally:
        await client.close()


def run_bootstrap(plane: ControlPlane, bare: Path, url: str, path: str, receiver: str) -> None:
    """``weir bootstrap git`` onto the served repository, as a user runs it; then what to do."""
    weir = [sys.executable, "-m", "weir"]
    cluster = [f"--kubeconfig={plane.admin_kubeconfig}", f"--namespace={NAMESPACE}"]
    print(f"► weir bootstrap git --url={url} --path={path}  (the repository: {bare})", flush=True)
    bootstrap = [
        *weir,
        "bootstrap",
        "git",
        f"--url={url}",
        f"--branch={default_branch(bare)}",
        f"--path={path}",
        *cluster,
    ]
    if subprocess.run(bootstrap, check=False).returncode != 0:
        raise ControlPlaneError("weir bootstrap git failed (its error is above)")
    asyncio.run(wait_until_all_ready(plane))
    subprocess.run([*weir, "get", "all", "-A", cluster[0]], check=False)
    print(
        "\nNext, in another terminal:\n"
        f"  export KUBECONFIG={plane.admin_kubeconfig}\n"
        "  .venv/bin/weir get all -A --watch\n"
        f"  git clone {bare} fleet && cd fleet\n"
        "  # edit apps/base/configmap.yaml, commit and git push: applied within a minute,\n"
        "  # or at once with: .venv/bin/weir reconcile ks flux-system --with-source\n"
        "  # or have a push fetched at once, through a Receiver and a webhook:\n"
        "  .venv/bin/weir create secret receiver webhook-token\n"
        "  .venv/bin/weir create receiver fleet --type=generic --secret-ref=webhook-token \\\n"
        "      --resource=GitRepository/flux-system\n"
        f"  .venv/bin/weir trigger receiver fleet --url={receiver}\n"
        f"  # (or point a Git host's webhook at {receiver} + the path weir get receivers shows)\n"
        "Ctrl-C stops everything; a second start reuses the cluster and the repository.",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
