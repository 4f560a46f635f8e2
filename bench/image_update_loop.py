"""Registry push to cluster: how long each stage of image automation takes, weir's controllers
beside Flux's, and the image controllers' memory and CPU, with the weir/Flux ratios.

Run: ``.venv/bin/python bench/image_update_loop.py`` (what ``bench/run`` runs: 3 rounds, N=5,
weir then Flux; under a minute once Flux's controllers are built, which ``bench/flux`` does the
first time, about 4 minutes). The full run is ``--rounds 20 --sizes 10,50`` (about 4 minutes);
``--controllers weir`` skips Flux; ``--keep DIR`` keeps the controllers' logs.

For each controller set (``--controllers``), on a fresh local control plane with that set's
CRDs: weir's source, kustomize and image automation controllers (``python -m source``,
``python -m kustomize``, ``python -m image_automation``), or Flux's source-controller and
kustomize-controller v1.9.6, image-reflector-controller v1.2.0 and image-automation-controller
v1.2.0 (built from ``bench/flux/``; v1.2.1 is refused by the Go module proxy), so that every
stage is one project's own controller and the total is the whole loop of each project. Images
go to Debian's docker-registry (plain HTTP, ``insecure: true``); the fleet repository is a bare
repository served over smart HTTP (``git http-backend``, anonymous, ``http.receivepack`` on so
that the automations can push). It holds a Deployment (``replicas: 0``, the control plane has no
nodes) whose image has a setter marker, applied by a GitRepository and a Kustomization
(interval 1h: only the bench makes them run). An ImageRepository, an ImagePolicy (semver
``>=1.0.0``) and an ImageUpdateAutomation in push mode (no ``spec.git.push``: the checkout
branch) close the loop.

Each of ``--rounds`` rounds pushes tag ``1.<round>.0`` and asks for a scan at once with
``reconcile.fluxcd.io/requestedAt`` (as ``flux reconcile image repository`` does: the interval
would dominate), then records, from watches, when: the ImageRepository's ``lastScanResult``
counts the new tag (scanned); the ImagePolicy's ``latestRef`` is the tag; the automation's
``lastPushCommit`` is a new commit (the bench then asks the GitRepository to reconcile with
``requestedAt``, as a Receiver would on the Git host's webhook); the GitRepository's artifact is
at that commit; the Kustomization is Ready with ``lastAppliedRevision`` at that commit and the
Deployment's image is the new tag (applied). Both automation controllers write
``lastPushCommit`` after their push, so the commit stage includes that status write and the
artifact stage the bench's patch, for both sets alike (a webhook would come a little earlier).
Printed: per-stage medians (each stage from the one before) and the median total, per set, and
their ratio.

Then for each N of ``--sizes``: N ImagePolicies on one new ImageRepository and N automations,
each updating its own directory of the same branch (so their pushes race, and each must retry
on the new head). Once all have settled on the first tag, a new tag is pushed and a scan asked
for; the clock stops when every automation has pushed; the branch must then hold exactly N new
commits with every file at the new tag.

The image controllers' memory and CPU, from ``/proc`` (weir: one process; Flux: the reflector
and the automation controller, each and summed): idle RSS once ``/readyz`` answers and the RSS
has settled, before any object exists; peak RSS, the VmHWM at the end (the largest sampled sum
with children where it is larger); CPU seconds over the rounds and over the scale part.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This file is not named image_automation.py: with bench/ first on sys.path, that name would
# shadow the image_automation package.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flux import FluxBuildError, FluxController, ensure_flux  # noqa: E402
from kustomize_scale import (  # noqa: E402
    GIT_ENV,
    NAMESPACE,
    BenchmarkFailed,
    GitSource,
    Memory,
    TreeSampler,
    _list_arg,
    children_by_command,
    cpu_seconds,
    idle_rss,
    is_running,
    log_tail,
    memory,
    mib,
    processes_running,
    ratio,
    ready_condition,
    serve_git,
    sizes_arg,
    wait_healthy,
)

from controllers.api import ResourceInfo  # noqa: E402
from controllers.envtest import CRD_DIR, ControlPlane, ControlPlaneError, free_port  # noqa: E402
from controllers.informer import Informer  # noqa: E402
from controllers.kube import KubeClient  # noqa: E402
from controllers.reconcile import REQUESTED_AT  # noqa: E402
from image_automation.api_v1 import (  # noqa: E402
    ImagePolicy,
    ImageRepository,
    ImageUpdateAutomation,
)
from kustomize.api_v1 import Kustomization  # noqa: E402
from source.api_v1 import GitRepository  # noqa: E402
from tests.registry import FLUX_CONTENT, Blob, RegistryError, RegistryServer, tar_gz  # noqa: E402

ROUNDS = 3
SIZES = (5,)
CONTROLLER_SETS = ("weir", "flux")
FLUX_NAMES = (
    "source-controller",
    "kustomize-controller",
    "image-reflector-controller",
    "image-automation-controller",
)
# The image controllers whose memory and CPU are measured, per set.
IMAGE_CONTROLLERS = {
    "weir": ("image-automation-controller",),
    "flux": ("image-reflector-controller", "image-automation-controller"),
}
SETUP_BOUND_SECONDS = 300
ROUND_BOUND_SECONDS = 120
SCALE_BOUND_SECONDS = 600
SYSTEM = "flux-system"  # every Flux object; Flux's controllers run there (RUNTIME_NAMESPACE)
APPS = "apps"  # where the Kustomization puts the Deployment
REPOSITORY = "fleet.git"
FIRST_TAG = "1.0.0"
STAGES = ("scanned", "latestRef", "commit pushed", "artifact", "applied")
STAGE_LABELS = {
    "scanned": "tag pushed -> scanned",
    "latestRef": "-> ImagePolicy latestRef",
    "commit pushed": "-> commit pushed",
    "artifact": "-> GitRepository artifact",
    "applied": "-> applied (Ready, image)",
}

DEPLOYMENT = ResourceInfo(group="apps", version="v1", kind="Deployment", plural="deployments")
IMAGE_REPOSITORY = ImageRepository.info
IMAGE_POLICY = ImagePolicy.info
AUTOMATION = ImageUpdateAutomation.info
GITREPOSITORY = GitRepository.info
KUSTOMIZATION = Kustomization.info

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 0
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: app
          image: {image}:{tag} # {{"$imagepolicy": "{namespace}:{name}"}}
"""


@dataclass
class Usage:
    """One image controller process over the run."""

    idle: Memory
    peak: Memory
    rounds_cpu: float = 0.0
    scale_cpu: float = 0.0


@dataclass
class Result:
    """The figures of one controller set."""

    controllers: str
    # Per round: the monotonic time of each stage, from the tag push.
    rounds: list[dict[str, float]] = field(default_factory=list)
    # N -> seconds from the tag push until every automation has pushed.
    scale: dict[int, float] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)

    def stage_median(self, stage: str) -> float:
        """The median time of ``stage`` from the stage before (from the push for the first)."""
        index = STAGES.index(stage)
        return statistics.median(
            times[stage] - (times[STAGES[index - 1]] if index else 0.0) for times in self.rounds
        )

    def total_median(self) -> float:
        return statistics.median(times[STAGES[-1]] for times in self.rounds)


# The fleet repository: a bare repository the automations can push to over smart HTTP


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchmarkFailed(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def scale_name(size: int, index: int) -> str:
    return f"scale-{size}-{index:03d}"


def make_fleet(
    root: Path, image: str, scale_image: Callable[[int], str], sizes: Sequence[int]
) -> GitSource:
    """``root/fleet.git``: ``apps/app`` (the Deployment and its kustomization.yaml) and, per N,
    ``apps/scale-<N>-<i>/deploy.yaml`` for the scale part; pushes over HTTP allowed."""
    work = root / "work"
    files = {
        "apps/app/deploy.yaml": DEPLOY.format(
            name="app", image=image, tag=FIRST_TAG, namespace=SYSTEM
        ),
        "apps/app/kustomization.yaml": "resources:\n  - deploy.yaml\n",
    }
    for size in sizes:
        for index in range(size):
            name = scale_name(size, index)
            files[f"apps/{name}/deploy.yaml"] = DEPLOY.format(
                name=name, image=scale_image(size), tag=FIRST_TAG, namespace=SYSTEM
            )
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    work.mkdir(parents=True, exist_ok=True)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-qm", "The fleet")
    bare = root / REPOSITORY
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    # git http-backend refuses anonymous pushes unless the repository allows them.
    git(bare, "config", "http.receivepack", "true")
    (root / "home").mkdir()
    backend = Path(git(root, "--exec-path")) / "git-http-backend"
    return GitSource(root, backend)


# Objects


def meta(name: str, namespace: str = SYSTEM) -> dict[str, Any]:
    return {"name": name, "namespace": namespace}


def image_repository(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": IMAGE_REPOSITORY.api_version,
        "kind": IMAGE_REPOSITORY.kind,
        "metadata": meta(name),
        "spec": {"image": image, "interval": "1h", "insecure": True},
    }


def image_policy(name: str, repository: str) -> dict[str, Any]:
    return {
        "apiVersion": IMAGE_POLICY.api_version,
        "kind": IMAGE_POLICY.kind,
        "metadata": meta(name),
        "spec": {
            "imageRepositoryRef": {"name": repository},
            "policy": {"semver": {"range": ">=1.0.0"}},
        },
    }


def automation(name: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": AUTOMATION.api_version,
        "kind": AUTOMATION.kind,
        "metadata": meta(name),
        "spec": {
            "interval": "1h",
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "git": {
                "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"name": "bench", "email": "bench@weir.invalid"}},
            },
            "update": {"path": path, "strategy": "Setters"},
        },
    }


def fleet_objects(git_url: str) -> list[tuple[ResourceInfo, dict[str, Any]]]:
    return [
        (
            GITREPOSITORY,
            {
                "apiVersion": GITREPOSITORY.api_version,
                "kind": GITREPOSITORY.kind,
                "metadata": meta("fleet"),
                "spec": {
                    "url": f"{git_url}/{REPOSITORY}",
                    "interval": "1h",
                    "ref": {"branch": "main"},
                },
            },
        ),
        (
            KUSTOMIZATION,
            {
                "apiVersion": KUSTOMIZATION.api_version,
                "kind": KUSTOMIZATION.kind,
                "metadata": meta("app"),
                "spec": {
                    "interval": "1h",
                    "path": "./apps/app",
                    "prune": True,
                    "targetNamespace": APPS,
                    "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                },
            },
        ),
    ]


# Reading objects


def status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


def is_ready(obj: dict[str, Any] | None) -> bool:
    """Ready=True at the object's generation."""
    return (
        obj is not None
        and ready_condition(obj).get("status") == "True"
        and status(obj).get("observedGeneration") == obj["metadata"].get("generation")
    )


def tag_count(obj: dict[str, Any] | None) -> int:
    return int((status(obj).get("lastScanResult") or {}).get("tagCount") or 0)


def latest_tag(obj: dict[str, Any] | None) -> str:
    return str((status(obj).get("latestRef") or {}).get("tag") or "")


def pushed_commit(obj: dict[str, Any] | None) -> str:
    return str(status(obj).get("lastPushCommit") or "")


def at_commit(revision: object, sha: str) -> bool:
    return bool(sha) and str(revision or "").endswith(sha)


def container_image(obj: dict[str, Any] | None) -> str:
    containers = ((obj or {}).get("spec") or {}).get("template", {}).get("spec", {})
    return str(((containers.get("containers") or [{}])[0]).get("image") or "")


def requested_at(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {REQUESTED_AT: value}}}


# Watching


class Watcher:
    """Informers over the kinds of the loop; ``until`` waits for a condition over what they
    hold and gives the moment an event made it true."""

    def __init__(self, client: KubeClient) -> None:
        self._checks: list[Callable[[], None]] = []
        self.informers = {
            info.kind: Informer(client, info, self._changed, namespace=namespace)
            for info, namespace in (
                (IMAGE_REPOSITORY, SYSTEM),
                (IMAGE_POLICY, SYSTEM),
                (AUTOMATION, SYSTEM),
                (GITREPOSITORY, SYSTEM),
                (KUSTOMIZATION, SYSTEM),
                (DEPLOYMENT, APPS),
            )
        }
        self._tasks: list[asyncio.Task[None]] = []

    def get(self, info: ResourceInfo, name: str, namespace: str = SYSTEM) -> dict[str, Any] | None:
        return self.informers[info.kind].get(f"{namespace}/{name}")

    def _changed(self, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for check in list(self._checks):
            check()

    async def start(self) -> None:
        for informer in self.informers.values():
            self._tasks.append(asyncio.create_task(informer.run()))
        for informer in self.informers.values():
            await informer.synced.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def until(self, condition: Callable[[], bool]) -> float:
        """The ``time.monotonic()`` at which ``condition`` first held (checked now and after
        every change the informers see)."""
        reached = asyncio.get_running_loop().create_future()

        def check() -> None:
            if not reached.done() and condition():
                reached.set_result(time.monotonic())

        check()
        self._checks.append(check)
        try:
            return float(await reached)
        finally:
            self._checks.remove(check)


async def bounded(
    what: str, bound: float, waits: Awaitable[Any], progress: Callable[[], str]
) -> Any:
    try:
        async with asyncio.timeout(bound):
            return await waits
    except TimeoutError:
        raise BenchmarkFailed(f"{what} not within {bound:.0f}s: {progress()}") from None


def describe(watcher: Watcher) -> str:
    """Where the loop's objects are, for a failure message."""
    parts = []
    for info, name in (
        (IMAGE_REPOSITORY, "app"),
        (IMAGE_POLICY, "app"),
        (AUTOMATION, "app"),
        (GITREPOSITORY, "fleet"),
        (KUSTOMIZATION, "app"),
    ):
        obj = watcher.get(info, name)
        ready = ready_condition(obj or {})
        parts.append(f"{info.kind} Ready={ready.get('status')} {ready.get('message')!r}")
    return "; ".join(parts)


# The scenario


class Loop:
    """One controller set's objects, registry and repository, driven by the bench."""

    def __init__(
        self,
        client: KubeClient,
        watcher: Watcher,
        registry: RegistryServer,
        image_path: str,
        bare: Path,
    ) -> None:
        self.client = client
        self.watcher = watcher
        self.registry = registry
        self.image_path = image_path
        self.bare = bare
        self.tags = [FIRST_TAG]

    @property
    def image(self) -> str:
        return f"{self.registry.host}/{self.image_path}"

    async def push(self, path: str, tag: str) -> None:
        layer = Blob(FLUX_CONTENT, tar_gz({"app.yaml": f"image: {path}:{tag}\n"}))
        await self.registry.push(path, [tag], [layer])

    async def setup(self, git_url: str) -> None:
        """Create the loop's objects and wait until it has settled on FIRST_TAG."""
        await self.push(self.image_path, FIRST_TAG)
        for namespace in (SYSTEM, APPS):
            await self.client.create(NAMESPACE, {"metadata": {"name": namespace}})
        objects = [
            *fleet_objects(git_url),
            (IMAGE_REPOSITORY, image_repository("app", self.image)),
            (IMAGE_POLICY, image_policy("app", "app")),
            (AUTOMATION, automation("app", "./apps/app")),
        ]
        for info, obj in objects:
            await self.client.create(info, obj)
        get = self.watcher.get

        def settled() -> bool:
            return (
                is_ready(get(KUSTOMIZATION, "app"))
                and container_image(get(DEPLOYMENT, "app", APPS)) == f"{self.image}:{FIRST_TAG}"
                and latest_tag(get(IMAGE_POLICY, "app")) == FIRST_TAG
                and is_ready(get(AUTOMATION, "app"))
            )

        await bounded(
            "the first tag applied and the automation Ready",
            SETUP_BOUND_SECONDS,
            self.watcher.until(settled),
            lambda: describe(self.watcher),
        )

    async def round(self, number: int) -> dict[str, float]:
        """Push tag ``1.<number>.0`` and time each stage until the cluster runs it."""
        tag = f"1.{number}.0"
        get = self.watcher.get
        before = pushed_commit(get(AUTOMATION, "app"))
        commit = ""

        def new_commit() -> bool:
            nonlocal commit
            found = pushed_commit(get(AUTOMATION, "app"))
            if found in ("", before):
                return False
            commit = found  # the later stages wait for this commit, not the one before
            return True

        def applied() -> bool:
            ks = get(KUSTOMIZATION, "app")
            return (
                is_ready(ks)
                and at_commit(status(ks).get("lastAppliedRevision"), commit)
                and container_image(get(DEPLOYMENT, "app", APPS)) == f"{self.image}:{tag}"
            )

        async def pushed_then_fetched() -> float:
            at = await self.watcher.until(new_commit)
            # What a Receiver does on the Git host's push webhook.
            await self.client.patch(GITREPOSITORY, SYSTEM, "fleet", requested_at(f"push-{number}"))
            return at

        expected_tags = len(self.tags) + 1
        await self.push(self.image_path, tag)
        started = time.monotonic()
        self.tags.append(tag)
        await self.client.patch(IMAGE_REPOSITORY, SYSTEM, "app", requested_at(f"scan-{number}"))
        times = await bounded(
            f"round {number} ({tag})",
            ROUND_BOUND_SECONDS,
            asyncio.gather(
                self.watcher.until(
                    lambda: tag_count(get(IMAGE_REPOSITORY, "app")) >= expected_tags
                ),
                self.watcher.until(lambda: latest_tag(get(IMAGE_POLICY, "app")) == tag),
                pushed_then_fetched(),
                self.watcher.until(
                    lambda: at_commit(
                        (status(get(GITREPOSITORY, "fleet")).get("artifact") or {}).get("revision"),
                        commit,
                    )
                ),
                self.watcher.until(applied),
            ),
            lambda: describe(self.watcher),
        )
        return {stage: at - started for stage, at in zip(STAGES, times, strict=True)}

    async def scale(self, size: int) -> float:
        """N policies and N automations on one new ImageRepository; the seconds from a new tag
        until every automation has pushed."""
        repository = f"scale-{size}"
        path = f"{self.image_path}-scale-{size}"
        names = [scale_name(size, index) for index in range(size)]
        get = self.watcher.get
        await self.push(path, FIRST_TAG)
        await self.client.create(
            IMAGE_REPOSITORY, image_repository(repository, f"{self.registry.host}/{path}")
        )
        for name in names:
            await self.client.create(IMAGE_POLICY, image_policy(name, repository))
            await self.client.create(AUTOMATION, automation(name, f"./apps/{name}"))

        def settled() -> bool:
            return all(
                latest_tag(get(IMAGE_POLICY, name)) == FIRST_TAG and is_ready(get(AUTOMATION, name))
                for name in names
            )

        def progress() -> str:
            behind = [
                f"{name}: Ready={ready_condition(get(AUTOMATION, name) or {}).get('message')!r}"
                for name in names
                if not pushed_commit(get(AUTOMATION, name))
            ]
            return f"{len(behind)}/{size} not pushed; " + "; ".join(behind[:3])

        await bounded(
            f"N={size} settled", SETUP_BOUND_SECONDS, self.watcher.until(settled), progress
        )
        commits_before = int(git(self.bare, "rev-list", "--count", "main"))
        await self.push(path, "1.1.0")
        started = time.monotonic()
        await self.client.patch(IMAGE_REPOSITORY, SYSTEM, repository, requested_at("scale"))
        finished = await bounded(
            f"N={size}: every automation pushed",
            SCALE_BOUND_SECONDS,
            self.watcher.until(lambda: all(pushed_commit(get(AUTOMATION, n)) for n in names)),
            progress,
        )
        commits = int(git(self.bare, "rev-list", "--count", "main")) - commits_before
        if commits != size:
            raise BenchmarkFailed(f"N={size}: {commits} commits on main, expected {size}")
        for name in names:
            content = git(self.bare, "show", f"main:apps/{name}/deploy.yaml")
            if f"{path}:1.1.0 " not in content:
                raise BenchmarkFailed(f"N={size}: apps/{name}/deploy.yaml not at 1.1.0")
        return float(finished - started)


# The controllers, as processes beside the control plane


def argvs(
    plane: ControlPlane, controllers: str, flux: dict[str, FluxController]
) -> dict[str, list[str]]:
    """Each controller's command line: the probes' and metrics' ports, JSON logs, and the
    source controller's storage (and Flux's reflector's database) under the workdir."""
    port = free_port()
    storage = [
        f"--storage-path={plane.workdir / 'storage'}",
        f"--storage-addr=127.0.0.1:{port}",
        f"--storage-adv-addr=127.0.0.1:{port}",
    ]

    def common() -> list[str]:
        return [
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            "--log-encoding=json",
        ]

    if controllers == "weir":
        packages = {
            "source-controller": "source",
            "kustomize-controller": "kustomize",
            "image-automation-controller": "image_automation",
        }
        kubeconfig = f"--kubeconfig={plane.admin_kubeconfig}"
        found = {
            name: [sys.executable, "-m", package, kubeconfig, *common()]
            for name, package in packages.items()
        }
    else:
        found = {
            name: [
                str(flux[name].binary),
                *common(),
                "--enable-leader-election=false",
                "--watch-all-namespaces=true",
            ]
            for name in FLUX_NAMES
        }
        found["image-reflector-controller"].append(f"--storage-path={plane.workdir / 'reflector'}")
    found["source-controller"] += storage
    return found


@contextlib.contextmanager
def controller_processes(plane: ControlPlane, argv: dict[str, list[str]]) -> Iterator[None]:
    """Flux's controllers take the cluster from ``KUBECONFIG`` and their namespace from
    ``RUNTIME_NAMESPACE``; weir's run this checkout's code."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KUBECONFIG": str(plane.admin_kubeconfig),
        "RUNTIME_NAMESPACE": SYSTEM,
    }
    with processes_running(plane.workdir, argv, env, stop_timeout=30):
        yield


async def scenario(
    plane: ControlPlane,
    controllers: str,
    registry: RegistryServer,
    git_source: GitSource,
    rounds: int,
    sizes: Sequence[int],
) -> Result:
    pids = children_by_command()
    names = ("source-controller", "kustomize-controller", *IMAGE_CONTROLLERS[controllers])
    watched = {name: pids[name] for name in names}
    image_pids = {name: pids[name] for name in IMAGE_CONTROLLERS[controllers]}
    await wait_healthy(watched, SETUP_BOUND_SECONDS, plane.workdir)
    idle = await idle_rss(image_pids, SETUP_BOUND_SECONDS)
    client = await KubeClient.connect(str(plane.admin_kubeconfig), qps=0)
    watcher = Watcher(client)
    sampler = TreeSampler(image_pids)
    sampling = asyncio.create_task(sampler.run())
    result = Result(controllers)
    try:
        await watcher.start()
        async with serve_git(git_source) as git_url:
            loop = Loop(client, watcher, registry, controllers, git_source.root / REPOSITORY)
            checked = check_running(watched, plane.workdir)
            await checked(loop.setup(git_url))
            cpu_before = {name: sum(cpu_seconds(pid)) for name, pid in image_pids.items()}
            for number in range(1, rounds + 1):
                result.rounds.append(await checked(loop.round(number)))
            cpu_rounds = {name: sum(cpu_seconds(pid)) for name, pid in image_pids.items()}
            for size in sizes:
                result.scale[size] = await checked(loop.scale(size))
            sampler.sample()
        for name, pid in image_pids.items():
            hwm = memory(pid, "VmHWM")
            result.usage[name] = Usage(
                idle=idle[name],
                peak=Memory(hwm.own, max(hwm.own, sampler.peak_mib[name])),
                rounds_cpu=cpu_rounds[name] - cpu_before[name],
                scale_cpu=sum(cpu_seconds(pid)) - cpu_rounds[name],
            )
        return result
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        await watcher.stop()
        await client.close()


def check_running(
    watched: dict[str, int], workdir: Path
) -> Callable[[Awaitable[Any]], Awaitable[Any]]:
    """Run an awaitable, failing at once (with the log) if a controller exits meanwhile."""

    async def run(work: Awaitable[Any]) -> Any:
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=1)
                if done:
                    return task.result()
                for name, pid in watched.items():
                    if not is_running(pid):
                        raise BenchmarkFailed(f"{name} exited", workdir / f"{name}.log")
        except BenchmarkFailed as err:
            if err.log_path is None:
                err.log_path = workdir / f"{next(reversed(watched))}.log"
            raise
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return run


def measure(
    controllers: str,
    root: Path,
    registry: RegistryServer,
    rounds: int,
    sizes: Sequence[int],
    flux: dict[str, FluxController],
) -> Result:
    """One controller set on a fresh control plane with its own CRDs and fleet repository."""
    workdir = root / f"cluster-{controllers}"
    image = f"{registry.host}/{controllers}"
    git_source = make_fleet(
        root / f"git-{controllers}", image, lambda size: f"{image}-scale-{size}", sizes
    )
    if controllers == "weir":
        crds = sorted(CRD_DIR.glob("*.toolkit.fluxcd.io_*.yaml"))
    else:
        crds = sorted(path for name in FLUX_NAMES for path in flux[name].crd_dir.glob("*.yaml"))
    with ControlPlane(workdir, crd_dir=None, nodes=0) as plane:
        plane.install_crds(crds)
        (workdir / "storage").mkdir()  # Flux's source-controller wants it to exist
        with controller_processes(plane, argvs(plane, controllers, flux)):
            return asyncio.run(scenario(plane, controllers, registry, git_source, rounds, sizes))


# Printing


def seconds(value: float) -> str:
    return f"{value:.2f}s"


def print_results(results: list[Result], flux: dict[str, FluxController]) -> None:
    by_set = {result.controllers: result for result in results}
    weir, theirs = by_set.get("weir"), by_set.get("flux")
    columns = [result.controllers for result in results]
    if weir is not None and theirs is not None:
        columns.append("weir/flux")
    if flux:
        print("\nflux: " + ", ".join(f"{name} {c.version}" for name, c in flux.items()))

    def line(label: str, cells: Sequence[str]) -> None:
        print(f"{label:<30}" + "".join(f"{cell:>11}" for cell in cells))

    def row(label: str, figures: dict[str, float]) -> None:
        """``figures``: seconds by controller set."""
        cells = [seconds(figure) for figure in figures.values()]
        if "weir" in figures and "flux" in figures:
            cells.append(ratio(figures["weir"], figures["flux"]))
        line(label, cells)

    rounds = min(len(result.rounds) for result in results)
    if rounds:
        print(
            f"\nRegistry push to cluster, median over {rounds} rounds"
            " (each stage from the one before; the total from the push):"
        )
        line("stage", columns)
        for stage in STAGES:
            row(STAGE_LABELS[stage], {r.controllers: r.stage_median(stage) for r in results})
        row("total: push -> applied", {r.controllers: r.total_median() for r in results})
        for result in results:
            each = ", ".join(f"{times[STAGES[-1]]:.2f}" for times in result.rounds)
            print(f"  {result.controllers} totals per round (s): {each}")
    sizes = [size for size in results[0].scale if all(size in r.scale for r in results)]
    if sizes:
        print(
            "\nN automations pushing to one branch (a directory each): from a new tag until"
            " every one has pushed"
        )
        line("N", columns)
        for size in sizes:
            row(str(size), {r.controllers: r.scale[size] for r in results})
    print(
        "\nImage controllers: RSS in MiB (idle: before any object; peak: VmHWM, and in"
        " parentheses the largest sampled sum with its children when larger); CPU seconds,"
        " own and children's, over the rounds and over the scale part"
    )
    print(f"{'':<40}{'idle':>10}{'peak':>12}{'CPU rounds':>12}{'CPU scale':>11}")
    totals: dict[str, list[float]] = {}
    for result in results:
        sums = [0.0, 0.0, 0.0, 0.0]
        for name, usage in result.usage.items():
            values = (usage.idle.own, usage.peak.own, usage.rounds_cpu, usage.scale_cpu)
            sums = [a + b for a, b in zip(sums, values, strict=True)]
            print(
                f"{result.controllers + ' ' + name:<40}{mib(usage.idle):>10}"
                f"{mib(usage.peak):>12}{usage.rounds_cpu:>12.2f}{usage.scale_cpu:>11.2f}"
            )
        if len(result.usage) > 1:
            print(
                f"{result.controllers + ' both':<40}{sums[0]:>10.0f}{sums[1]:>12.0f}"
                f"{sums[2]:>12.2f}{sums[3]:>11.2f}"
            )
        totals[result.controllers] = sums
    if "weir" in totals and "flux" in totals:
        cells = [ratio(a, b) for a, b in zip(totals["weir"], totals["flux"], strict=True)]
        print(f"{'weir/flux':<40}{cells[0]:>10}{cells[1]:>12}{cells[2]:>12}{cells[3]:>11}")


# Command line


def rounds_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a count, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1 round")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/image_update_loop.py", description=__doc__)
    parser.add_argument(
        "--rounds", type=rounds_arg, default=ROUNDS, help=f"tags to time (default {ROUNDS})"
    )
    parser.add_argument(
        "--sizes",
        type=sizes_arg,
        default=list(SIZES),
        help="automation counts for the scale part, e.g. 10,50 (default 5)",
    )
    parser.add_argument(
        "--controllers",
        type=_list_arg(CONTROLLER_SETS),
        default=list(CONTROLLER_SETS),
        help="controller sets to run, in this order (default weir,flux)",
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
    root = args.keep or Path(tempfile.mkdtemp(prefix="weir-bench-image-"))
    results: list[Result] = []
    flux: dict[str, FluxController] = {}
    registry = RegistryServer("bench", root / "registry")
    try:
        if "flux" in args.controllers:
            flux = ensure_flux(FLUX_NAMES)
        registry.start()
        print(
            f"{os.cpu_count()} cores; {', '.join(args.controllers)}; {args.rounds} rounds;"
            f" N={','.join(map(str, args.sizes))}; one control plane per set",
            flush=True,
        )
        for controllers in args.controllers:
            results.append(measure(controllers, root, registry, args.rounds, args.sizes, flux))
            print(
                f"{controllers}: median push to applied {results[-1].total_median():.2f}s",
                flush=True,
            )
        print_results(results, flux)
        return 0
    except (BenchmarkFailed, ControlPlaneError, FluxBuildError, RegistryError) as err:
        if results:
            print_results(results, flux)
        print(f"error: {err}", file=sys.stderr)
        log_path = err.log_path if isinstance(err, BenchmarkFailed) else None
        if log_path is not None and (tail := log_tail(log_path)):
            print(f"tail of {log_path.name}:\n{tail}", file=sys.stderr)
        return 1
    finally:
        registry.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
