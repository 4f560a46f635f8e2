"""N HelmReleases of one small chart, weir's helm controller beside Flux's helm-controller: time
until all are Ready, and the helm controller's idle, peak and after-the-work memory, with the
weir/Flux ratios and the figures Flux publishes.

For each N (``--sizes``; 20 by default so that ``bench/run`` stays short; 100 and 500 are the
sizes Flux publishes) and each helm controller (``--controllers``: weir's, ``python -m helm``;
Flux's helm-controller v1.6.2, built from ``bench/flux/helm-controller``), in that order, on a
fresh local control plane: weir's source controller (``python -m source``) serves the chart for
both. A HelmRepository follows a chart repository served on loopback (``index.yaml`` and the
packaged chart, made with the Go-built ``helm``), and N HelmReleases in one namespace each
install the chart under their own release name, with a ``chart`` template, so each helm
controller creates its N HelmCharts and downloads their artifacts from the source controller:
the shape of fluxcd/flux-benchmark's HelmRelease benchmark (one namespace, podinfo-like objects:
a Deployment scaled to zero, a ServiceAccount, a Service and an Ingress), without its
``serviceAccountName`` impersonation. Both helm controllers and the source controller run with
``--concurrent=10`` (``--concurrent``), as flux-benchmark runs Flux's.

The clock runs from the first create of a HelmRelease until every one is Ready=True at its
generation; the Helm release Secrets (``helm.sh/release.v1``) are counted after, one per
release or the run fails. Memory, from ``/proc``: idle RSS once ``/readyz`` answers and the RSS
has settled, before any object exists; peak RSS, the process's VmHWM (and, with children, the
largest sampled sum: neither helm controller has any, the source controller's git worker
aside); after, the RSS once it has settled again with every release Ready (Go's scavenger and
Python's allocator return memory at their own pace, so it is at most a minute later).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from flux import FluxBuildError, FluxController, ensure_flux
from kustomize_scale import (
    NAMESPACE,
    BenchmarkFailed,
    Memory,
    ReadyTracker,
    TreeSampler,
    _list_arg,
    apiserver_requests,
    children_by_command,
    cpu_seconds,
    create_all,
    flag_value,
    idle_rss,
    is_running,
    log_tail,
    memory,
    mib,
    print_requests,
    processes_running,
    ratio,
    ready_condition,
    sizes_arg,
    wait_event,
    wait_healthy,
)

from controllers.binaries import find_binary
from controllers.envtest import CRD_DIR, ControlPlane, ControlPlaneError, free_port
from controllers.informer import Informer
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from helm.api_v2 import HelmRelease
from source.api_v1 import HelmRepository

SIZES = (20,)
CONTROLLER_SETS = ("weir", "flux")
# flux-benchmark's setting for Flux's source-controller and helm-controller.
CONCURRENT = 10
# fluxcd/flux-benchmark's RESULTS.md for Flux 2.9 (helm-controller v1.6), on a GitHub
# ubuntu-latest-16-cores runner, Kind, helm-controller limited to 2 CPUs, --concurrent=10:
# N -> (seconds until all Ready, max memory in MiB).
PUBLISHED = {100: (26.0, 286.0), 500: (134.0, 306.0)}
ROOT = Path(__file__).resolve().parents[1]
READY_BOUND_SECONDS = 30 * 60
SETUP_BOUND_SECONDS = 300
AFTER_BOUND_SECONDS = 60
BENCH_NAMESPACE = "bench"
REPOSITORY_NAME = "charts"
CHART = "bench-app"
CHART_VERSION = "0.1.0"
RELEASE_SECRET_TYPE = "helm.sh/release.v1"  # noqa: S105 (a type name, no secret)

HELMRELEASE = HelmRelease.info
HELMREPOSITORY = HelmRepository.info
CHART_FILES = {
    "Chart.yaml": (
        f"apiVersion: v2\nname: {CHART}\nversion: {CHART_VERSION}\nappVersion: 1.0.0\n"
        "description: A podinfo-shaped chart for the helm benchmark\n"
    ),
    "values.yaml": "replicaCount: 0\nimage: registry.invalid/app:1.0.0\n",
    "templates/serviceaccount.yaml": (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ .Release.Name }}\n"
    ),
    # Headless: the control plane's service range has 254 addresses, fewer than N Services.
    "templates/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n"
        "  clusterIP: None\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n"
        "  - name: http\n    port: 9898\n    targetPort: http\n"
    ),
    # Scaled to zero as in flux-benchmark: Ready once the deployment controller has seen it.
    "templates/deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
        "spec:\n  replicas: {{ .Values.replicaCount }}\n  selector:\n    matchLabels:\n"
        "      app: {{ .Release.Name }}\n  template:\n    metadata:\n      labels:\n"
        "        app: {{ .Release.Name }}\n    spec:\n"
        "      serviceAccountName: {{ .Release.Name }}\n      containers:\n"
        "      - name: app\n        image: {{ .Values.image }}\n        ports:\n"
        "        - name: http\n          containerPort: 9898\n        resources:\n"
        "          requests:\n            cpu: 1m\n            memory: 16Mi\n"
    ),
    "templates/ingress.yaml": (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        "  name: {{ .Release.Name }}\nspec:\n  ingressClassName: nginx\n  rules:\n"
        "  - host: {{ .Release.Name }}.example.invalid\n    http:\n      paths:\n"
        "      - path: /\n        pathType: Prefix\n        backend:\n          service:\n"
        "            name: {{ .Release.Name }}\n            port:\n              name: http\n"
    ),
}


@dataclass
class Row:
    """The figures of one helm controller at one N."""

    controllers: str
    size: int
    all_ready_seconds: float
    first_ready_seconds: float
    mean_reconcile_seconds: float
    helm_idle: Memory
    helm_peak: Memory
    helm_after: Memory
    source_peak: Memory
    helm_cpu_seconds: float
    load_before: float
    load_after: float
    requests: Counter[str] = field(default_factory=Counter)

    @property
    def requests_per_release(self) -> float:
        return sum(self.requests.values()) / self.size


# The chart repository: index.yaml and the packaged chart on loopback


def make_chart_repository(root: Path, helm: Path, url: str) -> Path:
    """``root/repo`` with the packaged chart and an ``index.yaml`` naming it under ``url``,
    both written by the Go-built ``helm``."""
    chart = root / "chart"
    for name, content in CHART_FILES.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(content)
    repo = root / "repo"
    repo.mkdir()
    env = {**os.environ, "HELM_CACHE_HOME": str(root / "helm-home")}
    for args in (
        ["package", str(chart), "-d", str(repo)],
        ["repo", "index", str(repo), "--url", url],
    ):
        subprocess.run([str(helm), *args], env=env, check=True, capture_output=True)
    return repo


@contextlib.asynccontextmanager
async def serve_chart_repository(root: Path, helm: Path) -> AsyncIterator[str]:
    """A chart repository made and served from ``root`` over plain HTTP; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a port of its own, not one chosen free and maybe taken
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    repo = make_chart_repository(root, helm, url)
    app = web.Application()
    app.router.add_static("/", repo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield url
    finally:
        await runner.cleanup()


# The controllers, as processes beside the control plane


@contextlib.contextmanager
def controller_processes(plane: ControlPlane, argvs: dict[str, list[str]]) -> Iterator[None]:
    """Run each ``argvs[name]`` with its log in ``<workdir>/<name>.log``; stopped on exit.
    Flux's helm-controller takes the cluster from ``KUBECONFIG`` (it has no ``--kubeconfig``);
    weir's helm controller's Helm homes go under the workdir, not the shared temp dir."""
    helm_home = plane.workdir / "helm-home"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KUBECONFIG": str(plane.admin_kubeconfig),
        "RUNTIME_NAMESPACE": BENCH_NAMESPACE,
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_DATA_HOME": str(helm_home / "data"),
        "HELM_PLUGINS": str(helm_home / "data" / "plugins"),
    }
    with processes_running(plane.workdir, argvs, env, stop_timeout=30):
        yield


def argvs(
    plane: ControlPlane, controllers: str, flux: FluxController | None
) -> dict[str, list[str]]:
    """The source controller's and the helm controller's command lines."""

    def common() -> list[str]:
        return [
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            "--log-encoding=json",
            f"--concurrent={CONCURRENT}",
        ]

    port = free_port()
    source = [
        sys.executable,
        "-m",
        "source",
        f"--kubeconfig={plane.admin_kubeconfig}",
        *common(),
        f"--storage-path={plane.workdir / 'storage'}",
        f"--storage-addr=127.0.0.1:{port}",
        f"--storage-adv-addr=127.0.0.1:{port}",
    ]
    if controllers == "weir":
        helm = [sys.executable, "-m", "helm", f"--kubeconfig={plane.admin_kubeconfig}"]
    else:
        assert flux is not None
        helm = [str(flux.binary), "--enable-leader-election=false", "--watch-all-namespaces=true"]
    return {"source-controller": source, "helm-controller": [*helm, *common()]}


# Waiting and measuring


class ReleaseTracker(ReadyTracker):
    """Records when each HelmRelease first became Ready=True at its generation; ``stalled``
    holds the first that gave up (Stalled=True), which ends the wait at once."""

    def __init__(self, expected: int) -> None:
        super().__init__(expected, revision="")
        self.stalled = ""

    def __call__(self, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is None or key in self.ready_at:
            return
        self.latest[key] = new
        status = new.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Stalled" and condition.get("status") == "True":
                self.stalled = self.stalled or f"{key}: {condition.get('message')!r}"
                self.done.set()
        if ready_condition(new).get("status") == "True" and status.get("observedGeneration") == new[
            "metadata"
        ].get("generation"):
            self.ready_at[key] = time.monotonic()
            if len(self.ready_at) >= self.expected:
                self.done.set()


async def wait_repository(client: KubeClient, pid: int, log_path: Path) -> None:
    """Wait until the HelmRepository has its index artifact."""
    deadline = time.monotonic() + SETUP_BOUND_SECONDS
    while True:
        repository = await client.get(HELMREPOSITORY, BENCH_NAMESPACE, REPOSITORY_NAME)
        if (repository.get("status") or {}).get("artifact"):
            return
        if not is_running(pid) or time.monotonic() > deadline:
            message = ready_condition(repository).get("message")
            raise BenchmarkFailed(f"HelmRepository has no artifact: {message!r}", log_path)
        await asyncio.sleep(0.2)  # one object during setup; a poll is fine here


async def mean_reconcile_seconds(pid: int) -> float:
    """Mean of gotk_reconcile_duration_seconds over the HelmReleases, from /metrics."""
    url = f"http://{flag_value(pid, 'metrics-addr')}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url)).text
    total = count = 0.0
    for line in text.splitlines():
        if 'kind="HelmRelease"' not in line:
            continue
        if line.startswith("gotk_reconcile_duration_seconds_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gotk_reconcile_duration_seconds_count{"):
            count += float(line.rsplit(" ", 1)[1])
    return total / count if count else 0.0


def helmrelease(index: int) -> dict[str, Any]:
    name = f"app-{index:04d}"
    return {
        "apiVersion": HELMRELEASE.api_version,
        "kind": HELMRELEASE.kind,
        "metadata": {"name": name, "namespace": BENCH_NAMESPACE},
        "spec": {
            "interval": "1h",  # nothing runs twice during the measurement
            "releaseName": name,
            "chart": {
                "spec": {
                    "chart": CHART,
                    "version": CHART_VERSION,
                    "sourceRef": {"kind": "HelmRepository", "name": REPOSITORY_NAME},
                    "interval": "1h",
                }
            },
            "values": {"replicaCount": 0},
        },
    }


async def scenario(plane: ControlPlane, controllers: str, size: int, root: Path, helm: Path) -> Row:
    pids = children_by_command()
    watched = {name: pids[name] for name in ("source-controller", "helm-controller")}
    logs = {name: plane.workdir / f"{name}.log" for name in watched}
    client = await KubeClient.connect(str(plane.admin_kubeconfig), qps=0)
    tasks: list[asyncio.Task[None]] = []  # the informer's and the sampler's
    try:
        await wait_healthy(watched, SETUP_BOUND_SECONDS, plane.workdir)
        idle = await idle_rss(watched, SETUP_BOUND_SECONDS)
        async with serve_chart_repository(root / f"repo-{controllers}-{size}", helm) as url:
            await client.create(NAMESPACE, {"metadata": {"name": BENCH_NAMESPACE}})
            await client.create(
                HELMREPOSITORY,
                {
                    "apiVersion": HELMREPOSITORY.api_version,
                    "kind": HELMREPOSITORY.kind,
                    "metadata": {"name": REPOSITORY_NAME, "namespace": BENCH_NAMESPACE},
                    "spec": {"url": url, "interval": "1h"},
                },
            )
            await wait_repository(client, watched["source-controller"], logs["source-controller"])

            tracker = ReleaseTracker(size)
            informer = Informer(client, HELMRELEASE, tracker, namespace=BENCH_NAMESPACE)
            tasks.append(asyncio.create_task(informer.run()))
            await informer.synced.wait()
            load_before = os.getloadavg()[0]
            helm_pid = watched["helm-controller"]
            cpu_before = cpu_seconds(helm_pid)
            requests_before = await apiserver_requests(plane)
            sampler = TreeSampler(watched)
            tasks.append(asyncio.create_task(sampler.run()))
            started = time.monotonic()
            await create_all(client, HELMRELEASE, (helmrelease(i) for i in range(size)))

            def progress() -> str:
                sample = "; ".join(tracker.not_ready_sample()) or "no status written yet"
                return f"{len(tracker.ready_at)}/{size} Ready; not Ready: {sample}"

            watched_all = {**watched, "kube-apiserver": pids["kube-apiserver"]}
            try:
                await wait_event(
                    "all HelmReleases Ready",
                    tracker.done,
                    READY_BOUND_SECONDS,
                    watched_all,
                    progress,
                )
            except BenchmarkFailed as err:
                raise BenchmarkFailed(str(err), logs["helm-controller"]) from None
            finished = time.monotonic()
            if tracker.stalled:
                raise BenchmarkFailed(f"stalled: {tracker.stalled}", logs["helm-controller"])
            sampler.sample()
        load_after = os.getloadavg()[0]
        cpu_after = cpu_seconds(helm_pid)
        requests = await apiserver_requests(plane)
        requests.subtract(requests_before)
        query = {"fieldSelector": f"type={RELEASE_SECRET_TYPE}"}
        path = f"/api/v1/namespaces/{BENCH_NAMESPACE}/{SECRET.plural}"
        releases = len((await client.request("GET", path, query=query)).get("items") or [])
        if releases != size:
            raise BenchmarkFailed(f"{releases} Helm release Secrets for {size} HelmReleases")
        peaks = {}
        for name, pid in watched.items():
            hwm = memory(pid, "VmHWM")
            peaks[name] = Memory(hwm.own, max(hwm.own, sampler.peak_mib[name]))
        after = await idle_rss({"helm-controller": helm_pid}, AFTER_BOUND_SECONDS)
        return Row(
            controllers=controllers,
            size=size,
            all_ready_seconds=finished - started,
            first_ready_seconds=min(tracker.ready_at.values()) - started,
            mean_reconcile_seconds=await mean_reconcile_seconds(helm_pid),
            helm_idle=idle["helm-controller"],
            helm_peak=peaks["helm-controller"],
            helm_after=after["helm-controller"],
            source_peak=peaks["source-controller"],
            helm_cpu_seconds=sum(cpu_after) - sum(cpu_before),
            load_before=load_before,
            load_after=load_after,
            requests=+requests,
        )
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()


def measure(
    controllers: str, size: int, root: Path, helm: Path, flux: FluxController | None
) -> Row:
    """One run on a fresh control plane (no nodes: the Deployments are scaled to zero) with
    weir's source CRDs and the helm controller's own HelmRelease CRD."""
    workdir = root / f"cluster-{controllers}-{size}"
    with ControlPlane(workdir, crd_dir=None, nodes=0) as plane:
        crds = sorted(CRD_DIR.glob("source.toolkit.fluxcd.io_*.yaml"))
        helm_crds = flux.crd_dir if flux is not None else CRD_DIR
        crds += sorted(helm_crds.glob("helm.toolkit.fluxcd.io_*.yaml"))
        plane.install_crds(crds)
        (workdir / "storage").mkdir()
        with controller_processes(plane, argvs(plane, controllers, flux)):
            try:
                return asyncio.run(scenario(plane, controllers, size, root, helm))
            except BenchmarkFailed as err:
                if err.log_path is None:
                    err.log_path = workdir / "helm-controller.log"
                raise


# Printing


_COLUMNS = (
    ("N", 5),
    ("helm controller", 24),
    ("all Ready", 10),
    ("first Ready", 11),
    ("HR/s", 6),
    ("reconcile", 10),
    ("req/HR", 7),
    ("idle MiB", 9),
    ("peak MiB", 9),
    ("after MiB", 10),
    ("source peak", 12),
    ("CPU s", 7),
    ("load avg", 11),
)


def _line(cells: Sequence[str]) -> str:
    return " ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, _COLUMNS, strict=True))


def _cells(row: Row, flux: dict[str, FluxController]) -> list[str]:
    name = "weir" if row.controllers == "weir" else f"flux {flux['helm-controller'].version}"
    return [
        str(row.size),
        name,
        f"{row.all_ready_seconds:.1f}s",
        f"{row.first_ready_seconds:.2f}s",
        f"{row.size / row.all_ready_seconds:.1f}",
        f"{row.mean_reconcile_seconds * 1000:.0f}ms",
        f"{row.requests_per_release:.1f}",
        mib(row.helm_idle),
        mib(row.helm_peak),
        mib(row.helm_after),
        mib(row.source_peak),
        f"{row.helm_cpu_seconds:.1f}",
        f"{row.load_before:.2f}>{row.load_after:.2f}",
    ]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def print_rows(rows: list[Row], flux: dict[str, FluxController]) -> None:
    print(
        f"\n{os.cpu_count()} cores; --concurrent={CONCURRENT} for both helm controllers and the"
        " source controller; RSS of the helm controller in MiB (idle: before any object;"
        " peak: VmHWM; after: settled once all are Ready); reconcile: mean"
        " gotk_reconcile_duration_seconds; req/HR: API requests per HelmRelease, every"
        " client's; CPU: the helm controller's seconds over the window"
    )
    print(_line([name for name, _ in _COLUMNS]))
    for size in dict.fromkeys(row.size for row in rows):
        by_set = {row.controllers: row for row in rows if row.size == size}
        for row in by_set.values():
            print(_line(_cells(row, flux)))
        weir, theirs = by_set.get("weir"), by_set.get("flux")
        if weir is not None and theirs is not None:
            cells = [""] * len(_COLUMNS)
            cells[0], cells[1] = str(size), "weir/flux"
            cells[2] = ratio(weir.all_ready_seconds, theirs.all_ready_seconds)
            cells[3] = ratio(weir.first_ready_seconds, theirs.first_ready_seconds)
            cells[5] = ratio(weir.mean_reconcile_seconds, theirs.mean_reconcile_seconds)
            cells[6] = ratio(weir.requests_per_release, theirs.requests_per_release)
            cells[7] = ratio(weir.helm_idle.own, theirs.helm_idle.own)
            cells[8] = ratio(weir.helm_peak.own, theirs.helm_peak.own)
            cells[9] = ratio(weir.helm_after.own, theirs.helm_after.own)
            cells[11] = ratio(weir.helm_cpu_seconds, theirs.helm_cpu_seconds)
            print(_line(cells))
        if size in PUBLISHED:
            seconds, mib = PUBLISHED[size]
            cells = [""] * len(_COLUMNS)
            cells[0], cells[1], cells[2], cells[8] = (
                str(size),
                "Flux 2.9 published",
                _minutes(seconds),
                f"{mib:.0f}",
            )
            print(_line(cells))
            if weir is not None:
                time_ratio = weir.all_ready_seconds / seconds
                print(
                    f"{'':>5} goal, weir here against Flux's published: time"
                    f" {time_ratio:.2f}x (goal <= 0.5x), peak {weir.helm_peak.own:.0f} MiB"
                    f" (goal <= {mib:.0f}): "
                    + ("met" if time_ratio <= 0.5 and weir.helm_peak.own <= mib else "not met")
                )
    print(
        "Flux's published figures: fluxcd/flux-benchmark, 16-core runner, Kind, helm-controller"
        " with 2 CPUs and --concurrent=10, the podinfo chart from an OCI repository"
    )
    largest = max(row.size for row in rows)
    print_requests(
        f"API requests per HelmRelease, N={largest}",
        {row.controllers: (row.requests, row.size) for row in rows if row.size == largest},
    )


# Command line


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/helm_scale.py", description=__doc__)
    parser.add_argument(
        "--sizes", type=sizes_arg, default=list(SIZES), help="e.g. 100,500 (default 20)"
    )
    parser.add_argument(
        "--controllers",
        type=_list_arg(CONTROLLER_SETS),
        default=list(CONTROLLER_SETS),
        help="helm controllers to run, in this order per N (default weir,flux)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="run in DIR and keep it (the controllers' logs), instead of a removed temp dir",
    )
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    root = args.keep or Path(tempfile.mkdtemp(prefix="weir-bench-helm-"))
    rows: list[Row] = []
    flux: dict[str, FluxController] = {}
    try:
        helm = find_binary("helm")
        if helm is None:
            raise BenchmarkFailed("no Go-built helm: run hack/setup.sh")
        if "flux" in args.controllers:
            flux = ensure_flux(("helm-controller",))
        for size in args.sizes:
            for controllers in args.controllers:
                theirs = flux.get("helm-controller") if controllers == "flux" else None
                rows.append(measure(controllers, size, root, helm, theirs))
                print(
                    f"N={size} {controllers}: all Ready in {rows[-1].all_ready_seconds:.1f}s",
                    flush=True,
                )
        print_rows(rows, flux)
        return 0
    except (BenchmarkFailed, ControlPlaneError, FluxBuildError) as err:
        if rows:
            print_rows(rows, flux)
        print(f"error: {err}", file=sys.stderr)
        log_path = err.log_path if isinstance(err, BenchmarkFailed) else None
        if log_path is not None and (tail := log_tail(log_path)):
            print(f"tail of {log_path.name}:\n{tail}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
