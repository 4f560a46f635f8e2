"""The helm controller's one way to run Helm: an async, typed client over ``helm-python-sdk``.

``helm_python`` (PyPI ``helm-python-sdk``, pinned exactly) binds with ctypes to ``libhelm_c``,
a C ABI over Helm's Go SDK (v4.2.3 in 0.2.2). What it offers, as read from its sources and
its library's option decoders:

- ``Chart.load(path)`` loads a chart directory or ``.tgz`` into a handle (``close()`` it).
- ``Config(kubeconfig_path=... | kubeconfig_content=..., namespace=...)``: a connection and
  the release storage (Secrets ``sh.helm.release.v1.<name>.v<N>``, type
  ``helm.sh/release.v1``, in ``namespace``: Helm's storage namespace). Safe to share, but
  it runs its actions one after another: an action at a time gets a configuration of its own
  (idle ones reused); writes to one release must be serialised by the caller.
- ``Config.install/upgrade/uninstall/rollback/history/status/get_all/test``: Helm's actions.
  Their Python signatures expose only some of the options, so this module calls the library's
  functions (``helm_install``, ``helm_upgrade``, ``helm_rollback``, ``helm_uninstall``,
  ``helm_test_run``) through ``helm_python._native`` with the options JSON itself; the library
  decodes it strictly (an unknown key is an error, so a typo cannot pass unnoticed). Keys it
  accepts (0.2.2): install: ``namespace timeout_seconds wait wait_for_jobs dry_run
  create_namespace rollback_on_failure description labels disable_hooks skip_crds
  server_side_apply`` (bool) ``force_conflicts force_replace take_ownership replace
  disable_openapi_validation post_renderer post_renderer_args post_render_strategy
  skip_schema_validation`` and chart-reference keys (``replace`` is decoded though the
  library's README omits it: Helm's ``--replace``); upgrade: the same but ``replace`` plus
  ``max_history cleanup_on_fail reset_values reuse_values reset_then_reuse_values install``,
  with ``server_side_apply`` a string (``"true"``, ``"false"``, ``"auto"``); rollback: ``version
  timeout_seconds wait wait_for_jobs dry_run disable_hooks force_replace force_conflicts
  server_side_apply cleanup_on_fail max_history``; uninstall: ``keep_history timeout_seconds
  wait disable_hooks deletion_propagation description ignore_not_found dry_run``; test:
  ``timeout_seconds logs include_names exclude_names``.
- ``HelmContext``: a cancellation token; only install and upgrade take one. Cancelling it
  (or the action's own timeout passing) ends the action with ``HelmCancelledError`` (code -6,
  for both), and Helm marks the new revision ``failed``.
- Every call is a ctypes call, which releases the GIL: run them in threads.
- A configuration's namespace is both its release storage and where the chart's objects go
  (0.2.2 gives one namespace to both Helm's ``Configuration.Init`` and its Kubernetes client).
  An install into another namespace runs on a configuration the library builds for that
  namespace, so the release is stored there; an upgrade into another namespace is refused
  ("upgrade cannot change namespace"). No option keeps them apart, so ``namespace`` and
  ``storage_namespace`` must agree (helm/settings.py refuses a HelmRelease where they differ;
  ``test_release_stored_apart_from_its_objects`` is the xfail that shows it).

Errors come as ``helm_python.HelmError`` subclasses by ABI code (``HelmNotFoundError`` -7,
``HelmReleaseError`` -62, ``HelmCancelledError`` -6, ...); :func:`_translate` maps them onto
this module's hierarchy, rooted at :class:`HelmError`.

:class:`HelmClient` runs each action in a thread of its own pool under one lock per release
(storage namespace, name). A cancelled asyncio task cancels an in-flight install or upgrade
through its ``HelmContext``; rollback, uninstall and test cannot be cancelled, so a cancelled
task waits for them to end (their timeout bounds it). Either way the lock is held until the
library has returned, so no second action starts on a release Helm is still writing.

The process must run as ``helm-controller`` with Helm's homes set: see :mod:`helm.launch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import helm_python
import structlog
from helm_python import _native

__all__ = [
    "HelmCancelled",
    "HelmClient",
    "HelmError",
    "HelmTestOptions",
    "HelmTestResult",
    "HelmTimeout",
    "Hook",
    "InstallOptions",
    "Release",
    "ReleaseConflict",
    "ReleaseNotFound",
    "ReleaseSummary",
    "RenderedRelease",
    "RollbackOptions",
    "UninstallOptions",
    "UpgradeOptions",
]

# Helm actions (and reads) at once, across every release: above any --concurrent in use.
HELM_THREADS = 32

log = structlog.get_logger()

T = TypeVar("T")


# Errors


class HelmError(Exception):
    """A Helm action failed; the message is Helm's."""


class ReleaseNotFound(HelmError):
    """The release (or the revision asked for) does not exist."""


class HelmTimeout(HelmError):
    """The action's timeout passed (waiting for resources or hooks)."""


class HelmCancelled(HelmError):
    """The action was cancelled before it finished (its release revision is ``failed``)."""


class ReleaseConflict(HelmError):
    """Another operation holds the release (``pending-*``), or an install found the name in
    use."""


# Helm's own sentences for the conflicts (helm.sh/helm/v4/pkg/action): the library gives them
# the generic release code.
_CONFLICT_MESSAGES = (
    "another operation (install/upgrade/rollback) is in progress",
    "cannot reuse a name that is still in use",
    # Two writers of one revision at once (another process: the lock below covers this one).
    "release: already exists",
)


def _translate(err: helm_python.HelmError, *, cancelled: bool) -> HelmError:
    """This module's error for one of the library's. ``cancelled``: whether we cancelled the
    action's context (the library reports a cancel and a timeout with the same code)."""
    message = str(err)
    if isinstance(err, helm_python.HelmCancelledError):
        return HelmCancelled(message) if cancelled else HelmTimeout(message)
    if isinstance(err, helm_python.HelmNotFoundError):
        return ReleaseNotFound(message)
    if any(sentence in message for sentence in _CONFLICT_MESSAGES):
        return ReleaseConflict(message)
    return HelmError(message)


# Results


@dataclass(frozen=True, slots=True)
class Hook:
    """One hook of a release, and how its last run went."""

    name: str
    kind: str
    path: str
    events: tuple[str, ...]
    delete_policies: tuple[str, ...]
    last_run_phase: str  # "" (never ran), "Running", "Succeeded", "Failed"
    manifest: str
    last_run_started: str = ""  # Helm's RFC 3339 times; "" when it never ran
    last_run_completed: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseSummary:
    """A revision of a release as history lists it (no manifest, no hooks)."""

    name: str
    namespace: str
    version: int
    status: str  # Helm's: deployed, failed, superseded, uninstalled, pending-install, ...
    chart_name: str
    chart_version: str
    app_version: str
    deployed_at: str


@dataclass(frozen=True, slots=True)
class Release:
    """A revision of a release, whole: what it rendered, its hooks, its notes and values."""

    name: str
    namespace: str
    version: int
    status: str
    chart_name: str
    chart_version: str
    app_version: str
    description: str
    first_deployed: str
    last_deployed: str
    notes: str
    manifest: str
    hooks: tuple[Hook, ...]
    values: Mapping[str, Any]  # the values given to the action, not merged with the chart's


@dataclass(frozen=True, slots=True)
class HelmTestResult:
    """What ``helm test`` left on the release: its test hooks and their last phases."""

    release: Release
    logs: str


@dataclass(frozen=True, slots=True)
class RenderedRelease:
    """What an install or upgrade would apply, from Helm's dry run (nothing written)."""

    action: Literal["install", "upgrade"]
    manifest: str  # the release's objects as Helm would apply them, post-rendered; no hooks
    previous: Release | None  # the stored revision an upgrade starts from; None for install


def _summary(data: Mapping[str, Any]) -> ReleaseSummary:
    return ReleaseSummary(
        name=data["name"],
        namespace=data.get("namespace", ""),
        version=int(data["revision"]),
        status=data.get("status", ""),
        chart_name=data.get("chart_name", ""),
        chart_version=data.get("chart_version", ""),
        app_version=data.get("app_version", ""),
        deployed_at=data.get("deployed_at", ""),
    )


def _hook(data: Mapping[str, Any]) -> Hook:
    return Hook(
        name=data.get("name", ""),
        kind=data.get("kind", ""),
        path=data.get("path", ""),
        events=tuple(data.get("events") or ()),
        delete_policies=tuple(data.get("delete_policies") or ()),
        last_run_phase=(data.get("last_run") or {}).get("phase", ""),
        manifest=data.get("manifest", ""),
        last_run_started=(data.get("last_run") or {}).get("started_at", ""),
        last_run_completed=(data.get("last_run") or {}).get("completed_at", ""),
    )


def _release(data: Mapping[str, Any]) -> Release:
    """A :class:`Release` from ``helm_get``'s answer (``summary``, ``info``, ``hooks``,
    ``config``)."""
    summary = data["summary"]
    info = data.get("info") or {}
    return Release(
        name=summary["name"],
        namespace=summary.get("namespace", ""),
        version=int(summary["revision"]),
        status=summary.get("status", ""),
        chart_name=summary.get("chart_name", ""),
        chart_version=summary.get("chart_version", ""),
        app_version=summary.get("app_version", ""),
        description=info.get("description", ""),
        first_deployed=info.get("first_deployed", ""),
        last_deployed=info.get("last_deployed", ""),
        notes=summary.get("notes", ""),
        manifest=summary.get("manifest", ""),
        hooks=tuple(_hook(hook) for hook in data.get("hooks") or ()),
        values=data.get("config") or {},
    )


# Options. Defaults are Flux helm-controller's on Helm v4 (Flux 2.8): server-side apply,
# kstatus-based wait, 5 minutes, no atomic/rollback-on-failure (the reconciler remediates).

WaitStrategy = Literal["watcher", "legacy", "hookOnly"]
# Helm's: hooks and templates post-rendered together (Helm 4's default), apart, or hooks not.
PostRenderStrategy = Literal["combined", "separate", "nohooks"]


@dataclass(frozen=True, slots=True)
class InstallOptions:
    timeout: float = 300.0  # seconds
    wait: bool = True  # for the release's resources (kstatus watcher); hooks are always waited
    wait_for_jobs: bool = False
    disable_hooks: bool = False
    disable_openapi_validation: bool = False
    skip_crds: bool = False  # Flux's crds: Skip; Create is Helm's default
    create_namespace: bool = False
    server_side_apply: bool = True
    force: bool = False  # take fields another manager owns (force_conflicts with SSA)
    take_ownership: bool = False  # adopt existing objects not marked as the release's
    skip_schema_validation: bool = False  # values not checked against values.schema.json
    replace: bool = False  # reuse the name of an uninstalled (kept) or failed release
    description: str = ""
    post_renderer: str = ""  # a Helm v4 post-renderer plugin, by name (under HELM_PLUGINS)
    post_renderer_args: tuple[str, ...] = ()
    post_render_strategy: PostRenderStrategy = "combined"  # which objects it sees


@dataclass(frozen=True, slots=True)
class UpgradeOptions:
    timeout: float = 300.0
    wait: bool = True
    wait_for_jobs: bool = False
    disable_hooks: bool = False
    disable_openapi_validation: bool = False
    skip_crds: bool = False
    server_side_apply: bool = True
    force: bool = False  # force_conflicts with SSA, force_replace (delete+recreate) without
    take_ownership: bool = False
    skip_schema_validation: bool = False
    # The stored release's values under the new ones (Helm's --reuse-values); otherwise the
    # values given replace them (--reset-values).
    reuse_values: bool = False
    cleanup_on_fail: bool = False
    max_history: int = 5  # revisions kept; 0: all
    description: str = ""
    post_renderer: str = ""
    post_renderer_args: tuple[str, ...] = ()
    post_render_strategy: PostRenderStrategy = "combined"


@dataclass(frozen=True, slots=True)
class RollbackOptions:
    timeout: float = 300.0
    wait: bool = True
    wait_for_jobs: bool = False
    disable_hooks: bool = False
    server_side_apply: bool = True
    force: bool = False
    cleanup_on_fail: bool = False
    max_history: int = 5


@dataclass(frozen=True, slots=True)
class UninstallOptions:
    timeout: float = 300.0
    wait: bool = True  # until the release's objects are gone
    keep_history: bool = False
    disable_hooks: bool = False
    deletion_propagation: Literal["background", "foreground", "orphan"] = "background"
    description: str = ""


@dataclass(frozen=True, slots=True)
class HelmTestOptions:
    timeout: float = 300.0
    logs: bool = False  # collect the test pods' logs into the result
    filters: tuple[str, ...] = field(default=())  # hook names to run; none: all
    exclude: tuple[str, ...] = field(default=())  # hook names not to run


def _seconds(timeout: float) -> int:
    # The library takes whole seconds, and 0 means Helm's default (5 minutes), not "none".
    return max(1, round(timeout))


def _wait(wait: bool) -> WaitStrategy:
    # hookOnly is Helm's "no --wait": hooks are still waited for, resources are not.
    return "watcher" if wait else "hookOnly"


def _force(force: bool, server_side_apply: bool) -> dict[str, bool]:
    # Helm refuses force_replace together with server-side apply.
    if not force:
        return {}
    return {"force_conflicts": True} if server_side_apply else {"force_replace": True}


def _render_options(options: InstallOptions | UpgradeOptions) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "timeout_seconds": _seconds(options.timeout),
        "wait": _wait(options.wait),
        "wait_for_jobs": options.wait_for_jobs,
        "disable_hooks": options.disable_hooks,
        "disable_openapi_validation": options.disable_openapi_validation,
        "skip_crds": options.skip_crds,
        "take_ownership": options.take_ownership,
        "skip_schema_validation": options.skip_schema_validation,
        **_force(options.force, options.server_side_apply),
    }
    if options.description:
        opts["description"] = options.description
    if options.post_renderer:
        opts["post_renderer"] = options.post_renderer
        opts["post_renderer_args"] = list(options.post_renderer_args)
        opts["post_render_strategy"] = options.post_render_strategy
    return opts


def install_options_json(namespace: str, options: InstallOptions) -> str:
    """The library's install options for ``options``, objects going to ``namespace``."""
    opts = _render_options(options)
    opts.update(
        namespace=namespace,
        server_side_apply=options.server_side_apply,  # a bool for install
        create_namespace=options.create_namespace,
        replace=options.replace,
    )
    return json.dumps(opts, sort_keys=True)


def upgrade_options_json(namespace: str, options: UpgradeOptions) -> str:
    """The library's upgrade options: the values given replace the previous ones, or with
    ``reuse_values`` are merged over them (Flux's ``ResetValues = !preserveValues``,
    ``ReuseValues = preserveValues``); nothing is rolled back on failure (the reconciler
    remediates)."""
    opts = _render_options(options)
    opts.update(
        namespace=namespace,
        server_side_apply=json.dumps(options.server_side_apply),  # "true"/"false" for upgrade
        cleanup_on_fail=options.cleanup_on_fail,
        max_history=options.max_history,
        reset_values=not options.reuse_values,
        reuse_values=options.reuse_values,
    )
    return json.dumps(opts, sort_keys=True)


def _dry_run(options_json: str) -> str:
    # Helm's "server" dry run: the chart's lookup reads the cluster as a real action's does.
    opts = json.loads(options_json)
    opts["dry_run"] = "server"
    return json.dumps(opts, sort_keys=True)


def rollback_options_json(version: int, options: RollbackOptions) -> str:
    """The library's rollback options; ``version`` 0 is the previous revision."""
    opts: dict[str, Any] = {
        "version": version,
        "timeout_seconds": _seconds(options.timeout),
        "wait": _wait(options.wait),
        "wait_for_jobs": options.wait_for_jobs,
        "disable_hooks": options.disable_hooks,
        "server_side_apply": json.dumps(options.server_side_apply),
        "cleanup_on_fail": options.cleanup_on_fail,
        "max_history": options.max_history,
        **_force(options.force, options.server_side_apply),
    }
    return json.dumps(opts, sort_keys=True)


def uninstall_options_json(options: UninstallOptions) -> str:
    opts: dict[str, Any] = {
        "timeout_seconds": _seconds(options.timeout),
        "wait": _wait(options.wait),
        "keep_history": options.keep_history,
        "disable_hooks": options.disable_hooks,
        "deletion_propagation": options.deletion_propagation,
    }
    if options.description:
        opts["description"] = options.description
    return json.dumps(opts, sort_keys=True)


def helm_test_options_json(options: HelmTestOptions) -> str:
    opts: dict[str, Any] = {"timeout_seconds": _seconds(options.timeout), "logs": options.logs}
    if options.filters:
        opts["include_names"] = list(options.filters)
    if options.exclude:
        opts["exclude_names"] = list(options.exclude)
    return json.dumps(opts, sort_keys=True)


# The client

_NO_HANDLE = 0


class HelmClient:
    """Helm's actions on one cluster, as coroutines, one at a time per release.

    Built from a kubeconfig file or its text (the HelmRelease's ``kubeConfig`` Secret);
    ``close()`` frees the library's configurations. A release is named by its storage
    namespace (where Helm keeps its Secrets) and name; ``namespace`` on install/upgrade is
    where the chart's objects go (Flux's ``targetNamespace``). :meth:`impersonating` gives a
    view acting as another user (``serviceAccountName``) on the same cluster.
    """

    def __init__(
        self,
        *,
        kubeconfig_path: str | os.PathLike[str] | None = None,
        kubeconfig: str = "",
        rate_limit: tuple[float, int] | None = None,
    ) -> None:
        if (kubeconfig_path is None) == (not kubeconfig):
            raise ValueError("give exactly one of kubeconfig_path and kubeconfig")
        self._kubeconfig_path = None if kubeconfig_path is None else os.fspath(kubeconfig_path)
        self._kubeconfig = kubeconfig
        # Helm's own client limit (QPS, burst; QPS <= 0: none), one per configuration, as each
        # of Flux's actions has its own. Left to Helm (5 QPS, burst 10) it makes releases
        # queue; the controller gives the runtime client's (none under flow control).
        self._rate_limit = rate_limit
        self._user: str | None = None  # impersonated (Impersonate-User), in a view
        self._owner = True
        self._reuse = True  # idle configurations serve later actions (persistentClient)
        # Shared with the views: the idle configurations per identity and storage namespace,
        # a lock per release whoever writes it.
        self._idle: dict[tuple[str | None, str], list[helm_python.Config]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._lock_users: dict[tuple[str, str], int] = {}
        # Helm's calls block a thread each for the whole action (a wait may take minutes):
        # threads of their own, not asyncio's default pool (cores + 4: 6 here), which would
        # hold releases back below --concurrent and starve the process's other blocking work.
        self._threads = ThreadPoolExecutor(max_workers=HELM_THREADS, thread_name_prefix="helm")

    def impersonating(self, user: str) -> HelmClient:
        """A view whose actions are made as ``user`` (Helm's ``--kube-as-user``; no groups,
        as Flux), sharing this client's configurations and release locks. Closing it does
        nothing."""
        view = copy.copy(self)
        view._user = user
        view._owner = False
        return view

    def without_reuse(self) -> HelmClient:
        """A view whose every action gets a new configuration, closed after it (a HelmRelease's
        ``persistentClient: false``: Helm's client, and its discovery of the cluster's kinds,
        made afresh for each action, for charts that create CRDs outside Helm's CRD
        handling), sharing this client's release locks."""
        view = copy.copy(self)
        view._reuse = False
        view._owner = False
        return view

    @property
    def user(self) -> str | None:
        """The user this client's actions are made as, when one is impersonated."""
        return self._user

    def close(self) -> None:
        """Free the library's configurations (the kubeconfig text's temporary file with them).
        Call it once no action is running."""
        if not self._owner:
            return
        for configs in self._idle.values():
            for config in configs:
                config.close()
        self._idle.clear()
        self._threads.shutdown(wait=False)

    def _lease(self, storage_namespace: str) -> helm_python.Config:
        """An idle configuration for this identity and storage namespace, or a new one; the
        caller gives it back to ``_idle``. One per action at a time: Helm's library runs the
        actions of one configuration one after another (100 releases in one namespace took
        44 s on one configuration, 26 s with one each). Helm binds its release storage to the
        namespace a configuration is made for, and its client to one user. Making one only
        parses options (no cluster contact)."""
        idle = self._idle.get((self._user, storage_namespace)) if self._reuse else None
        if idle:
            return idle.pop()
        qps, burst = self._rate_limit or (None, None)
        return helm_python.Config(
            kubeconfig_path=self._kubeconfig_path,
            kubeconfig_content=self._kubeconfig or None,
            namespace=storage_namespace,
            qps=None if qps is None else (qps if qps > 0 else -1.0),
            burst_limit=burst,
            kube_as_user=self._user,
        )

    @contextlib.asynccontextmanager
    async def _release_lock(self, storage_namespace: str, name: str) -> AsyncIterator[None]:
        key = (storage_namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if not self._lock_users[key]:  # nobody holds or waits: forget it
                del self._lock_users[key]
                del self._locks[key]

    # Write actions

    async def install(
        self,
        name: str,
        chart: str | os.PathLike[str],
        values: Mapping[str, Any],
        *,
        namespace: str,
        storage_namespace: str | None = None,
        options: InstallOptions = InstallOptions(),
    ) -> Release:
        """``helm install``: the chart (a directory or ``.tgz``) as release ``name``."""
        storage = storage_namespace or namespace
        payload = install_options_json(namespace, options)
        return await self._write("install", storage, name, chart, values, payload, "helm_install")

    async def upgrade(
        self,
        name: str,
        chart: str | os.PathLike[str],
        values: Mapping[str, Any],
        *,
        namespace: str,
        storage_namespace: str | None = None,
        options: UpgradeOptions = UpgradeOptions(),
    ) -> Release:
        """``helm upgrade``: a new revision of ``name`` from the chart and these values."""
        storage = storage_namespace or namespace
        payload = upgrade_options_json(namespace, options)
        return await self._write("upgrade", storage, name, chart, values, payload, "helm_upgrade")

    async def _write(
        self,
        action: str,
        storage_namespace: str,
        name: str,
        chart_path: str | os.PathLike[str],
        values: Mapping[str, Any],
        options_json: str,
        function: str,
    ) -> Release:
        values_json = json.dumps(dict(values))
        context = helm_python.HelmContext()

        def run(config: helm_python.Config) -> Release:
            with helm_python.Chart.load(Path(chart_path)) as chart:
                _native.call_string(
                    function,
                    config._raw(),
                    context._raw(),
                    chart._raw(),
                    None,  # a loaded chart, not a reference to locate
                    name,
                    values_json,
                    options_json,
                )
            return _release(json.loads(_native.call_string("helm_get", config._raw(), name, None)))

        try:
            async with self._release_lock(storage_namespace, name):
                release = await self._run(action, storage_namespace, name, run, context)
        finally:
            context.close()
        log.info(
            "helm release written",
            action=action,
            release=name,
            storage_namespace=storage_namespace,
            version=release.version,
            status=release.status,
        )
        return release

    async def rollback(
        self,
        name: str,
        *,
        storage_namespace: str,
        version: int = 0,
        options: RollbackOptions = RollbackOptions(),
    ) -> Release:
        """``helm rollback``: a new revision with revision ``version``'s chart and values (0:
        the previous one). Cannot be cancelled; ``options.timeout`` bounds it."""
        payload = rollback_options_json(version, options)

        def run(config: helm_python.Config) -> Release:
            _native.call_status("helm_rollback", config._raw(), name, payload)
            return _release(json.loads(_native.call_string("helm_get", config._raw(), name, None)))

        async with self._release_lock(storage_namespace, name):
            return await self._run("rollback", storage_namespace, name, run, None)

    async def uninstall(
        self,
        name: str,
        *,
        storage_namespace: str,
        options: UninstallOptions = UninstallOptions(),
    ) -> ReleaseSummary:
        """``helm uninstall``: the release's objects deleted; its history too unless
        ``keep_history`` (then the last revision is ``uninstalled``). Returns that revision."""
        payload = uninstall_options_json(options)

        def run(config: helm_python.Config) -> ReleaseSummary:
            answer = json.loads(_native.call_string("helm_uninstall", config._raw(), name, payload))
            return _summary(answer["release"])

        async with self._release_lock(storage_namespace, name):
            return await self._run("uninstall", storage_namespace, name, run, None)

    async def test(
        self,
        name: str,
        *,
        storage_namespace: str,
        options: HelmTestOptions = HelmTestOptions(),
    ) -> HelmTestResult:
        """``helm test``: run the test hooks. A failing test raises :class:`HelmError`; the
        hooks' phases are then read with :meth:`get`."""
        payload = helm_test_options_json(options)

        def run(config: helm_python.Config) -> HelmTestResult:
            answer = json.loads(_native.call_string("helm_test_run", config._raw(), name, payload))
            got = json.loads(_native.call_string("helm_get", config._raw(), name, None))
            return HelmTestResult(release=_release(got), logs=answer.get("logs") or "")

        async with self._release_lock(storage_namespace, name):
            return await self._run("test", storage_namespace, name, run, None)

    # Read actions (no lock: Helm reads a stored revision, which it never rewrites in place
    # except for its status)

    async def get(self, name: str, *, storage_namespace: str, version: int = 0) -> Release:
        """The release's revision ``version`` (0: the latest), whole."""
        options = json.dumps({"revision": version}) if version else None

        def run(config: helm_python.Config) -> Release:
            return _release(
                json.loads(_native.call_string("helm_get", config._raw(), name, options))
            )

        return await self._run("get", storage_namespace, name, run, None)

    async def history(self, name: str, *, storage_namespace: str) -> list[ReleaseSummary]:
        """Every stored revision of the release, oldest first."""

        def run(config: helm_python.Config) -> list[ReleaseSummary]:
            return [_summary(item) for item in config.history(name)]

        return await self._run("history", storage_namespace, name, run, None)

    # Dry run (no lock: nothing is written)

    async def render(
        self,
        name: str,
        chart: str | os.PathLike[str],
        values: Mapping[str, Any],
        *,
        namespace: str,
        storage_namespace: str | None = None,
        install: InstallOptions = InstallOptions(),
        upgrade: UpgradeOptions = UpgradeOptions(),
    ) -> RenderedRelease:
        """``helm upgrade --dry-run=server`` of the stored release ``name`` with these options,
        or ``helm install --dry-run=server`` when none is stored: the manifest Helm would apply
        (post-rendered when the options name a post-renderer). The chart's ``lookup`` calls
        read the cluster as in a real action; nothing is written."""
        storage = storage_namespace or namespace
        values_json = json.dumps(dict(values))
        install_json = _dry_run(install_options_json(namespace, install))
        upgrade_json = _dry_run(upgrade_options_json(namespace, upgrade))
        context = helm_python.HelmContext()

        def run(config: helm_python.Config) -> RenderedRelease:
            try:
                got = _native.call_string("helm_get", config._raw(), name, None)
                previous: Release | None = _release(json.loads(got))
            except helm_python.HelmNotFoundError:
                previous = None
            function, options_json = (
                ("helm_install", install_json)
                if previous is None
                else ("helm_upgrade", upgrade_json)
            )
            with helm_python.Chart.load(Path(chart)) as loaded:
                answer = _native.call_string(
                    function,
                    config._raw(),
                    context._raw(),
                    loaded._raw(),
                    None,
                    name,
                    values_json,
                    options_json,
                )
            manifest = json.loads(answer).get("manifest") or ""
            action: Literal["install", "upgrade"] = "install" if previous is None else "upgrade"
            return RenderedRelease(action, manifest, previous)

        try:
            return await self._run("render", storage, name, run, context)
        finally:
            context.close()

    async def _run(
        self,
        action: str,
        storage_namespace: str,
        name: str,
        call: Callable[[helm_python.Config], T],
        context: helm_python.HelmContext | None,
    ) -> T:
        """``call`` in a thread with a configuration of its own, its errors translated.
        Cancelled, it cancels ``context`` (if the action has one) and still waits for the
        library to return, so that the caller's lock outlives the action."""
        config = self._lease(storage_namespace)
        try:
            return await self._call(action, storage_namespace, name, call, config, context)
        finally:
            if self._reuse:
                self._idle.setdefault((self._user, storage_namespace), []).append(config)
            else:
                config.close()

    async def _call(
        self,
        action: str,
        storage_namespace: str,
        name: str,
        call: Callable[[helm_python.Config], T],
        config: helm_python.Config,
        context: helm_python.HelmContext | None,
    ) -> T:
        task = asyncio.get_running_loop().run_in_executor(self._threads, call, config)
        cancelled = False
        while not task.done():
            try:
                # asyncio.wait, unlike awaiting the task, leaves the task running when we are
                # cancelled: the thread cannot be stopped, only the library's context.
                await asyncio.wait({task})
            except asyncio.CancelledError:
                if not cancelled:
                    cancelled = True
                    log.info(
                        "helm action cancelled",
                        action=action,
                        release=name,
                        storage_namespace=storage_namespace,
                    )
                    if context is not None:
                        context.cancel()
        try:
            result = task.result()
        except helm_python.HelmError as err:
            error = _translate(err, cancelled=cancelled)
            if cancelled:
                raise asyncio.CancelledError() from error
            raise error from err
        if cancelled:  # the action ended first, but our caller asked to stop
            raise asyncio.CancelledError()
        return result
