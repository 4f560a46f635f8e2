"""N Kustomizations applying one Git source: time until all are Ready, and peak RSS.

For each N (100, 500, 1000 by default; ``--sizes 10,50`` to choose), on a fresh local control
plane: the source and kustomize controllers run as processes (``ControlPlane.start_controllers``,
with their default flags: ``--concurrent=4`` for the kustomize controller, as in Flux, and
client-side 50 QPS / 300 burst), one GitRepository follows a bare repository served by
``git daemon`` whose ``app/`` holds four objects (ConfigMap, Secret, ServiceAccount, headless
Service), and N Kustomizations in ``flux-system`` each apply ``app/`` into a namespace of their
own (``targetNamespace``). The namespaces are created, and the controller manager's work in
them (ServiceAccount ``default``, ConfigMap ``kube-root-ca.crt``) finished, before the clock
starts; the clock runs from the first create of a Kustomization until every one is
Ready=True with ``lastAppliedRevision`` at the artifact's revision.

Peak RSS is each controller process's own ``VmHWM``, read from ``/proc`` once all are Ready
(the short-lived ``kustomize`` builds are separate processes and not included). CPU seconds
are read from ``/proc/<pid>/stat`` over the measured window; the kustomize builds show as the
controller's reaped children. The API requests of the window (every client's, from the API
server's ``apiserver_request_total``) are printed per Kustomization: at the default 50 QPS
they, not CPU, set the pace. ``--kustomize-flags`` passes more flags to the kustomize
controller to try other settings.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controllers.api import ResourceInfo
from controllers.envtest import (
    ADMIN_USER,
    ControlPlane,
    ControlPlaneError,
    die_with_parent,
    free_port,
)
from controllers.informer import Informer
from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from source.api_v1 import GitRepository

SIZES = (100, 500, 1000)
# Flux's kustomize-controller default, and weir's (controllers.cmd.build_parser).
CONCURRENT = 4
# Generous: a run that takes longer than this is broken, not slow.
READY_BOUND_SECONDS = 30 * 60
SETUP_BOUND_SECONDS = 300
# Requests the benchmark itself keeps in flight while creating objects (no client rate limit).
CREATE_PARALLELISM = 32
SOURCE_NAMESPACE = "flux-system"
SOURCE_NAME = "bench"
APP_PATH = "app"

NAMESPACE = ResourceInfo(
    group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False
)
GITREPOSITORY = GitRepository.info
KUSTOMIZATION = Kustomization.info
_SECRET_VALUE = base64.b64encode(b"not-a-real-secret").decode()
APP_FILES = {
    "configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\n"
        "data:\n  greeting: hello from weir\n"
    ),
    "secret.yaml": (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-credentials\n"
        f"type: Opaque\ndata:\n  token: {_SECRET_VALUE}\n"
    ),
    "serviceaccount.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n",
    # Headless: the control plane's service range has 254 addresses, fewer than N Services.
    "service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\nspec:\n  clusterIP: None\n"
        "  selector:\n    app: app\n  ports:\n  - name: http\n    port: 80\n"
        "    targetPort: 8080\n"
    ),
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "weir",
    "GIT_AUTHOR_EMAIL": "weir@localhost",
    "GIT_COMMITTER_NAME": "weir",
    "GIT_COMMITTER_EMAIL": "weir@localhost",
}


class BenchmarkFailed(Exception):
    """The scenario did not complete; the message says what happened."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


@dataclass
class Usage:
    """One process's memory peak and CPU seconds over the measured window."""

    peak_rss_mib: float
    rss_mib: float
    cpu_seconds: float
    children_cpu_seconds: float


@dataclass
class Row:
    """The figures of one N."""

    size: int
    created_seconds: float
    first_ready_seconds: float
    all_ready_seconds: float
    load_before: float
    load_after: float
    usage: dict[str, Usage] = field(default_factory=dict)
    idle_rss_mib: float = 0.0
    mean_reconcile_seconds: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)


# The Git source


def make_repository(root: Path) -> Path:
    """A bare repository ``root/bench.git`` whose one commit holds APP_FILES under APP_PATH."""
    work = root / "work"
    (work / APP_PATH).mkdir(parents=True)
    for name, content in APP_FILES.items():
        (work / APP_PATH / name).write_text(content)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "App"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    bare = root / "bench.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def start_git_daemon(base: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={base}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


# Processes, from /proc: the control plane keeps its processes to itself.


def _stat_fields(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised command name)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children_by_command() -> dict[str, int]:
    """This process's children, named ``<package>-controller`` for ``python -m <package>`` and
    by executable name otherwise (``kube-apiserver``, ``etcd``, ...)."""
    found: dict[str, int] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if int(_stat_fields(pid)[1]) != me:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        args = [a.decode(errors="replace") for a in argv if a]
        if len(args) >= 3 and args[1] == "-m":
            found[args[2].replace("_", "-") + "-controller"] = pid
        elif args:
            found[Path(args[0]).name] = pid
    return found


def flag_value(pid: int, flag: str) -> str:
    """The value of ``--flag=value`` on the command line of ``pid``."""
    for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
        text = arg.decode(errors="replace")
        if text.startswith(f"--{flag}="):
            return text.partition("=")[2]
    raise BenchmarkFailed(f"process {pid} has no --{flag}")


def is_running(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] not in ("Z", "X")
    except OSError:
        return False


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own user+system, reaped children's user+system) CPU seconds of ``pid``."""
    fields = _stat_fields(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return own / ticks, children / ticks


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of ``pid`` in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmHWM"], values["VmRSS"]


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# Waiting


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == "Ready"), {})


class ReadyTracker:
    """Records when each Kustomization first became Ready at ``revision`` (an informer
    handler); ``done`` is set once ``expected`` of them are."""

    def __init__(self, expected: int, revision: str) -> None:
        self.expected = expected
        self.revision = revision
        self.ready_at: dict[str, float] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.done = asyncio.Event()

    def __call__(self, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is None or key in self.ready_at:
            return
        self.latest[key] = new
        status = new.get("status") or {}
        if (
            ready_condition(new).get("status") == "True"
            and status.get("lastAppliedRevision") == self.revision
            and status.get("observedGeneration") == new["metadata"].get("generation")
        ):
            self.ready_at[key] = time.monotonic()
            if len(self.ready_at) >= self.expected:
                self.done.set()

    def not_ready_sample(self, count: int = 5) -> list[str]:
        pending = [k for k in self.latest if k not in self.ready_at]
        sample = []
        for key in pending[:count]:
            ready = ready_condition(self.latest[key])
            if ready:
                sample.append(f"{key}: Ready={ready.get('status')} {ready.get('message')!r}")
            else:
                sample.append(f"{key}: no status yet")
        return sample


async def wait_event(
    what: str,
    event: asyncio.Event,
    bound: float,
    watched: dict[str, int],
    progress: Callable[[], str],
) -> None:
    """Wait for ``event``, failing when ``bound`` seconds pass or a watched process exits."""
    deadline = time.monotonic() + bound
    while not event.is_set():
        for name, pid in watched.items():
            if not is_running(pid):
                raise BenchmarkFailed(f"{name} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"{what} not reached within {bound:.0f}s: {progress()}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                await event.wait()


async def wait_healthy(pids: dict[str, int], bound: float) -> None:
    """Wait until each controller's ``/readyz`` answers ok (its informers have synced)."""
    deadline = time.monotonic() + bound
    async with httpx.AsyncClient(timeout=2) as http:
        for name, pid in pids.items():
            url = f"http://{flag_value(pid, 'health-addr')}/readyz"
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        break
                if not is_running(pid) or time.monotonic() > deadline:
                    raise BenchmarkFailed(f"{name} did not become ready")
                await asyncio.sleep(0.2)  # no readiness push; a setup poll is fine here


async def wait_artifact(client: KubeClient, pid: int, bound: float, log_path: Path) -> str:
    """The revision of the GitRepository's artifact, once it has one."""
    deadline = time.monotonic() + bound
    while True:
        source = await client.get(GITREPOSITORY, SOURCE_NAMESPACE, SOURCE_NAME)
        artifact = (source.get("status") or {}).get("artifact")
        if artifact:
            return str(artifact["revision"])
        if not is_running(pid) or time.monotonic() > deadline:
            ready = ready_condition(source)
            message = f"GitRepository has no artifact: {ready.get('message')!r}"
            raise BenchmarkFailed(message, log_path)
        await asyncio.sleep(0.2)  # one object during setup; a poll is fine here


async def wait_namespaces_settled(client: KubeClient, count: int, bound: float) -> None:
    """Wait until the controller manager has put its ServiceAccount and root CA ConfigMap in
    ``count`` namespaces, so that work does not overlap the measurement."""
    deadline = time.monotonic() + bound
    for path, name in (
        ("/api/v1/serviceaccounts", "default"),
        ("/api/v1/configmaps", "kube-root-ca.crt"),
    ):
        while True:
            query = {"fieldSelector": f"metadata.name={name}"}
            found = len((await client.request("GET", path, query=query)).get("items") or [])
            if found >= count:
                break
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"only {found} of {count} namespaces have {name}")
            await asyncio.sleep(0.5)  # setup only; a poll is fine here


# The scenario


async def create_all(
    client: KubeClient, info: ResourceInfo, objects: Iterable[dict[str, Any]]
) -> None:
    """Create every object, CREATE_PARALLELISM requests at a time."""
    limit = asyncio.Semaphore(CREATE_PARALLELISM)

    async def create(obj: dict[str, Any]) -> None:
        async with limit:
            await client.create(info, obj)

    async with asyncio.TaskGroup() as group:
        for obj in objects:
            group.create_task(create(obj))


def namespace_name(index: int) -> str:
    return f"app-{index:04d}"


def kustomization(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": f"app-{index:04d}", "namespace": SOURCE_NAMESPACE},
        "spec": {
            "interval": "1h",  # nothing runs twice during the measurement
            "path": f"./{APP_PATH}",
            "prune": True,
            "targetNamespace": namespace_name(index),
            "sourceRef": {"kind": "GitRepository", "name": SOURCE_NAME},
        },
    }


async def mean_reconcile_seconds(pid: int) -> float:
    """Mean of gotk_reconcile_duration_seconds over every Kustomization, from /metrics."""
    url = f"http://{flag_value(pid, 'metrics-addr')}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url)).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("gotk_reconcile_duration_seconds_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gotk_reconcile_duration_seconds_count{"):
            count += float(line.rsplit(" ", 1)[1])
    return total / count if count else 0.0


_REQUEST_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


async def apiserver_requests(plane: ControlPlane) -> Counter[str]:
    """Requests the API server has answered so far, by ``VERB resource[/subresource]`` (with
    `` (dry run)`` for dry runs), from its ``apiserver_request_total``; watches excluded."""
    certs = plane.certs
    context = ssl.create_default_context(cafile=str(certs.path("ca", "crt")))
    context.load_cert_chain(certs.path(ADMIN_USER, "crt"), certs.path(ADMIN_USER, "key"))
    async with httpx.AsyncClient(verify=context, timeout=30) as http:
        answer = await http.get(f"{plane.server}/metrics")
    answer.raise_for_status()
    counts: Counter[str] = Counter()
    for line in answer.text.splitlines():
        match = _REQUEST_LINE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb") in ("WATCH", "CONNECT"):
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        dry_run = " (dry run)" if labels.get("dry_run") else ""
        counts[f"{labels.get('verb')} {resource}{dry_run}"] += int(float(match["value"]))
    return counts


async def scenario(plane: ControlPlane, size: int, url: str) -> Row:
    pids = children_by_command()
    controllers = {name: pids[name] for name in ("source-controller", "kustomize-controller")}
    client = await KubeClient.connect(str(plane.admin_kubeconfig), qps=0)
    informer_task: asyncio.Task[None] | None = None
    try:
        await wait_healthy(controllers, SETUP_BOUND_SECONDS)
        await client.create(NAMESPACE, {"metadata": {"name": SOURCE_NAMESPACE}})
        await client.create(
            GITREPOSITORY,
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": SOURCE_NAME, "namespace": SOURCE_NAMESPACE},
                "spec": {"url": url, "interval": "1h", "ref": {"branch": "main"}},
            },
        )
        namespaces = ({"metadata": {"name": namespace_name(i)}} for i in range(size))
        await create_all(client, NAMESPACE, namespaces)
        revision = await wait_artifact(
            client,
            controllers["source-controller"],
            SETUP_BOUND_SECONDS,
            plane.workdir / "source-controller.log",
        )
        existing = len((await client.list(NAMESPACE))["items"])
        await wait_namespaces_settled(client, existing, SETUP_BOUND_SECONDS)

        tracker = ReadyTracker(size, revision)
        informer = Informer(client, KUSTOMIZATION, tracker, namespace=SOURCE_NAMESPACE)
        informer_task = asyncio.create_task(informer.run())
        await informer.synced.wait()
        load_before = os.getloadavg()[0]
        watched = {**controllers, "kube-apiserver": pids["kube-apiserver"]}
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        idle_rss = memory_mib(controllers["kustomize-controller"])[1]
        requests_before = await apiserver_requests(plane)
        started = time.monotonic()
        await create_all(client, KUSTOMIZATION, (kustomization(i) for i in range(size)))
        created = time.monotonic()

        def progress() -> str:
            sample = "; ".join(tracker.not_ready_sample()) or "no status written yet"
            return f"{len(tracker.ready_at)}/{size} Ready; not Ready: {sample}"

        try:
            await wait_event(
                "all Kustomizations Ready", tracker.done, READY_BOUND_SECONDS, watched, progress
            )
        except BenchmarkFailed as err:
            raise BenchmarkFailed(str(err), plane.workdir / "kustomize-controller.log") from None
        finished = time.monotonic()
        load_after = os.getloadavg()[0]
        requests = await apiserver_requests(plane)
        requests.subtract(requests_before)
        usage = {}
        for name, pid in watched.items():
            own, children = cpu_seconds(pid)
            peak, rss = memory_mib(pid)
            usage[name] = Usage(
                peak, rss, own - cpu_before[name][0], children - cpu_before[name][1]
            )
        return Row(
            size=size,
            created_seconds=created - started,
            first_ready_seconds=min(tracker.ready_at.values()) - started,
            all_ready_seconds=finished - started,
            load_before=load_before,
            load_after=load_after,
            usage=usage,
            idle_rss_mib=idle_rss,
            requests=+requests,
            mean_reconcile_seconds=await mean_reconcile_seconds(
                controllers["kustomize-controller"]
            ),
        )
    finally:
        if informer_task is not None:
            informer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await informer_task
        await client.close()


def measure(size: int, root: Path, url: str, kustomize_flags: list[str]) -> Row:
    """One size on a fresh control plane and fresh controllers, so that neither the memory
    peaks nor the caches of one size carry over to the next."""
    workdir = root / f"cluster-{size}"
    storage_port = free_port()
    with ControlPlane(workdir, nodes=0) as plane:
        plane.start_controllers(
            {
                "source": [
                    f"--storage-path={workdir / 'storage'}",
                    f"--storage-addr=127.0.0.1:{storage_port}",
                    f"--storage-adv-addr=127.0.0.1:{storage_port}",
                ],
                "kustomize": [f"--concurrent={CONCURRENT}", *kustomize_flags],
            }
        )
        return asyncio.run(scenario(plane, size, url))


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'N':>5} {'all Ready':>10} {'first Ready':>12} {'created':>8} {'Ks/s':>6}"
        f" {'mean reconcile':>15} {'kustomize RSS idle/peak/end':>28}"
        f" {'source peak RSS':>16} {'load avg':>11}"
    )
    for row in rows:
        kustomize = row.usage["kustomize-controller"]
        source = row.usage["source-controller"]
        rss = f"{row.idle_rss_mib:.0f}/{kustomize.peak_rss_mib:.0f}/{kustomize.rss_mib:.0f} MiB"
        print(
            f"{row.size:>5} {row.all_ready_seconds:>9.1f}s {row.first_ready_seconds:>11.2f}s"
            f" {row.created_seconds:>7.1f}s {row.size / row.all_ready_seconds:>6.1f}"
            f" {row.mean_reconcile_seconds:>14.3f}s {rss:>28}"
            f" {source.peak_rss_mib:>12.0f} MiB {row.load_before:>5.2f}>{row.load_after:<5.2f}"
        )
    print("CPU seconds during the measured window:")
    print(
        f"{'N':>5} {'kustomize-controller':>21} {'kustomize builds':>17}"
        f" {'source-controller':>18} {'kube-apiserver':>15}"
    )
    for row in rows:
        usage = row.usage
        print(
            f"{row.size:>5} {usage['kustomize-controller'].cpu_seconds:>21.1f}"
            f" {usage['kustomize-controller'].children_cpu_seconds:>17.1f}"
            f" {usage['source-controller'].cpu_seconds:>18.1f}"
            f" {usage['kube-apiserver'].cpu_seconds:>15.1f}"
        )
    print("API requests per Kustomization during the measured window (every client):")
    for row in rows:
        total = sum(row.requests.values()) / row.size
        top = ", ".join(
            f"{what} {count / row.size:.2f}"
            for what, count in row.requests.most_common()
            if count / row.size >= 0.05
        )
        print(f"{row.size:>5} {total:.1f}: {top}")


def sizes_arg(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from err
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("every size must be at least 1")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/kustomize_scale.py", description=__doc__)
    parser.add_argument("--sizes", type=sizes_arg, default=list(SIZES), help="e.g. 100,500")
    parser.add_argument(
        "--kustomize-flags",
        type=shlex.split,
        default=[],
        help="more flags for the kustomize controller, given with '=' as in"
        " --kustomize-flags='--concurrent=20 --kube-api-qps=500'",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="weir-bench-ks-"))
    port = free_port()
    daemon = None
    rows: list[Row] = []
    try:
        make_repository(root)
        daemon = start_git_daemon(root, port)
        url = f"git://127.0.0.1:{port}/bench.git"
        flags = " ".join([f"--concurrent={CONCURRENT}", *args.kustomize_flags])
        print(
            f"{os.cpu_count()} cores; kustomize-controller {flags} (other flags at their"
            " defaults, e.g. 50 QPS / 300 burst); 4 objects per Kustomization",
            flush=True,
        )
        for size in args.sizes:
            rows.append(measure(size, root, url, args.kustomize_flags))
            print(f"N={size}: all Ready in {rows[-1].all_ready_seconds:.1f}s", flush=True)
        print_rows(rows)
        return 0
    except (BenchmarkFailed, ControlPlaneError) as err:
        if rows:
            print_rows(rows)
        print(f"error: {err}", file=sys.stderr)
        log_path = err.log_path if isinstance(err, BenchmarkFailed) else None
        if log_path is not None and (tail := log_tail(log_path)):
            print(f"tail of {log_path.name}:\n{tail}", file=sys.stderr)
        return 1
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
