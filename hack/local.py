"""weir's main job on the embedded default: a local control plane, a Git repository served by
``git daemon``, ``weir bootstrap git`` onto that repository, and the controllers following it.

With no arguments the repository is a new example fleet, ``hack/example-fleet/`` (an app
with a base and two overlays, as teams lay them out, a HelmRelease of a chart kept in the same
repository beside it, and ``clusters/local`` selecting the staging overlay and automating its
image: a local registry, Debian's ``docker-registry``, holds two builds of the app, and the
image automation controller commits the newer one to the staging overlay, which is then
applied). With
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

# Run as a script, Python puts hack/ on sys.path, not the repository root: the example's
# registry is the test suite's (tests/registry.py), which is not an installed package.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from controllers.binaries import find_binary  # noqa: E402
from controllers.envtest import ControlPlane, ControlPlaneError, die_with_parent, free_port  # noqa: E402
from controllers.kube import KubeClient  # noqa: E402
from helm.api_v2 import HelmRelease  # noqa: E402
from kustomize.api_v1 import Kustomization  # noqa: E402
from tests.registry import FLUX_CONTENT, Blob, RegistryServer, tar_gz  # noqa: E402
from weir.bundle import COMPONENTS, DEFAULT_COMPONENTS, BundleOptions, render  # noqa: E402

NAMESPACE = "flux-system"
# The embedded default runs every controller built so far, the image automation one included
# (an extra component in an install, as in Flux).
IMAGE_AUTOMATION = "image-automation-controller"
LOCAL_COMPONENTS = (*DEFAULT_COMPONENTS, IMAGE_AUTOMATION)
# The example's image in the local registry, and its builds (the newest 6.x is automated).
EXAMPLE_IMAGE = "weir-example/podinfo"
EXAMPLE_TAGS = ("6.7.1", "6.7.2")
EXAMPLE_FLEET = Path(__file__).resolve().parent / "example-fleet"
ALL_READY_SECONDS = 180
GIT_ENV = {
    "GIT_AUTHOR_NAME": "weir",
    "GIT_AUTHOR_EMAIL": "weir@localhost",
    "GIT_COMMITTER_NAME": "weir",
    "GIT_COMMITTER_EMAIL": "weir@localhost",
}


def example_fleet(registry: str) -> dict[str, str]:
    """The files of the example fleet (``hack/example-fleet/``) by their path in it: an app
    (podinfo: ConfigMap, Deployment, Service) with staging and production overlays, beside it
    a HelmRelease of the repository's own chart ``charts/hello`` with its values in a watched
    ConfigMap, and the cluster directory ``clusters/local`` whose Kustomization applies the
    staging overlay and whose image automation keeps its image at the newest build in the
    registry at ``registry`` (host:port, written where the files say REGISTRY_HOST)."""
    return {
        path.relative_to(EXAMPLE_FLEET).as_posix(): path.read_text().replace(
            "REGISTRY_HOST", registry
        )
        for path in sorted(EXAMPLE_FLEET.rglob("*"))
        if path.is_file()
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


def fleet_repository(root: Path, repo: str | None, registry: str) -> Path:
    """The bare repository weir follows: kept from an earlier start; else a copy of ``repo``
    (a path or a URL); else the example fleet (its images in the registry at ``registry``)."""
    bare = root / "fleet.git"
    if bare.exists():
        return bare
    root.mkdir(parents=True, exist_ok=True)
    if repo is not None:
        _git("clone", "--quiet", "--bare", repo, str(bare))
    else:
        with tempfile.TemporaryDirectory(prefix="weir-fleet-") as scratch:
            work = Path(scratch)
            for name, content in example_fleet(registry).items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_text(content)
            _git("init", "--quiet", "-b", "main", cwd=work)
            _git("add", ".", cwd=work)
            _git(
                "commit",
                "--quiet",
                "-m",
                "An example fleet: podinfo (staging, production) and the hello chart",
                cwd=work,
            )
            _git("clone", "--quiet", "--bare", str(work), str(bare))
    # git daemon accepts pushes to it (bootstrap commits over git://).
    _git("config", "daemon.receivepack", "true", cwd=bare)
    return bare


def default_branch(bare: Path) -> str:
    return _git("symbolic-ref", "--short", "HEAD", cwd=bare).strip()


def controller_commands(
    base: Path, plane: ControlPlane, receiver_port: int, storage_port: int
) -> dict[str, list[str]]:
    """Each controller's command line: the bundle Deployment's command and arguments, with
    this machine's addresses, storage directory and kubeconfig. The notification controller's
    event server gets a free port, which the others send their events to, and its webhook
    receiver ``receiver_port``; the source controller's artifact server ``storage_port``."""
    commands = {}
    events_port = free_port()
    for deployment in render(BundleOptions(namespace=NAMESPACE, components=LOCAL_COMPONENTS)):
        if deployment["kind"] != "Deployment":
            continue
        name = deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
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
            processes: list[subprocess.Popen[bytes]] = []
            registry = start_registry(base / "registry")
            try:
                bare = fleet_repository(base / "git", args.repo, registry.host)
                url = serve(bare, processes)
                receiver = start_controllers(base, plane, processes)
                run_bootstrap(plane, bare, url, args.path, receiver, example=args.repo is None)
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
                print("stopping", flush=True)
            finally:
                # Before the control plane goes: the controllers then stop without errors.
                for process in reversed(processes):
                    process.terminate()
                    process.wait()
                registry.stop()
        return 0
    except ControlPlaneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def start_registry(workdir: Path) -> RegistryServer:
    """Debian's ``docker-registry`` on the same loopback port at each start (the example's
    manifests name it), holding the example's builds."""
    workdir.mkdir(parents=True, exist_ok=True)
    registry = RegistryServer("example", workdir, port=remembered_port(workdir / "port"))
    try:
        registry.start()
        layer = Blob(FLUX_CONTENT, tar_gz({"README": "podinfo, as the example builds it\n"}))
        for tag in EXAMPLE_TAGS:
            asyncio.run(registry.push(EXAMPLE_IMAGE, [tag], [layer]))
    except Exception as err:
        registry.stop()
        raise ControlPlaneError(f"the example's registry did not start: {err}") from err
    print(f"► image registry at {registry.host}: {EXAMPLE_IMAGE} {', '.join(EXAMPLE_TAGS)}")
    return registry


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


def wait_until_serving(name: str, process: subprocess.Popen[bytes], port: int) -> None:
    """Until ``process`` (the controller ``name``) accepts connections on loopback ``port``;
    ``ControlPlaneError`` if it ends first or takes more than a minute."""
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None:
            raise ControlPlaneError(f"{name} exited with {process.returncode} (see its log)")
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{name} does not serve on port {port} after a minute")
        time.sleep(0.1)  # a process opening its port: a short poll


def start_controllers(
    base: Path, plane: ControlPlane, processes: list[subprocess.Popen[bytes]]
) -> str:
    """Start every controller; the webhook receiver's URL."""
    # What the Deployment's fieldRef env gives a pod.
    env = {**os.environ, "RUNTIME_NAMESPACE": NAMESPACE, "POD_NAME": "local"}
    # The same port at each start: a Git host's webhook names it.
    receiver_port = remembered_port(base / "receiver-port")
    # The same port at each start, as a cluster's Service: the sources' artifact URLs in the
    # cluster's data name it, and a second start's bootstrap reads them before the source
    # controller has written them again.
    restarted = (base / "storage-port").exists()
    storage_port = remembered_port(base / "storage-port")
    for name, command in controller_commands(base, plane, receiver_port, storage_port).items():
        with (plane.workdir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        processes.append(process)
        if name == "source-controller" and restarted:
            # The cluster's Kustomizations and HelmReleases download artifacts as soon as
            # their controllers start; one that fails to connect waits its whole interval
            # (as in Flux). On a first start there are none yet, and the source controller
            # serves only once bootstrap has made its namespace (its leader lease is there).
            wait_until_serving(name, process, storage_port)
    receiver = f"http://127.0.0.1:{receiver_port}"
    print(
        f"► control plane at {plane.server}; the controllers run here as processes with the "
        f"bundle's arguments (logs in {plane.workdir})\n"
        f"► webhook receiver at {receiver}: a Git host's webhook posts to it plus a "
        "Receiver's webhook path (weir get receivers)",
        flush=True,
    )
    return receiver


def not_ready(items: list[dict[str, Any]]) -> list[str]:
    """``kind/namespace/name`` of each object in ``items`` not Ready."""
    return [
        f"{obj['kind']}/{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        for obj in items
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions") or []
        )
    ]


async def wait_until_all_ready(plane: ControlPlane) -> None:
    """Until every Kustomization and HelmRelease the repository holds is Ready (those
    bootstrap did not wait for: the apps), or 3 minutes."""
    client = await KubeClient.connect(str(plane.admin_kubeconfig))
    print("► waiting for every Kustomization and HelmRelease to be Ready", flush=True)
    try:
        deadline = time.monotonic() + ALL_READY_SECONDS
        while True:
            waiting = []
            for info in (Kustomization.info, HelmRelease.info):
                listed = await client.list(info)
                # A list's items carry no kind.
                items = [{**obj, "kind": info.kind} for obj in listed["items"]]
                waiting += not_ready(items)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"not Ready after 3 minutes: {', '.join(waiting)}")
            await asyncio.sleep(1)  # a person is watching; a plain poll is fine here
    finally:
        await client.close()


def run_bootstrap(
    plane: ControlPlane, bare: Path, url: str, path: str, receiver: str, *, example: bool
) -> None:
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
        f"--components-extra={IMAGE_AUTOMATION}",
        *cluster,
    ]
    if subprocess.run(bootstrap, check=False).returncode != 0:
        raise ControlPlaneError("weir bootstrap git failed (its error is above)")
    asyncio.run(wait_until_all_ready(plane))
    subprocess.run([*weir, "get", "all", "-A", cluster[0]], check=False)
    print(next_steps(plane, bare, receiver, example=example), flush=True)


def next_steps(plane: ControlPlane, bare: Path, receiver: str, *, example: bool) -> str:
    """What to do next, as commands to type; for the example fleet, the files to edit and
    how to look at its Helm release with Helm itself (when the set-up built ``helm``)."""
    lines = [
        "",
        "Next, in another terminal:",
        f"  export KUBECONFIG={plane.admin_kubeconfig}",
        "  .venv/bin/weir get all -A --watch",
        "  .venv/bin/weir get helmreleases -A",
    ]
    helm = find_binary("helm")
    if example and helm:
        lines.append(f"  {helm} history hello -n staging   # the release as Helm sees it")
    if example:
        lines += [
            "  .venv/bin/weir get images all -A   # and the image automation's commit:",
            f"  git --git-dir={bare} log --author=weir-bot --format='%an: %s'",
        ]
    lines.append(f"  git clone {bare} fleet && cd fleet")
    if example:
        lines += [
            "  # edit apps/base/configmap.yaml, or the Helm release's values in",
            "  # apps/base/hello-values.yaml, or the chart in charts/hello/;",
            "  # commit and git push: applied within a minute,",
        ]
    else:
        lines.append("  # edit, commit and git push: applied at your Kustomizations' interval,")
    lines += [
        "  # or at once with: .venv/bin/weir reconcile ks flux-system --with-source",
        "  # or have a push fetched at once, through a Receiver and a webhook:",
        "  .venv/bin/weir create secret receiver webhook-token",
        "  .venv/bin/weir create receiver fleet --type=generic --secret-ref=webhook-token \\",
        "      --resource=GitRepository/flux-system",
        f"  .venv/bin/weir trigger receiver fleet --url={receiver}",
        f"  # (or point a Git host's webhook at {receiver} + the path weir get receivers shows)",
        "Ctrl-C stops everything; a second start reuses the cluster and the repository.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
