"""The one reconciler shape every weir controller has.

A controller supplies a ``Reconciler``: its model, its abnormal condition types, its per-run
state, its ordered steps (``async def step(ctx, obj) -> Result``), the other kinds it watches
and a ``finalize`` for deletion. ``Controller`` does the rest the same way for every kind:
fetch by key, deletion and finalizer, suspend, run the steps, then one summarizer
(``summarize``, ``events_to_record``) maps the outcome to ``Ready``/``Reconciling``/``Stalled``,
``observedGeneration``, ``lastHandledReconcileAt``, events, metrics and the requeue.
"""

from __future__ import annotations

import copy
import datetime
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Generic, Protocol, cast

import structlog
from pydantic import ValidationError
from typing_extensions import TypeVar

from controllers import conditions as cond
from controllers.api import (
    Condition,
    CustomResource,
    ObjectMeta,
    ResourceInfo,
    ResourceStatus,
    object_key,
)
from controllers.events import EventRecorder, EventType
from controllers.informer import Informer
from controllers.kube import KubeClient
from controllers.metrics import Metrics
from controllers.patch import StatusPatcher, patch_finalizers
from controllers.queue import jitter
from controllers.suspension import Suspension, describe_age

__all__ = [
    "FINALIZER",
    "INVALID_SPEC",
    "REQUESTED_AT",
    "Controller",
    "Event",
    "Outcome",
    "Read",
    "ReconcileError",
    "Reconciler",
    "Result",
    "RunContext",
    "RunSummary",
    "Stalling",
    "Step",
    "Waiting",
    "Watch",
    "events_to_record",
    "summarize",
]

FINALIZER = "finalizers.fluxcd.io"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
INVALID_SPEC = "InvalidSpec"
"""The reason an object stalls with when its model rejects it, e.g. a duration Go rejects."""
# An invalid object's message lists at most this many problems, and values up to this length.
MAX_PROBLEMS = 5
MAX_SHOWN_VALUE = 64
DEFAULT_INTERVAL_SECONDS = 600.0
"""How often an object of a kind without ``spec.interval`` is reconciled."""
DEFAULT_SUSPENDED_REMINDER_SECONDS = 3600.0
"""How often a suspended object gets a reminder (``--suspended-reminder-interval``)."""
STILL_SUSPENDED = "StillSuspended"
"""The reason of the reminder events of a suspended object."""
# The shortest wait for a reminder's due time: a clock a little behind never makes a tight loop.
_MIN_REMINDER_DELAY_SECONDS = 0.05

T = TypeVar("T", bound=CustomResource)
T_contra = TypeVar("T_contra", bound=CustomResource, contravariant=True)
S = TypeVar("S", default=Any)
"""A reconciler's per-run state (``RunContext.state``); Any where it does not matter."""


class ReconcileError(Exception):
    """A failed reconcile, retried with per-key backoff. ``reason`` becomes the condition reason."""

    def __init__(self, message: str, *, reason: str = cond.FAILED) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Stalling(ReconcileError):
    """A failure that retrying cannot fix (bad spec): no retry until the object changes."""


class Waiting(ReconcileError):
    """Not a failure: something else must happen first; look again after ``requeue_after``."""

    def __init__(self, message: str, *, reason: str, requeue_after: float) -> None:
        super().__init__(message, reason=reason)
        self.requeue_after = requeue_after


@dataclass(frozen=True)
class Result:
    """What a step reports. The run's result has the last message a step gave and the
    shortest ``requeue_after`` a step asked for (zero or less asks for nothing)."""

    requeue_after: float | None = None
    message: str | None = None

    def then(self, later: Result) -> Result:
        """This result followed by a later step's."""
        delays = [d for d in (self.requeue_after, later.requeue_after) if d is not None and d > 0]
        return Result(min(delays) if delays else None, later.message or self.message)


class Outcome(Enum):
    SUCCEEDED = "succeeded"
    WAITING = "waiting"
    STALLED = "stalled"
    FAILED = "failed"
    SUSPENDED = "suspended"
    DELETED = "deleted"


Read = Callable[[ResourceInfo, str | None, str], Awaitable[dict[str, Any] | None]]
"""``RunContext.read``: an object by kind, namespace and name; None when it does not exist."""

Event = tuple[EventType, str, str]
"""An event to record: its type, reason and message."""


@dataclass
class RunContext(Generic[S]):
    """What the steps of one run share: the client, a bound logger, the working conditions
    and the reconciler's own ``state``."""

    client: KubeClient
    log: Any
    conditions: list[Condition]
    generation: int | None
    reconcile_id: str
    state: S
    """The reconciler's per-run data (``Reconciler.new_state()``), handed from step to step."""
    events: list[Event] = field(default_factory=list)
    revision: str | None = None
    attempted_revision: str | None = None
    """The revision this run works on: its failure events carry it (a Git host's commit
    status then fails on that commit); waiting for something is not a failure of it."""
    event_metadata: dict[str, str] = field(default_factory=dict)
    """Metadata for the events of a successful run (keys without the API group, which the
    recorder adds), e.g. ``commit_status: update`` for Git hosts' commit statuses."""
    _tempdirs: list[Path] = field(default_factory=list)
    _write: Callable[[], Awaitable[None]] | None = None
    _informers: Mapping[ResourceInfo, Informer] = field(default_factory=dict)

    async def read(
        self, info: ResourceInfo, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """An object the steps need (a source, a dependency), or None if it does not exist:
        the copy held by the process's informer on its kind, as controller-runtime's cached
        client reads; from the API when no synced informer holds it."""
        return await _read_through(self.client, self._informers.get(info), info, namespace, name)

    def tempdir(self, prefix: str = "weir-") -> Path:
        """A fresh directory, removed by the runtime when the run ends, however it ends."""
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self._tempdirs.append(path)
        return path

    def cleanup(self) -> None:
        for path in self._tempdirs:
            shutil.rmtree(path, ignore_errors=True)
        self._tempdirs.clear()

    def mark(self, type_: str, status: cond.Status, reason: str, message: str) -> None:
        """Set one of the controller's own conditions."""
        self.conditions = cond.set_condition(
            self.conditions, type_, status, reason, message, self.generation
        )

    def clear(self, type_: str) -> None:
        self.conditions = cond.remove(self.conditions, type_)

    async def progress(self, message: str) -> None:
        """Publish now that the run is under way: ``Reconciling=True Progressing`` with
        ``message`` and ``Ready=Unknown``, as Flux does before slow steps, so that whoever
        waits on this object (kstatus, a parent's health check) does not take the last
        run's Ready for this one's. A run under way is not stalled: ``Stalled`` goes."""
        self.mark(cond.RECONCILING, "True", cond.PROGRESSING, message)
        self.clear(cond.STALLED)
        self.mark(cond.READY, "Unknown", cond.PROGRESSING, "Reconciliation in progress")
        if self._write is not None:
            await self._write()

    def notify(self, reason: str, message: str, *, revision: str | None = None) -> None:
        """Emit a Normal event when the run ends (a new revision, a recovery...)."""
        self.events.append(("Normal", reason, message))
        if revision:
            self.revision = revision

    def warn(self, reason: str, message: str) -> None:
        """Emit a Warning event when the run ends without error (what it found wrong and
        dealt with, such as drift)."""
        self.events.append(("Warning", reason, message))


class Step(Protocol[T_contra, S]):
    """One step of a run: ``async def step(ctx, obj) -> Result``."""

    def __call__(self, ctx: RunContext[S], obj: T_contra, /) -> Awaitable[Result]: ...


@dataclass(frozen=True)
class Watch:
    """Another kind whose changes requeue this controller's objects (Flux's source watches).

    ``requeue(old, new, primaries)`` gets a changed object of ``info`` (either side may be
    None) and every object of the controller's own kind the process knows, and returns the
    keys to reconcile again.

    ``configs``: a watch of ConfigMaps or Secrets, limited to those the process's
    ``--watch-configs-label-selector`` matches (Flux's config watchers); its cache holds only
    those, so the steps read such objects from the API server, not from it.
    """

    info: ResourceInfo
    requeue: Callable[
        [dict[str, Any] | None, dict[str, Any] | None, Iterable[dict[str, Any]]], Iterable[str]
    ]
    configs: bool = False


class Reconciler(Protocol[T, S]):
    """What a controller writes for its kind ``T``; the runtime supplies everything else.

    ``S`` is the per-run state its steps hand on to each other (``ctx.state``). Subclass it,
    ``class GitRepositoryReconciler(Reconciler[GitRepository, GitRunState])``, to have mypy
    check the steps against the state and to inherit the defaults (``watches``: none).
    """

    model: type[T]
    owned_conditions: tuple[str, ...]
    """The abnormal condition types the steps set (``FetchFailed``...), besides ``Ready``,
    ``Reconciling`` and ``Stalled``: this controller's own when status is written."""

    @property
    def steps(self) -> Sequence[Step[T, S]]:
        """The steps of a run, in order; the first error ends the run."""
        ...

    @property
    def watches(self) -> Sequence[Watch]:
        """Other kinds whose changes requeue this controller's objects; none by default."""
        return ()

    def new_state(self) -> S:
        """A new run's ``ctx.state``, made by the runtime before the first step (and before
        ``finalize``)."""
        ...

    async def finalize(self, ctx: RunContext[S], obj: T) -> None:
        """Remove what the object owns, before its finalizer goes."""
        ...

    async def close(self) -> None:
        """Release what the reconciler holds (worker processes...) when the controller stops,
        after the last run; nothing by default."""
        return None


@dataclass(frozen=True)
class RunSummary:
    """What one call of ``Controller.reconcile`` came to, for the worker to requeue by: the
    outcome, and the delay before the key runs again (None: the per-key backoff after a
    failure or a wait, no requeue otherwise)."""

    outcome: Outcome
    requeue_after: float | None = None


async def _read_through(
    client: KubeClient,
    informer: Informer | None,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
) -> dict[str, Any] | None:
    if informer is not None and informer.synced.is_set():
        cached = informer.get(f"{namespace}/{name}" if namespace else name)
        if cached is not None:
            # Listed items carry no apiVersion and kind; the copy is the run's to change.
            return {"apiVersion": info.api_version, "kind": info.kind, **copy.deepcopy(cached)}
    return await client.get_or_none(info, namespace, name)


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Controller(Generic[T, S]):
    """Runs a Reconciler's steps for a key and writes the summarized status.

    The object is read from ``informers`` (the manager's, by kind) unless this controller
    wrote it since the informer last caught up: then from the API, so that a run never
    starts from a status older than the last run's."""

    def __init__(
        self,
        reconciler: Reconciler[T, S],
        client: KubeClient,
        *,
        name: str,
        recorder: EventRecorder,
        metrics: Metrics,
        jitter_fraction: float = 0.05,
        suspended_reminder_interval: float = DEFAULT_SUSPENDED_REMINDER_SECONDS,
    ) -> None:
        self.reconciler = reconciler
        self.info = reconciler.model.info
        self.client = client
        self.name = name
        self.recorder = recorder
        self.metrics = metrics
        self.jitter_fraction = jitter_fraction
        self.owned = (cond.READY, cond.RECONCILING, cond.STALLED, *reconciler.owned_conditions)
        self.informers: Mapping[ResourceInfo, Informer] = {}
        # Keys written to whose informer copy is older than the write: resourceVersion written.
        self._unseen_writes: dict[str, str] = {}
        self.suspended_reminder_interval = suspended_reminder_interval
        # Per suspended key: since when (the record's time, else when this process first saw
        # it suspended) and how many reminders are done for that suspension.
        self._suspensions: dict[str, tuple[datetime.datetime, int]] = {}

    def observe(self, key: str, new: dict[str, Any] | None) -> None:
        """The primary informer saw ``key`` change: it is current again once it has our write
        (or the object is gone)."""
        written = self._unseen_writes.get(key)
        if written is not None and (new is None or _resource_version(new) == written):
            del self._unseen_writes[key]

    def _wrote(self, updated: dict[str, Any] | None) -> None:
        if updated is not None:
            self._unseen_writes[object_key(updated)] = _resource_version(updated)

    @staticmethod
    def wants(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
        """Flux's predicates: create, delete, a new generation or a new requestedAt."""
        if old is None or new is None:
            return True
        old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
        if old_meta.get("generation") != new_meta.get("generation"):
            return True
        requested = (new_meta.get("annotations") or {}).get(REQUESTED_AT)
        return requested != (old_meta.get("annotations") or {}).get(REQUESTED_AT)

    async def reconcile(self, key: str) -> RunSummary:
        """Bring the object named by ``key`` (``namespace/name``) to its desired state."""
        namespace, _, name = key.rpartition("/")
        informer = self.informers.get(self.info)
        if key in self._unseen_writes:
            raw = await self.client.get_or_none(self.info, namespace or None, name)
            cached = informer.get(key) if informer is not None else None
            if raw is None or _resource_version(cached or {}) == _resource_version(raw):
                # The informer holds what the API does (a relist may have jumped past our write).
                # observe() may have seen it during the read, hence pop.
                self._unseen_writes.pop(key, None)
        else:
            raw = await _read_through(self.client, informer, self.info, namespace or None, name)
        if raw is None:
            self.metrics.forget(self.info.kind, namespace, name)
            self._suspensions.pop(key, None)
            return RunSummary(Outcome.DELETED)
        invalid: ValidationError | None = None
        try:
            obj = self.reconciler.model.from_dict(raw)
        except ValidationError as err:
            obj, invalid = self._stand_in(raw), err
        reconcile_id = str(uuid.uuid4())
        log = structlog.get_logger().bind(
            controller=self.name,
            kind=self.info.kind,
            namespace=namespace,
            name=name,
            reconcile_id=reconcile_id,
        )
        ctx = RunContext(
            client=self.client,
            log=log,
            conditions=list(obj.status.conditions or []),
            generation=obj.metadata.generation,
            reconcile_id=reconcile_id,
            state=self.reconciler.new_state(),
            _informers=self.informers,
        )
        started = time.monotonic()
        try:
            if invalid is not None:
                return await self._stall_invalid(ctx, obj, raw, invalid, started)
            if obj.metadata.deletion_timestamp:
                return await self._finalize(ctx, obj, raw)
            return await self._reconcile_live(ctx, obj, raw, started)
        finally:
            ctx.cleanup()

    async def _reconcile_live(
        self, ctx: RunContext[S], obj: T, raw: dict[str, Any], started: float
    ) -> RunSummary:
        if obj.static:
            return await self._make_static(ctx, obj, raw)
        try:
            if FINALIZER not in (obj.metadata.finalizers or []):
                raw = await patch_finalizers(self.client, self.info, raw, add=FINALIZER)
                self._wrote(raw)
            if obj.suspended:
                return await self._remind_suspended(ctx, obj)
            self._suspensions.pop(_key_of(obj), None)
            self.metrics.record_suspend(obj, False)
            return await self._run_steps(ctx, obj, raw)
        finally:
            self.metrics.record_duration(obj, time.monotonic() - started)

    async def _remind_suspended(self, ctx: RunContext[S], obj: T) -> RunSummary:
        """Nothing is reconciled; every ``suspended_reminder_interval`` of the suspension a
        Warning event says for how long, by whom and why (``weir suspend``'s record), and the
        run comes back for the next one. Without a record, the age counts from when this
        process first saw the object suspended."""
        key = _key_of(obj)
        now = datetime.datetime.now(datetime.UTC)
        record = Suspension.from_annotations(obj.metadata.annotations)
        known = self._suspensions.get(key)
        since = record.at or (known[0] if known else now)
        done = known[1] if known is not None and known[0] == since else 0
        self.metrics.record_suspend(obj, True, since=since.timestamp())
        ctx.log.info("reconciliation is suspended")
        interval = self.suspended_reminder_interval
        if interval <= 0:
            self._suspensions[key] = (since, done)
            return RunSummary(Outcome.SUSPENDED)
        age = max(0.0, (now - since).total_seconds())
        due = int(age // interval)
        if due > done:
            # After a restart, one reminder for all that were missed, not one for each.
            known_age = describe_age(age) if record.at else f"at least {describe_age(age)}"
            message = f"reconciliation suspended for {known_age} {record.who_and_why()}"
            ctx.log.warning("still suspended", age_seconds=round(age))
            await self.recorder.record(obj, "Warning", STILL_SUSPENDED, message)
            done = due
        self._suspensions[key] = (since, done)
        next_due = (done + 1) * interval - age
        return RunSummary(Outcome.SUSPENDED, max(next_due, _MIN_REMINDER_DELAY_SECONDS))

    async def _make_static(self, ctx: RunContext[S], obj: T, raw: dict[str, Any]) -> RunSummary:
        """Undo what earlier runs left on an object that became static (a HelmRepository
        switched to ``type: oci``), as Flux migrates it: what it owns goes (``finalize``),
        then its finalizer and its whole status. A suspended one is left as it is."""
        self.metrics.forget(self.info.kind, obj.metadata.namespace or "", obj.metadata.name)
        if obj.suspended:
            return RunSummary(Outcome.SUSPENDED)
        if FINALIZER in (obj.metadata.finalizers or []):
            await self.reconciler.finalize(ctx, obj)
            raw = await patch_finalizers(self.client, self.info, raw, remove=FINALIZER)
            self._wrote(raw)
        if raw.get("status"):
            patcher = StatusPatcher(
                self.client, self.info, raw, owned_conditions=self.owned, field_manager=self.name
            )
            self._wrote(await patcher.patch({}))
            ctx.log.info("object is static: status removed")
        return RunSummary(Outcome.SUCCEEDED)

    def _stand_in(self, raw: dict[str, Any]) -> T:
        """An object the model rejects, reduced to its metadata and conditions: enough to
        write its status, record events and metrics, never to run steps on."""
        status = ResourceStatus(conditions=_conditions(raw))
        metadata = ObjectMeta.model_validate(raw.get("metadata") or {})
        # model_construct skips validation; mypy types it as the base class.
        return cast(T, self.reconciler.model.model_construct(metadata=metadata, status=status))

    async def _stall_invalid(
        self,
        ctx: RunContext[S],
        obj: T,
        raw: dict[str, Any],
        invalid: ValidationError,
        started: float,
    ) -> RunSummary:
        """Stall an object the model rejects until it changes, as a bad spec does; neither
        steps nor finalizer run (a deleted one keeps its finalizer until the spec is fixed)."""
        message = _problems(invalid)
        if obj.metadata.deletion_timestamp:
            message += "; the object is finalized once its spec is valid"
        error = Stalling(message, reason=INVALID_SPEC)
        ctx.log.warning("invalid object", error=message)
        was = cond.find(ctx.conditions, cond.READY)
        # A stall needs neither interval (and the stand-in has no spec to read them from).
        ctx.conditions, run = summarize(
            ctx.conditions,
            generation=ctx.generation,
            result=Result(),
            error=error,
            interval=None,
            retry_interval=None,
        )
        patcher = StatusPatcher(
            self.client, self.info, raw, owned_conditions=self.owned, field_manager=self.name
        )
        # Only the runtime's own fields: the model's (artifact, inventory...) stay as they are.
        self._wrote(await patcher.patch(self._runtime_status(ctx, obj, raw)))
        await self._emit(ctx, obj, was, error)
        self.metrics.record_conditions(obj, ctx.conditions)
        self.metrics.record_duration(obj, time.monotonic() - started)
        return run

    async def _finalize(self, ctx: RunContext[S], obj: T, raw: dict[str, Any]) -> RunSummary:
        # Series go first: once the object is gone from the API, it is gone from /metrics.
        self.metrics.forget(self.info.kind, obj.metadata.namespace or "", obj.metadata.name)
        self._suspensions.pop(_key_of(obj), None)
        if FINALIZER in (obj.metadata.finalizers or []):
            await self.reconciler.finalize(ctx, obj)
            await patch_finalizers(self.client, self.info, raw, remove=FINALIZER)
        ctx.log.info("finalized")
        return RunSummary(Outcome.DELETED)

    async def _run_steps(self, ctx: RunContext[S], obj: T, raw: dict[str, Any]) -> RunSummary:
        was = cond.find(ctx.conditions, cond.READY)
        # One patcher for the run: progress writes and the final one chain their versions.
        patcher = StatusPatcher(
            self.client, self.info, raw, owned_conditions=self.owned, field_manager=self.name
        )
        ctx._write = lambda: self._write_status(ctx, obj, raw, patcher, final=False)
        result = Result()
        error: ReconcileError | None = None
        try:
            for step in self.reconciler.steps:
                result = result.then(await step(ctx, obj))
        except ReconcileError as err:
            error = err
        except Exception as err:
            ctx.log.exception("reconcile step raised")
            error = ReconcileError(f"{type(err).__name__}: {err}")
        interval = obj.interval_seconds
        ctx.conditions, run = summarize(
            ctx.conditions,
            generation=ctx.generation,
            result=result,
            error=error,
            interval=DEFAULT_INTERVAL_SECONDS if interval is None else interval,
            retry_interval=obj.retry_interval_seconds,
            jitter_fraction=self.jitter_fraction,
        )
        await self._write_status(ctx, obj, raw, patcher)
        await self._emit(ctx, obj, was, error)
        self.metrics.record_conditions(obj, ctx.conditions)
        _log_outcome(ctx, run, error)
        return run

    async def _write_status(
        self,
        ctx: RunContext[S],
        obj: T,
        raw: dict[str, Any],
        patcher: StatusPatcher,
        *,
        final: bool = True,
    ) -> None:
        status = self._runtime_status(ctx, obj, raw, final=final)
        for key, value in self._model_status(obj).items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        self._wrote(await patcher.patch(status))

    @staticmethod
    def _runtime_status(
        ctx: RunContext[S], obj: T, raw: dict[str, Any], *, final: bool = True
    ) -> dict[str, Any]:
        """``raw``'s status with the runtime's own fields as this run leaves them."""
        status = dict(raw.get("status") or {})
        status["conditions"] = [c.to_dict() for c in ctx.conditions]
        if not cond.is_true(ctx.conditions, cond.RECONCILING):
            status["observedGeneration"] = obj.metadata.generation
        requested = (obj.metadata.annotations or {}).get(REQUESTED_AT)
        if requested and final:
            status["lastHandledReconcileAt"] = requested
        return status

    def _model_status(self, obj: T) -> dict[str, Any]:
        """The model's status fields other than the runtime's own; None means remove."""
        present = obj.status.to_dict()
        own = ("conditions", "observedGeneration", "lastHandledReconcileAt")
        aliases = (f.alias or n for n, f in type(obj.status).model_fields.items())
        return {alias: present.get(alias) for alias in aliases if alias not in own}

    async def _emit(
        self, ctx: RunContext[S], obj: T, was: Condition | None, error: ReconcileError | None
    ) -> None:
        # Success: the revision and metadata of what the steps notified (a recovery: the
        # revision worked on). Failure: the revision it failed at, unless the run only waits.
        revision = ctx.revision or ctx.attempted_revision
        metadata: dict[str, str] | None = ctx.event_metadata
        if error is not None:
            revision = None if isinstance(error, Waiting) else ctx.attempted_revision
            metadata = None
        for type_, reason, message in events_to_record(was, ctx.conditions, error, ctx.events):
            await self.recorder.record(
                obj, type_, reason, message, revision=revision, metadata=metadata
            )


def _key_of(obj: CustomResource) -> str:
    namespace = obj.metadata.namespace
    return f"{namespace}/{obj.metadata.name}" if namespace else obj.metadata.name


def _log_outcome(ctx: RunContext[S], run: RunSummary, error: ReconcileError | None) -> None:
    """One line per run, as Flux's "Reconciliation finished in 1.2s, next run in 10m":
    info when it succeeded or waits for something, error when it failed."""
    next_run = None if run.requeue_after is None else round(run.requeue_after, 3)
    ready = cond.find(ctx.conditions, cond.READY)
    if error is None:
        message = ready.message if ready is not None else ""
        ctx.log.info("reconciliation finished", message=message, next_run_in=next_run)
    elif isinstance(error, Waiting):
        ctx.log.info(
            "reconciliation waiting",
            reason=error.reason,
            message=error.message,
            next_run_in=next_run,
        )
    else:
        stalled = isinstance(error, Stalling)
        ctx.log.error(
            "reconciliation failed",
            reason=error.reason,
            error=error.message,
            stalled=stalled,
            next_run_in=next_run,
        )


def summarize(
    conditions: Sequence[Condition],
    *,
    generation: int | None,
    result: Result,
    error: ReconcileError | None,
    interval: float | None,
    retry_interval: float | None,
    jitter_fraction: float = 0.0,
) -> tuple[list[Condition], RunSummary]:
    """The one place that derives ``Ready``, ``Reconciling`` and ``Stalled`` from how a run
    ended (``result`` of the steps, or the ``error`` that stopped them), and when it runs
    again: the run's conditions and its summary.

    After a success: ``interval`` or the shorter ``result.requeue_after``, moved by up to
    ``jitter_fraction`` either way. A zero delay never requeues at once: ``interval: 0s``
    means no periodic run, as in Flux, and a zero retry or wait falls back to the per-key
    backoff. A failure retries after ``retry_interval`` (kinds with ``spec.retryInterval``,
    as Flux does), else with the backoff; a stall waits for the object to change.
    """
    working = list(conditions)

    def mark(type_: str, status: cond.Status, reason: str, message: str) -> None:
        nonlocal working
        working = cond.set_condition(working, type_, status, reason, message, generation)

    def clear(type_: str) -> None:
        nonlocal working
        working = cond.remove(working, type_)

    if error is None:
        mark(cond.READY, "True", cond.SUCCEEDED, result.message or "Reconciliation succeeded")
        clear(cond.RECONCILING)
        clear(cond.STALLED)
        delays = [d for d in (interval, result.requeue_after) if d is not None and d > 0]
        next_run = jitter(min(delays), jitter_fraction) if delays else None
        return working, RunSummary(Outcome.SUCCEEDED, next_run)
    mark(cond.READY, "False", error.reason, error.message)
    if isinstance(error, Stalling):
        mark(cond.STALLED, "True", error.reason, error.message)
        clear(cond.RECONCILING)
        return working, RunSummary(Outcome.STALLED)
    mark(cond.RECONCILING, "True", cond.PROGRESSING_WITH_RETRY, error.message)
    clear(cond.STALLED)
    if isinstance(error, Waiting):
        return working, RunSummary(Outcome.WAITING, _positive(error.requeue_after))
    return working, RunSummary(Outcome.FAILED, _positive(retry_interval))


def events_to_record(
    ready_before: Condition | None,
    conditions: Sequence[Condition],
    error: ReconcileError | None,
    notified: Sequence[Event],
) -> list[Event]:
    """The events a run records, given ``Ready`` as the run found it and the summarized
    ``conditions``: a Warning for a failure, unless ``Ready`` says the same as before; after
    a success, what the steps ``notified``, else a recovery from ``Ready=False``."""
    ready = cond.find(conditions, cond.READY)
    changed = (
        ready_before is None
        or ready is None
        or (ready_before.status, ready_before.reason, ready_before.message)
        != (ready.status, ready.reason, ready.message)
    )
    if error is not None:
        # A wait is no failure of this object: Flux tells it as info (DependencyNotReady), so
        # an Alert on errors does not fire for every new object whose source is not ready.
        type_: EventType = "Normal" if isinstance(error, Waiting) else "Warning"
        return [(type_, error.reason, error.message)] if changed else []
    if notified:
        return list(notified)
    if (
        changed
        and ready is not None
        and ready_before is not None
        and ready_before.status == "False"
    ):
        # Recovery from a failure is worth telling even when nothing else is new.
        return [("Normal", ready.reason, ready.message)]
    return []


def _positive(seconds: float | None) -> float | None:
    """``seconds`` if above zero; else None, which means the per-key backoff."""
    return seconds if seconds is not None and seconds > 0 else None


def _conditions(raw: dict[str, Any]) -> list[Condition]:
    """The conditions in ``raw``'s status; none if they do not validate either."""
    try:
        items = (raw.get("status") or {}).get("conditions") or []
        return [Condition.model_validate(item) for item in items]
    except ValidationError:
        return []


def _problems(err: ValidationError) -> str:
    """What the model found wrong, field by field: ``spec.interval: time: invalid duration
    "1000000000h": durations are at most ...``. Long values are cut, and so is a long list."""
    problems = []
    for error in err.errors(include_url=False)[:MAX_PROBLEMS]:
        where = ".".join(str(part) for part in error["loc"])
        problem = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if error["type"] != "value_error" and isinstance(value, str):
            shown = value if len(value) <= MAX_SHOWN_VALUE else f"{value[:MAX_SHOWN_VALUE]}..."
            problem += f", got {shown!r}"
        problems.append(f"{where}: {problem}")
    more = err.error_count() - MAX_PROBLEMS
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)
