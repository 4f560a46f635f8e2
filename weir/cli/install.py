"""``weir install``: weir's controllers in the cluster, or their manifests (``--export``).

The objects are ``weir.bundle``'s. They are applied as ``flux install`` applies them, with
server-side apply (field manager ``weir``, conflicts forced): the CRDs first, until each is
Established, then the rest in the bundle's order; then the command waits until every
Deployment has rolled out. Applying the same bundle again changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

from controllers.discovery import RestMapper
from controllers.kube import APPLY_PATCH, KubeClient
from controllers.wait import Observed, wait_until
from weir.bundle import (
    COMPONENTS,
    DEFAULT_COMPONENTS,
    DEFAULT_IMAGE_REPOSITORY,
    EXTRA_COMPONENTS,
    WEIR_VERSION,
    BundleOptions,
    component_named,
    render,
)
from weir.cli.app import CliError, Exit, Session, cluster_command, err_console, main, note
from weir.cli.output import to_yaml

__all__ = [
    "CRD_KIND",
    "Target",
    "apply_objects",
    "components_options",
    "established",
    "install",
    "install_objects",
    "rollout_problem",
    "title_of",
    "wait_for",
]

FIELD_MANAGER = "weir"
CRD_KIND = "CustomResourceDefinition"


def _names(value: str, choices: Sequence[str]) -> tuple[str, ...]:
    """weir's component names for the comma-separated ``value``, each one of ``choices``
    (weir's names or Flux's, ``component_named``); ``click.BadParameter`` otherwise."""
    names = []
    for word in (word.strip() for word in value.split(",")):
        component = component_named(word) if word in choices else None
        if word and component is None:
            raise click.BadParameter(
                f"{word!r}: choose among {', '.join(choices)}, comma-separated"
            )
        if component is not None:
            names.append(component.name)
    return tuple(dict.fromkeys(names))


def _components(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    names = _names(value, tuple(dict.fromkeys((*COMPONENTS, *_FLUX_EXTRAS))))
    if not names:
        raise click.BadParameter(f"choose among {', '.join(COMPONENTS)}, comma-separated")
    return names


def _extras(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    return _names(value, tuple(dict.fromkeys((*_FLUX_EXTRAS, *EXTRA_COMPONENTS))))


# Flux's names of the extra components: a Flux user's --components-extra works unchanged.
_FLUX_EXTRAS = tuple(name for extra in EXTRA_COMPONENTS for name in COMPONENTS[extra].flux_names)

Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def components_options(command: Decorated) -> Decorated:
    """``--components`` and ``--components-extra``, as ``flux install`` takes them, passed to
    ``command`` together as ``components``: weir's names of the chosen controllers."""

    @functools.wraps(command)
    def merged(
        *args: Any, components: tuple[str, ...], components_extra: tuple[str, ...], **kwargs: Any
    ) -> Any:
        return command(
            *args, components=tuple(dict.fromkeys((*components, *components_extra))), **kwargs
        )

    with_extras = click.option(
        "--components-extra",
        default="",
        callback=_extras,
        help="controllers beyond --components, comma-separated: "
        f"{', '.join(_FLUX_EXTRAS)} (Flux's names; weir runs both in one "
        f"{', '.join(EXTRA_COMPONENTS)}).",
    )(merged)
    return cast(
        Decorated,
        click.option(
            "--components",
            default=",".join(DEFAULT_COMPONENTS),
            show_default=True,
            callback=_components,
            help="the controllers, comma-separated.",
        )(with_extras),
    )


@dataclass(frozen=True)
class Target:
    """One object to wait for (``controllers.wait.WatchedObject``)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Target:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])


def title_of(obj: dict[str, Any]) -> str:
    """``Deployment flux-system/source-controller``, ``ClusterRole weir-view-flux-system``."""
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta['name']}"


def established(crd: dict[str, Any]) -> bool:
    """Whether the API server serves the CRD's kind."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def rollout_problem(deployment: dict[str, Any]) -> str | None:
    """Why the Deployment has not rolled out, as ``kubectl rollout status`` judges it (every
    replica of the current generation updated and available, none of an old one left);
    None when it has."""
    meta = deployment["metadata"]
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return str(progressing.get("message") or "progress deadline exceeded")
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "its new generation is not observed yet"
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    if status.get("replicas", 0) > updated:
        return "old replicas are still terminating"
    available = status.get("availableReplicas", 0)
    if available < wanted:
        return f"{available} of {wanted} replicas available"
    # The deployment controller's last status write of a rollout (DeploymentComplete).
    if progressing and progressing.get("reason") != "NewReplicaSetAvailable":
        return str(progressing.get("message") or "still progressing")
    return None


async def wait_for(
    client: KubeClient,
    mapper: RestMapper,
    objects: Sequence[dict[str, Any]],
    problem: Callable[[dict[str, Any] | None], str | None],
    timeout: float,
) -> None:
    """Wait until ``problem`` is None for every one of ``objects`` (as it is in the cluster,
    None when absent); on timeout, raise ``CliError`` naming the first still waited for."""
    targets = [Target.of(obj) for obj in objects]

    def done(seen: Sequence[Observed]) -> bool:
        return all(problem(observed.obj) is None for observed in seen)

    seen, ok = await wait_until(client, mapper, targets, done, timeout)
    if ok:
        return
    for obj, observed in zip(objects, seen, strict=True):
        why = observed.unknown_kind or problem(observed.obj)
        if why is not None:
            raise CliError(
                f"timed out after {timeout:g}s waiting for {title_of(obj)}: {why}", Exit.TIMEOUT
            )


async def apply_objects(
    client: KubeClient, mapper: RestMapper, objects: Sequence[dict[str, Any]]
) -> None:
    """Server-side apply each object, saying whether it was created, configured or unchanged."""
    for obj in objects:
        info = await mapper.resource_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace")
        before = await client.get_or_none(info, namespace, meta["name"])
        after = await client.patch(
            info,
            namespace,
            meta["name"],
            obj,
            content_type=APPLY_PATCH,
            field_manager=FIELD_MANAGER,
            force=True,
        )
        if before is None:
            outcome = "created"
        elif before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
            outcome = "unchanged"
        else:
            outcome = "configured"
        note(f"  {title_of(obj)} {outcome}")


def _crd_problem(crd: dict[str, Any] | None) -> str | None:
    if crd is None:
        return "not found"
    return None if established(crd) else "not established yet"


def _deployment_problem(deployment: dict[str, Any] | None) -> str | None:
    return "not found" if deployment is None else rollout_problem(deployment)


@main.command()
@components_options
@click.option("--export", is_flag=True, help="print the manifests instead of applying them.")
@click.option(
    "--image-repository",
    default=DEFAULT_IMAGE_REPOSITORY,
    show_default=True,
    help="the controllers' image, without its tag.",
)
@click.option("--image-tag", default=WEIR_VERSION, show_default=True, help="the image's tag.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "error"]),
    default="info",
    show_default=True,
    help="the controllers' log level.",
)
@click.option(
    "--concurrent",
    type=click.IntRange(min=1),
    default=None,
    help="workers per kind (default: the controller's own, 2 for source, 4 for kustomize).",
)
@click.option(
    "--watch-all-namespaces/--no-watch-all-namespaces",
    default=True,
    show_default=True,
    help="reconcile objects in every namespace, or only in the install's.",
)
@click.option(
    "--network-policy/--no-network-policy",
    default=True,
    show_default=True,
    help="Flux's NetworkPolicies for the namespace.",
)
@click.option(
    "--cluster-domain",
    default="cluster.local",
    show_default=True,
    help="the cluster's DNS domain, in the artifact Service's address.",
)
@click.option(
    "--no-cross-namespace-refs",
    is_flag=True,
    help="lockdown: refuse references to objects in other namespaces.",
)
@click.option(
    "--no-remote-bases",
    is_flag=True,
    help="lockdown: refuse kustomize bases and components from remote locations.",
)
@click.option(
    "--default-service-account",
    default="",
    metavar="NAME",
    help="lockdown: apply as this ServiceAccount when a Kustomization names none.",
)
@cluster_command
async def install(session: Session, export: bool, **flags: Any) -> None:
    """Install or upgrade weir's controllers, or print their manifests (--export).

    The CRDs first, then the namespace, RBAC, Services and Deployments, applied server-side;
    then it waits until every controller's Deployment is available.

    \b
    Examples:
      weir install
      weir install --components=source-controller --export > weir.yaml
      weir install --components-extra=image-reflector-controller,image-automation-controller
      weir install -n weir-system --no-cross-namespace-refs --default-service-account=default
    """
    # The flags are named as BundleOptions' fields.
    options = BundleOptions(namespace=session.namespace, **flags)
    objects = render(options)
    if export:
        click.echo(to_yaml(objects), nl=False)
        return
    note(f"► installing {', '.join(options.components)} in the {session.namespace} namespace")
    await install_objects(await session.client(), objects, session.timeout)
    note("✔ install finished")


async def install_objects(
    client: KubeClient, objects: Sequence[dict[str, Any]], timeout: float
) -> None:
    """Apply a rendered bundle: the CRDs until established, then the rest until every
    Deployment has rolled out (``weir install``, ``weir bootstrap``)."""
    mapper = RestMapper(client)
    crds = [obj for obj in objects if obj["kind"] == CRD_KIND]
    rest = [obj for obj in objects if obj["kind"] != CRD_KIND]
    await apply_objects(client, mapper, crds)
    with err_console.status("waiting for the CustomResourceDefinitions to be established"):
        await wait_for(client, mapper, crds, _crd_problem, timeout)
    note("✔ CustomResourceDefinitions established")
    await apply_objects(client, mapper, rest)
    deployments = [obj for obj in rest if obj["kind"] == "Deployment"]
    with err_console.status("waiting for the controllers to roll out"):
        await wait_for(client, mapper, deployments, _deployment_problem, timeout)
    for deployment in deployments:
        note(f"✔ {title_of(deployment)} is available")
