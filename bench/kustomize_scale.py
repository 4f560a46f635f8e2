"""N Kustomizations applying one Git source, weir's controllers beside Flux's: time until all
are Ready, API requests, reconcile time and memory, with the weir/Flux ratios.

For each N (100, 500, 1000 by default; ``--sizes 10,50`` to choose), each flag set (``--flags``:
``default``, both projects' defaults, and ``tuned``, ``--concurrent=20 --kube-api-qps=500
--kube-api-burst=1000`` for the kustomize controllers) and each controller set
(``--controllers``: weir's source and kustomize controllers, ``python -m source`` and ``python
-m kustomize``; Flux's source-controller and kustomize-controller v1.9.6, built from
``bench/flux/``), in that order, on a fresh local control plane with that set's CRDs: one
GitRepository follows a bare repository served over smart HTTP (``git http-backend``, no auth:
Flux's GitRepository refuses ``git://``) whose ``app/`` holds four objects (ConfigMap, Secret,
ServiceAccount, headless Service), and N Kustomizations in ``flux-system`` each apply ``app/``
into a namespace of their own (``targetNamespace``). The namespaces are created, and the
controller manager's work in them (ServiceAccount ``default``, ConfigMap ``kube-root-ca.crt``)
finished, before the clock starts; the clock runs from the first create of a Kustomization
until every one is Ready=True with ``lastAppliedRevision`` at the artifact's revision.

Per controller process, from ``/proc``: idle RSS (``VmRSS`` once ``/readyz`` answers and the
RSS has settled, before any object exists); peak RSS, the process's ``VmHWM`` and, with its
children (weir's kustomize build workers and git worker; Flux's controllers have none), the
largest sum of their ``VmRSS`` sampled every 0.25 s over the measured window (workers come
and go, so their ``VmHWM`` at the end misses some); CPU seconds over the measured window, the
process's own and its children's (live and reaped). From the API server's
``apiserver_request_total``: the requests of the window, every client's, per Kustomization.
From the kustomize controller's ``/metrics``: the mean of ``gotk_reconcile_duration_seconds``
over the Kustomizations (both export it). And whether the API server ran API Priority and
Fairness (the ``X-Kubernetes-PF-FlowSchema-UID`` header): with it, both controller sets drop
their client-side rate limit, so ``--kube-api-qps``/``--kube-api-burst`` do nothing; without
it, 50 QPS sets the pace. ``--kustomize-flags`` adds flags for both kustomize controllers,
to try other settings.
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
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from flux import VERSION as FLUX_VERSION
from flux import FluxBuildError, FluxController, ensure_flux

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
CONTROLLER_SETS = ("weir", "flux")
# Flags for both kustomize controllers. Without any, both run with --concurrent=4 and a
# client-side limit of 50 QPS / 300 burst; "tuned" is what fluxcd/flux-benchmark runs Flux with.
FLAG_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "tuned": ("--concurrent=20", "--kube-api-qps=500", "--kube-api-burst=1000"),
}
DEFAULT_FLAGS = "none (both default to --concurrent=4 --kube-api-qps=50 --kube-api-burst=300)"
FLOW_CONTROL_NOTE = (
    "; with it both controller sets drop their client-side rate limit, as client-go's"
    " flowcontrol.IsEnabled check makes Flux do, so --kube-api-qps/--kube-api-burst do nothing"
)
CONTROLLERS = ("source-controller", "kustomize-controller")
# Generous: a run that takes longer than this is broken, not slow.
READY_BOUND_SECONDS = 30 * 60
SETUP_BOUND_SECONDS = 300
# A controller is idle once its RSS has moved less than this over this many seconds.
IDLE_TOLERANCE_MIB = 1.0
IDLE_SECONDS = 3.0
# How often the controllers' process trees are sampled for their summed RSS.
SAMPLE_SECONDS = 0.25
# Requests the benchmark itself keeps in flight while creating objects (no client rate limit).
CREATE_PARALLELISM = 32
SOURCE_NAMESPACE = "flux-system"
SOURCE_NAME = "bench"
REPOSITORY = "bench.git"
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


class ControllerDidNotStart(BenchmarkFailed):
    """A controller exited or did not answer ``/readyz`` before anything was created."""


@dataclass
class Memory:
    """A resident size in MiB: of the process alone, and with its children's (``Usage``)."""

    own: float
    with_children: float


@dataclass
class Usage:
    """One controller process: idle RSS, peak RSS and CPU seconds over the measured window.

    ``peak_rss.own`` is the process's VmHWM; ``peak_rss.with_children`` the largest sum of its
    and its descendants' VmRSS sampled over the window (children come and go: weir's kustomize
    controller starts a build worker per concurrent build and keeps 8 when idle), at least the
    VmHWM. ``children_hwm`` is the VmHWM summed over the children still alive at the end.
    """

    idle_rss: Memory
    peak_rss: Memory
    children_hwm: float
    most_children: int
    cpu_seconds: float
    children_cpu_seconds: float


@dataclass
class Row:
    """The figures of one controller set at one N and flag set."""

    controllers: str
    flags: str
    size: int
    flow_control: bool
    created_seconds: float
    first_ready_seconds: float
    all_ready_seconds: float
    load_before: float
    load_after: float
    mean_reconcile_seconds: float
    apiserver_cpu_seconds: float
    usage: dict[str, Usage] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)

    @property
    def requests_per_kustomization(self) -> float:
        return sum(self.requests.values()) / self.size


# The Git source: smart HTTP without auth


def make_repository(root: Path) -> Path:
    """A bare repository ``root/bench.git`` whose one commit holds APP_FILES under APP_PATH."""
    work = root / "work"
    (work / APP_PATH).mkdir(parents=True)
    for name, content in APP_FILES.items():
        (work / APP_PATH / name).write_text(content)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "App"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    bare = root / REPOSITORY
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


@dataclass(frozen=True)
class GitSource:
    """Bare repositories under ``root``, to serve with ``backend`` (``git http-backend``)."""

    root: Path
    backend: Path

    @classmethod
    def create(cls, root: Path) -> GitSource:
        make_repository(root)
        (root / "home").mkdir()
        exec_path = subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return cls(root, Path(exec_path) / "git-http-backend")


@contextlib.asynccontextmanager
async def serve_git(source: GitSource) -> AsyncIterator[str]:
    """Serve ``source`` over smart HTTP, anonymously and read-only (``git http-backend`` as
    CGI); yields the base URL. Both controller sets fetch from it."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()  # small: the bench's one fetch per controller set
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(source.root / "home"),  # no ~/.gitconfig of the caller's
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(source.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": request.remote or "",
            "HTTP_GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        process = await asyncio.create_subprocess_exec(
            source.backend,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        output, _ = await process.communicate(body)
        separator = b"\r\n\r\n" if b"\r\n\r\n" in output else b"\n\n"
        head, _, payload = output.partition(separator)
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name.lower() != "content-length":
                headers[name] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a port of its own, not one chosen free and maybe taken
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


# Flux's controllers, as processes beside the control plane


@contextlib.contextmanager
def processes_running(
    logdir: Path, argvs: dict[str, list[str]], env: dict[str, str], stop_timeout: float
) -> Iterator[None]:
    """Run each ``argvs[name]`` with its log in ``<logdir>/<name>.log``; on exit each is
    terminated, and killed if it outlives ``stop_timeout``."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in argvs.items():
            with (logdir / f"{name}.log").open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        argv,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent,
                    )
                )
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def flux_controllers(
    plane: ControlPlane,
    flux: dict[str, FluxController],
    extra_args: dict[str, Sequence[str]],
) -> Iterator[None]:
    """Run Flux's controllers against ``plane`` with ``extra_args[name]`` after the common
    flags; logs go to ``<workdir>/<name>.log``. They take the cluster from ``KUBECONFIG``
    (there is no ``--kubeconfig`` flag) and their namespace from ``RUNTIME_NAMESPACE``."""
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.admin_kubeconfig),
        "RUNTIME_NAMESPACE": SOURCE_NAMESPACE,
    }
    argvs = {
        name: [
            str(flux[name].binary),
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            "--enable-leader-election=false",
            "--watch-all-namespaces=true",
            "--log-encoding=json",
            *extra_args.get(name, ()),
        ]
        for name in CONTROLLERS
    }
    with processes_running(plane.workdir, argvs, env, stop_timeout=10):
        yield


# Processes, from /proc: the control plane keeps its processes to itself.


def _stat_fields(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised command name)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def parents() -> dict[int, int]:
    """Every process's parent: pid -> ppid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
                found[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    return found


def descendants(pid: int, table: dict[int, int] | None = None) -> list[int]:
    """The live descendants of ``pid``, from ``table`` (``parents()``) or a fresh one."""
    table = parents() if table is None else table
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for child, parent in table.items() if parent in frontier]
        found += children
        frontier = children
    return found


def children_by_command() -> dict[str, int]:
    """This process's children, named ``<package>-controller`` for ``python -m <package>`` and
    by executable name otherwise (``kube-apiserver``, Flux's ``kustomize-controller``, ...)."""
    found: dict[str, int] = {}
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):  # gone meanwhile
            if int(_stat_fields(pid)[1]) != os.getpid():
                continue
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
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
    """(own, children's) user+system CPU seconds of ``pid``: its children's are those of the
    reaped ones and of every live descendant (kustomize build workers live on)."""
    ticks = os.sysconf("SC_CLK_TCK")

    def own_and_reaped(process: int) -> tuple[int, int]:
        fields = _stat_fields(process)
        return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])

    own, children = own_and_reaped(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError):  # gone meanwhile: reaped, so counted above
            children += sum(own_and_reaped(child))
    return own / ticks, children / ticks


def _statusmib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0]) / 1024
    return 0.0  # a zombie has no memory lines


def memory(pid: int, key: str) -> Memory:
    """``key`` (``VmRSS`` or ``VmHWM``) of ``pid``, alone and summed with its descendants'."""
    own = _statusmib(pid, key)
    total = own
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            total += _statusmib(child, key)
    return Memory(own, total)


class TreeSampler:
    """Samples each process's and its descendants' summed VmRSS every SAMPLE_SECONDS, keeping
    the largest sum and the most descendants seen, until cancelled."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_mib = dict.fromkeys(pids, 0.0)
        self.most_children = dict.fromkeys(pids, 0)

    def sample(self) -> None:
        table = parents()
        for name, pid in self.pids.items():
            tree = [pid, *descendants(pid, table)]
            total = 0.0
            for process in tree:
                with contextlib.suppress(OSError):  # gone meanwhile
                    total += _statusmib(process, "VmRSS")
            self.peak_mib[name] = max(self.peak_mib[name], total)
            self.most_children[name] = max(self.most_children[name], len(tree) - 1)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)  # sampling /proc: nothing to wait on


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


async def wait_healthy(pids: dict[str, int], bound: float, workdir: Path) -> None:
    """Wait until each controller's ``/readyz`` answers ok."""
    deadline = time.monotonic() + bound
    async with httpx.AsyncClient(timeout=2) as http:
        for name, pid in pids.items():
            url = f"http://{flag_value(pid, 'health-addr')}/readyz"
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        break
                if not is_running(pid) or time.monotonic() > deadline:
                    log = workdir / f"{name}.log"
                    raise ControllerDidNotStart(f"{name} did not become ready", log)
                await asyncio.sleep(0.2)  # no readiness push; a setup poll is fine here


async def idle_rss(pids: dict[str, int], bound: float) -> dict[str, Memory]:
    """Each process's RSS once it has settled (moved less than IDLE_TOLERANCE_MIB over
    IDLE_SECONDS): start-up done, informers synced, nothing to reconcile. A Go controller's
    ``/readyz`` answers before its caches have synced, so readiness alone is too early."""
    interval = 0.5
    deadline = time.monotonic() + bound
    window = int(IDLE_SECONDS / interval) + 1
    samples: dict[str, list[float]] = {name: [] for name in pids}
    while True:
        for name, pid in pids.items():
            samples[name] = [*samples[name][-(window - 1) :], memory(pid, "VmRSS").own]
        settled = all(
            len(values) == window and max(values) - min(values) < IDLE_TOLERANCE_MIB
            for values in samples.values()
        )
        if settled or time.monotonic() > deadline:
            return {name: memory(pid, "VmRSS") for name, pid in pids.items()}
        await asyncio.sleep(interval)  # sampling a process's memory: nothing to wait on


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
        if 'kind="Kustomization"' not in line:
            continue
        if line.startswith("gotk_reconcile_duration_seconds_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gotk_reconcile_duration_seconds_count{"):
            count += float(line.rsplit(" ", 1)[1])
    return total / count if count else 0.0


_REQUEST_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
# A server with API Priority and Fairness names the flow schema of every request it answers.
FLOW_SCHEMA_HEADER = "X-Kubernetes-PF-FlowSchema-UID"


def _admin_http(plane: ControlPlane) -> httpx.AsyncClient:
    certs = plane.certs
    context = ssl.create_default_context(cafile=str(certs.path("ca", "crt")))
    context.load_cert_chain(certs.path(ADMIN_USER, "crt"), certs.path(ADMIN_USER, "key"))
    return httpx.AsyncClient(verify=context, timeout=30)


async def has_flow_control(plane: ControlPlane) -> bool:
    """Whether the API server runs API Priority and Fairness: the check client-go's
    ``flowcontrol.IsEnabled`` makes, and Flux's controllers with it (``GET /livez/ping``)."""
    async with _admin_http(plane) as http:
        answer = await http.get(f"{plane.server}/livez/ping")
    return FLOW_SCHEMA_HEADER in answer.headers


async def apiserver_requests(plane: ControlPlane) -> Counter[str]:
    """Requests the API server has answered so far, by ``VERB resource[/subresource]`` (with
    `` (dry run)`` for dry runs), from its ``apiserver_request_total``; watches excluded."""
    async with _admin_http(plane) as http:
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


def print_requests(title: str, columns: Mapping[str, tuple[Counter[str], int]]) -> None:
    """One column per controller set: its requests by kind, each divided by its N."""
    print(f"\n{title}, during the measured window (every client's; under 0.05 left out):")
    print(f"{'':>40}" + "".join(f"{name:>8}" for name in columns))
    kinds: Counter[str] = Counter()
    for requests, _ in columns.values():
        kinds.update(requests)
    for kind, _ in kinds.most_common():
        counts = [requests[kind] / size for requests, size in columns.values()]
        if max(counts) >= 0.05:
            print(f"{kind:>40}" + "".join(f"{count:>8.2f}" for count in counts))


@dataclass(frozen=True)
class Run:
    """What one measurement runs: a controller set, a flag set and N."""

    controllers: str
    flags: str
    size: int


async def scenario(plane: ControlPlane, run: Run, git: GitSource) -> Row:
    pids = children_by_command()
    controllers = {name: pids[name] for name in CONTROLLERS}
    client = await KubeClient.connect(str(plane.admin_kubeconfig), qps=0)
    tasks: list[asyncio.Task[None]] = []  # the informer's and the sampler's
    logs = {name: plane.workdir / f"{name}.log" for name in CONTROLLERS}
    try:
        await wait_healthy(controllers, SETUP_BOUND_SECONDS, plane.workdir)
        idle = await idle_rss(controllers, SETUP_BOUND_SECONDS)
        flow_control = await has_flow_control(plane)
        async with serve_git(git) as git_url:
            await client.create(NAMESPACE, {"metadata": {"name": SOURCE_NAMESPACE}})
            await client.create(
                GITREPOSITORY,
                {
                    "apiVersion": "source.toolkit.fluxcd.io/v1",
                    "kind": "GitRepository",
                    "metadata": {"name": SOURCE_NAME, "namespace": SOURCE_NAMESPACE},
                    "spec": {
                        "url": f"{git_url}/{REPOSITORY}",
                        "interval": "1h",
                        "ref": {"branch": "main"},
                    },
                },
            )
            namespaces = ({"metadata": {"name": namespace_name(i)}} for i in range(run.size))
            await create_all(client, NAMESPACE, namespaces)
            revision = await wait_artifact(
                client,
                controllers["source-controller"],
                SETUP_BOUND_SECONDS,
                logs["source-controller"],
            )
        existing = len((await client.list(NAMESPACE))["items"])
        await wait_namespaces_settled(client, existing, SETUP_BOUND_SECONDS)

        tracker = ReadyTracker(run.size, revision)
        informer = Informer(client, KUSTOMIZATION, tracker, namespace=SOURCE_NAMESPACE)
        tasks.append(asyncio.create_task(informer.run()))
        await informer.synced.wait()
        load_before = os.getloadavg()[0]
        watched = {**controllers, "kube-apiserver": pids["kube-apiserver"]}
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        requests_before = await apiserver_requests(plane)
        sampler = TreeSampler(controllers)
        tasks.append(asyncio.create_task(sampler.run()))
        started = time.monotonic()
        await create_all(client, KUSTOMIZATION, (kustomization(i) for i in range(run.size)))
        created = time.monotonic()

        def progress() -> str:
            sample = "; ".join(tracker.not_ready_sample()) or "no status written yet"
            return f"{len(tracker.ready_at)}/{run.size} Ready; not Ready: {sample}"

        try:
            await wait_event(
                "all Kustomizations Ready", tracker.done, READY_BOUND_SECONDS, watched, progress
            )
        except BenchmarkFailed as err:
            raise BenchmarkFailed(str(err), logs["kustomize-controller"]) from None
        finished = time.monotonic()
        sampler.sample()
        load_after = os.getloadavg()[0]
        requests = await apiserver_requests(plane)
        requests.subtract(requests_before)
        cpu_after = {name: cpu_seconds(pid) for name, pid in watched.items()}
        usage = {}
        for name, pid in controllers.items():
            hwm = memory(pid, "VmHWM")
            usage[name] = Usage(
                idle_rss=idle[name],
                peak_rss=Memory(hwm.own, max(hwm.own, sampler.peak_mib[name])),
                children_hwm=hwm.with_children - hwm.own,
                most_children=sampler.most_children[name],
                cpu_seconds=cpu_after[name][0] - cpu_before[name][0],
                children_cpu_seconds=cpu_after[name][1] - cpu_before[name][1],
            )
        return Row(
            controllers=run.controllers,
            flags=run.flags,
            size=run.size,
            flow_control=flow_control,
            created_seconds=created - started,
            first_ready_seconds=min(tracker.ready_at.values()) - started,
            all_ready_seconds=finished - started,
            load_before=load_before,
            load_after=load_after,
            mean_reconcile_seconds=await mean_reconcile_seconds(
                controllers["kustomize-controller"]
            ),
            apiserver_cpu_seconds=(
                cpu_after["kube-apiserver"][0] - cpu_before["kube-apiserver"][0]
            ),
            usage=usage,
            requests=+requests,
        )
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()


def measure(
    run: Run,
    workdir: Path,
    git: GitSource,
    kustomize_flags: Sequence[str],
    flux: dict[str, FluxController] | None,
) -> Row:
    """One run on a fresh control plane and fresh controllers, so that neither the memory
    peaks nor the caches of one run carry over to the next. weir's and Flux's CRDs are the
    same API groups, so each control plane has one set's."""

    def storage() -> list[str]:
        # Chosen once the control plane runs, whose connections take ephemeral ports too.
        port = free_port()
        return [
            f"--storage-path={workdir / 'storage'}",
            f"--storage-addr=127.0.0.1:{port}",
            f"--storage-adv-addr=127.0.0.1:{port}",
        ]

    if flux is None:
        with ControlPlane(workdir, nodes=0) as plane:
            plane.start_controllers({"source": storage(), "kustomize": kustomize_flags})
            return asyncio.run(scenario(plane, run, git))
    with ControlPlane(workdir, crd_dir=None, nodes=0) as plane:
        (workdir / "storage").mkdir()  # Flux's source-controller wants it to exist
        plane.install_crds(sorted(path for c in flux.values() for path in c.crd_dir.glob("*.yaml")))
        extra = {"source-controller": storage(), "kustomize-controller": kustomize_flags}
        with flux_controllers(plane, flux, extra):
            return asyncio.run(scenario(plane, run, git))


def measure_once_more_if_not_started(
    run: Run,
    root: Path,
    git: GitSource,
    kustomize_flags: Sequence[str],
    flux: dict[str, FluxController] | None,
) -> Row:
    """``measure``, run again on a new control plane when a controller did not start (a port
    chosen free was taken meanwhile: the machine is shared)."""
    workdir = root / f"cluster-{run.controllers}-{run.flags}-{run.size}"
    try:
        return measure(run, workdir, git, kustomize_flags, flux)
    except ControllerDidNotStart as err:
        print(f"{err}; running N={run.size} {run.flags} {run.controllers} again", flush=True)
        return measure(run, workdir.with_name(workdir.name + "-again"), git, kustomize_flags, flux)


# Printing


def ratio(weir: float, flux: float) -> str:
    return f"{weir / flux:.2f}x" if flux else "-"


def mib(memory: Memory) -> str:
    if memory.with_children - memory.own < 0.5:
        return f"{memory.own:.0f}"
    return f"{memory.own:.0f} ({memory.with_children:.0f})"


_COLUMNS = (
    ("N", 5),
    ("controllers", 11),
    ("all Ready", 10),
    ("first Ready", 11),
    ("Ks/s", 6),
    ("reconcile", 10),
    ("req/Ks", 7),
    ("kustomize idle", 15),
    ("kustomize peak", 15),
    ("source idle", 12),
    ("source peak", 12),
    ("kustomize CPU", 14),
    ("load avg", 11),
)


def _line(cells: Sequence[str]) -> str:
    return " ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, _COLUMNS, strict=True))


def _cells(row: Row) -> list[str]:
    kustomize = row.usage["kustomize-controller"]
    source = row.usage["source-controller"]
    return [
        str(row.size),
        row.controllers,
        f"{row.all_ready_seconds:.1f}s",
        f"{row.first_ready_seconds:.2f}s",
        f"{row.size / row.all_ready_seconds:.1f}",
        f"{row.mean_reconcile_seconds * 1000:.0f}ms",
        f"{row.requests_per_kustomization:.1f}",
        mib(kustomize.idle_rss),
        mib(kustomize.peak_rss),
        mib(source.idle_rss),
        mib(source.peak_rss),
        f"{kustomize.cpu_seconds:.1f}+{kustomize.children_cpu_seconds:.1f}",
        f"{row.load_before:.2f}>{row.load_after:.2f}",
    ]


def _ratio_cells(weir: Row, flux: Row) -> list[str]:
    def usage(row: Row, name: str) -> Usage:
        return row.usage[name]

    def memoryratio(name: str, which: str) -> str:
        mine: Memory = getattr(usage(weir, name), which)
        theirs: Memory = getattr(usage(flux, name), which)
        own = ratio(mine.own, theirs.own)
        if mine.with_children - mine.own < 0.5:
            return own
        return f"{own} ({ratio(mine.with_children, theirs.with_children)})"

    def cpu(row: Row) -> float:
        kustomize = usage(row, "kustomize-controller")
        return kustomize.cpu_seconds + kustomize.children_cpu_seconds

    return [
        str(weir.size),
        "weir/flux",
        ratio(weir.all_ready_seconds, flux.all_ready_seconds),
        ratio(weir.first_ready_seconds, flux.first_ready_seconds),
        "",
        ratio(weir.mean_reconcile_seconds, flux.mean_reconcile_seconds),
        ratio(weir.requests_per_kustomization, flux.requests_per_kustomization),
        memoryratio("kustomize-controller", "idle_rss"),
        memoryratio("kustomize-controller", "peak_rss"),
        memoryratio("source-controller", "idle_rss"),
        memoryratio("source-controller", "peak_rss"),
        ratio(cpu(weir), cpu(flux)),
        "",
    ]


def print_rows(rows: list[Row], kustomize_flags: Sequence[str]) -> None:
    print(
        "RSS in MiB (with children, sampled: weir's build workers and git worker); reconcile:"
        " mean gotk_reconcile_duration_seconds; req/Ks: API requests per Kustomization;"
        " CPU: seconds, own+children's, over the window"
    )
    for flags in FLAG_SETS:
        group = [row for row in rows if row.flags == flags]
        if not group:
            continue
        shown = " ".join([*FLAG_SETS[flags], *kustomize_flags]) or DEFAULT_FLAGS
        flow = sorted({"on" if row.flow_control else "off" for row in group})
        print(f"\n{flags} flags for the kustomize controllers: {shown}")
        print(
            f"API server flow control (API Priority and Fairness): {'/'.join(flow)}"
            + (FLOW_CONTROL_NOTE if flow == ["on"] else "")
        )
        print(_line([name for name, _ in _COLUMNS]))
        for size in dict.fromkeys(row.size for row in group):
            by_set = {row.controllers: row for row in group if row.size == size}
            for row in by_set.values():
                print(_line(_cells(row)))
            if "weir" in by_set and "flux" in by_set:
                print(_line(_ratio_cells(by_set["weir"], by_set["flux"])))
    for flags in FLAG_SETS:
        group = [row for row in rows if row.flags == flags]
        if not group:
            continue
        largest = max(row.size for row in group)
        by_set = {row.controllers: row for row in group if row.size == largest}
        print_requests(
            f"API requests per Kustomization, N={largest}, {flags} flags",
            {name: (row.requests, row.size) for name, row in by_set.items()},
        )
    print(
        "\nCPU seconds during the measured window (own+children's); children: the most alive"
        " at once (sampled), and the VmHWM summed over those alive at the end:"
    )
    for row in rows:
        parts = ", ".join(
            f"{name} {u.cpu_seconds:.1f}+{u.children_cpu_seconds:.1f}"
            + (
                f" ({u.most_children} children, {u.children_hwm:.0f} MiB)"
                if u.most_children
                else ""
            )
            for name, u in row.usage.items()
        )
        print(
            f"{row.size:>5} {row.flags:>7} {row.controllers:>4}: {parts},"
            f" kube-apiserver {row.apiserver_cpu_seconds:.1f}"
        )


# Command line


def _list_arg(choices: Iterable[str]) -> Callable[[str], list[str]]:
    allowed = list(choices)

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in allowed]
        if not chosen or unknown:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(allowed)}, got {text!r}")
        return chosen

    return parse


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
        "--controllers",
        type=_list_arg(CONTROLLER_SETS),
        default=list(CONTROLLER_SETS),
        help="controller sets to run, in this order per N (default weir,flux)",
    )
    parser.add_argument(
        "--flags",
        type=_list_arg(FLAG_SETS),
        default=list(FLAG_SETS),
        help="flag sets for the kustomize controllers (default default,tuned)",
    )
    parser.add_argument(
        "--kustomize-flags",
        type=shlex.split,
        default=[],
        help="more flags for both kustomize controllers, given with '=' as in"
        " --kustomize-flags='--concurrent=20 --kube-api-qps=500'",
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
    root = args.keep or Path(tempfile.mkdtemp(prefix="weir-bench-ks-"))
    rows: list[Row] = []
    try:
        flux = ensure_flux() if "flux" in args.controllers else {}
        git = GitSource.create(root / "git")
        print(
            f"{os.cpu_count()} cores; {', '.join(args.controllers)} (Flux {FLUX_VERSION});"
            " 4 objects per Kustomization; one control plane per run",
            flush=True,
        )
        for size in args.sizes:
            for flags in args.flags:
                for controllers in args.controllers:
                    run = Run(controllers, flags, size)
                    kustomize_flags = [*FLAG_SETS[flags], *args.kustomize_flags]
                    flux_set = flux if controllers == "flux" else None
                    rows.append(
                        measure_once_more_if_not_started(run, root, git, kustomize_flags, flux_set)
                    )
                    print(
                        f"N={size} {flags} {controllers}: all Ready in"
                        f" {rows[-1].all_ready_seconds:.1f}s",
                        flush=True,
                    )
        print_rows(rows, args.kustomize_flags)
        return 0
    except (BenchmarkFailed, ControlPlaneError, FluxBuildError) as err:
        if rows:
            print_rows(rows, args.kustomize_flags)
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
