"""The kinds the commands know, and how each verb's command tree is built from them.

A kind is named by one or two words, as ``flux`` names them: ``kustomization`` (also
``kustomizations``, ``ks``), ``source git`` (also ``sources``, ``gitrepository``...),
``helmrelease`` (also ``hr``), ``alert-provider``, ``image policy`` (also ``images``,
``imagepolicy``). Each verb (``get``, ``reconcile``, ``suspend``, ``resume``, ``export``)
builds one command per kind with ``attach``; adding a kind to ``KINDS`` adds it to every verb
(``reconcile`` only to the kinds a controller reconciles: not Alerts and Providers, which have
no status in Flux's v1beta3 and are judged by the commands instead).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from controllers.api import ResourceInfo
from controllers.kube import KubeClient
from helm.api_v2 import HelmRelease
from image_automation.api_v1 import ImagePolicy, ImageRepository, ImageUpdateAutomation
from kustomize.api_v1 import Kustomization
from notification.api_v1 import Receiver
from notification.api_v1beta3 import Alert, Provider
from source.api_v1 import Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository
from weir.cli.alerts import judge_alerts, judge_providers

__all__ = [
    "KINDS",
    "RECONCILED",
    "AliasedGroup",
    "Column",
    "Judge",
    "Kind",
    "attach",
    "find_kind",
    "group_of",
]

Judge = Callable[[KubeClient, Sequence[dict[str, Any]]], Awaitable[list[tuple[str, str]]]]
"""(Ready, message) of each object of a kind without status, judged by the command."""

Column = tuple[str, Callable[[dict[str, Any]], str]]
"""A column of ``weir get``: its header and the value of an object."""


def _suspended(obj: dict[str, Any]) -> str:
    return "True" if (obj.get("spec") or {}).get("suspend") else "False"


def _status_field(*path: str) -> Callable[[dict[str, Any]], str]:
    """The value at ``status.<path>``, "" where it is not set."""

    def value(obj: dict[str, Any]) -> str:
        found: Any = obj.get("status") or {}
        for key in path:
            found = (found or {}).get(key) if isinstance(found, dict) else None
        return "" if found is None else str(found)

    return value


def _artifact_revision(obj: dict[str, Any]) -> str:
    artifact = (obj.get("status") or {}).get("artifact") or {}
    return str(artifact.get("revision") or "")


def _applied_revision(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("lastAppliedRevision") or "")


def _release_revision(obj: dict[str, Any]) -> str:
    """As ``flux get helmreleases``: the chart version of the latest release, else the
    revision last attempted."""
    status = obj.get("status") or {}
    history = status.get("history") or []
    if history:
        return str(history[0].get("chartVersion") or "")
    return str(status.get("lastAttemptedRevision") or "")


def _ref_of(obj: dict[str, Any], ref: dict[str, Any]) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of a reference, in ``obj``'s namespace when it names none."""
    if not ref.get("kind") or not ref.get("name"):
        return None
    namespace = ref.get("namespace") or (obj.get("metadata") or {}).get("namespace") or ""
    return str(ref["kind"]), namespace, str(ref["name"])


def _spec_source_ref(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    return _ref_of(obj, (obj.get("spec") or {}).get("sourceRef") or {})


def _release_source(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """As ``flux reconcile hr --with-source``: the ``chartRef``, else the HelmChart the
    controller made from the chart template (``<namespace>-<name>``, in the namespace of the
    template's source)."""
    spec = obj.get("spec") or {}
    if spec.get("chartRef"):
        return _ref_of(obj, spec["chartRef"])
    template_ref = _ref_of(
        obj, ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or {}
    )
    if template_ref is None:
        return None
    meta = obj.get("metadata") or {}
    return "HelmChart", template_ref[1], f"{meta.get('namespace')}-{meta.get('name')}"


def _oci_helm_repository(obj: dict[str, Any]) -> bool:
    # Flux's HelmRepository of type oci is static: no controller reconciles it.
    return bool((obj.get("spec") or {}).get("type") == "oci")


@dataclass(frozen=True)
class Kind:
    """One kind, as the commands name and show it."""

    info: ResourceInfo
    words: tuple[str, ...]
    """How commands name it: ``("source", "git")`` or ``("kustomization",)``."""
    aliases: tuple[str, ...]
    """Other spellings of its last word."""
    revision: Callable[[dict[str, Any]], str] | None
    """The revision ``get`` shows: the artifact's, or the one last applied; None for a kind
    that has none (no REVISION column)."""
    source: Callable[[dict[str, Any]], tuple[str, str, str] | None] | None = None
    """The (kind, namespace, name) of the source it reads, for ``--with-source``."""
    judge: Judge | None = None
    """For a kind without status (Alert, Provider): how the commands tell whether each object
    is ready; None when its controller reports Ready."""
    static: Callable[[dict[str, Any]], bool] | None = None
    """Whether an object of a reconciled kind is static (a HelmRepository of type oci): no
    controller reconciles it, so there is nothing to wait for."""
    release: bool = False
    """Takes Flux's one-off requests to force a release and reset its failure counts
    (``weir reconcile --force``, ``--reset``)."""
    columns: tuple[Column, ...] | None = None
    """What ``get`` shows between NAME and READY, as ``flux get`` shows the kind; None for
    REVISION (when it has a revision) and SUSPENDED."""

    @property
    def table_columns(self) -> tuple[Column, ...]:
        """The columns ``get`` shows between NAME and READY."""
        if self.columns is not None:
            return self.columns
        revision: tuple[Column, ...] = (
            (("REVISION", self.revision_of),) if self.revision is not None else ()
        )
        return (*revision, ("SUSPENDED", _suspended))

    @property
    def title(self) -> str:
        return self.info.kind

    @property
    def reconciled(self) -> bool:
        """Whether a controller reconciles it and reports Ready (``weir reconcile`` works)."""
        return self.judge is None

    def revision_of(self, obj: dict[str, Any]) -> str:
        """The revision of ``obj``, "" for a kind that has none."""
        return self.revision(obj) if self.revision is not None else ""

    def is_static(self, obj: dict[str, Any]) -> bool:
        """Whether no controller reconciles ``obj`` (a static object)."""
        return self.static is not None and self.static(obj)


KINDS: tuple[Kind, ...] = (
    Kind(
        GitRepository.info,
        ("source", "git"),
        ("gitrepository", "gitrepositories", "gitrepo"),
        _artifact_revision,
    ),
    Kind(
        OCIRepository.info,
        ("source", "oci"),
        ("ocirepository", "ocirepositories", "ocirepo"),
        _artifact_revision,
    ),
    Kind(Bucket.info, ("source", "bucket"), ("buckets",), _artifact_revision),
    Kind(
        HelmRepository.info,
        ("source", "helm"),
        ("helmrepository", "helmrepositories", "helmrepo"),
        _artifact_revision,
        static=_oci_helm_repository,
    ),
    Kind(
        HelmChart.info,
        ("source", "chart"),
        ("helmchart", "helmcharts", "hc"),
        _artifact_revision,
        _spec_source_ref,
    ),
    Kind(
        Kustomization.info,
        ("kustomization",),
        ("kustomizations", "ks"),
        _applied_revision,
        _spec_source_ref,
    ),
    Kind(
        HelmRelease.info,
        ("helmrelease",),
        ("helmreleases", "hr"),
        _release_revision,
        _release_source,
        release=True,
    ),
    Kind(Receiver.info, ("receiver",), ("receivers",), None),
    Kind(Alert.info, ("alert",), ("alerts",), None, judge=judge_alerts),
    Kind(Provider.info, ("alert-provider",), ("alert-providers",), None, judge=judge_providers),
    # As flux get images shows them: when each last scanned or ran, the policy's choice.
    Kind(
        ImageRepository.info,
        ("image", "repository"),
        ("imagerepository", "imagerepositories", "imagerepo"),
        None,
        columns=(
            ("LAST SCAN", _status_field("lastScanResult", "scanTime")),
            ("SUSPENDED", _suspended),
        ),
    ),
    Kind(
        ImagePolicy.info,
        ("image", "policy"),
        ("imagepolicy", "imagepolicies"),
        None,
        columns=(
            ("IMAGE", _status_field("latestRef", "name")),
            ("TAG", _status_field("latestRef", "tag")),
        ),
    ),
    Kind(
        ImageUpdateAutomation.info,
        ("image", "update"),
        ("imageupdateautomation", "imageupdateautomations", "imageupdate"),
        None,
        columns=(
            ("LAST RUN", _status_field("lastAutomationRunTime")),
            ("SUSPENDED", _suspended),
        ),
    ),
)
RECONCILED = tuple(kind for kind in KINDS if kind.reconciled)
"""The kinds a controller reconciles: ``weir reconcile`` knows these."""

# Other spellings of a first word.
_GROUP_ALIASES = {"source": ("sources",), "image": ("images",)}


def find_kind(kind: str) -> Kind | None:
    """The kind named by its Kubernetes ``kind`` (``GitRepository``), or None."""
    for candidate in KINDS:
        if candidate.info.kind == kind:
            return candidate
    return None


class AliasedGroup(click.Group):
    """A group whose commands also answer to other names (``ks`` for ``kustomization``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}

    def add_aliases(self, name: str, aliases: Sequence[str]) -> None:
        for alias in aliases:
            self.aliases[alias] = name

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # The command's own name in usage and errors, whichever alias was typed.
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


def group_of(parent: click.Group) -> Callable[[Callable[[], None]], AliasedGroup]:
    """Decorates a function into an ``AliasedGroup`` under ``parent``, its help the docstring."""

    def decorate(func: Callable[[], None]) -> AliasedGroup:
        group = AliasedGroup(func.__name__, callback=func, help=inspect.getdoc(func))
        parent.add_command(group)
        return group

    return decorate


def attach(
    verb: AliasedGroup,
    make: Callable[[Kind], click.Command],
    kinds: Sequence[Kind] = KINDS,
) -> None:
    """One command per kind under ``verb``, made by ``make``; two-word kinds in a subgroup."""
    for kind in kinds:
        parent = verb
        if len(kind.words) == 2:
            first = kind.words[0]
            existing = verb.commands.get(first)
            if existing is None:
                example = f"Example:\n  weir {verb.name} {first} {kind.words[-1]} NAME"
                existing = AliasedGroup(
                    first, help=f"{verb.name} {first}s: one command per kind.\n\n\b\n{example}"
                )
                verb.add_command(existing)
                verb.add_aliases(first, _GROUP_ALIASES.get(first, ()))
            assert isinstance(existing, AliasedGroup)
            parent = existing
        command = make(kind)
        command.name = kind.words[-1]
        parent.add_command(command)
        parent.add_aliases(command.name, kind.aliases)
