"""The cluster an object's objects go to, and who they are written as (Flux's runtime/client):
the Kustomization's and the HelmRelease's ``serviceAccountName`` and ``kubeConfig``.

- ``spec.serviceAccountName``, else ``--default-service-account``: the object's writes and
  reads on its target (apply, prune, health checks, inventory; Helm's actions, drift, release
  storage) are made as ``system:serviceaccount:<namespace>:<name>`` (the user alone, as Flux).
  The controller's own requests (the object, its sources and Secrets, status) keep the
  controller's identity: they use its client, not the target's.
- ``spec.kubeConfig.secretRef``: the cluster of the kubeconfig in that Secret, under ``key``,
  else ``value``, else ``value.yaml``; an account named as above is impersonated there. Exec
  plugins and disabled TLS verification need ``--insecure-kubeconfig-exec`` and
  ``--insecure-kubeconfig-tls``; local file paths, auth-providers and ``as`` are never used.
  Flux drops all of these silently (fluxcd/pkg runtime/client KubeConfig); weir refuses them
  with a message that says why.
- ``spec.kubeConfig.configMapRef`` (cloud workload identity) is refused: weir has no providers.

A library that makes its own Kubernetes client (Helm's) is given
:attr:`TargetCluster.kubeconfig`: the current context of the Secret's kubeconfig alone, with
only the keys weir's own client reads (so it can read no file and run nothing weir would not),
and :attr:`TargetCluster.user` to impersonate.

Lifetimes: a local target is a view of the controller's client (same connections, same rate
limit) with one RestMapper shared by every run, since discovery is expensive. A remote client
and its mapper live for one ``Targets.open()`` block and are closed when it ends. That costs a
TLS handshake and one discovery per run, as Flux builds a client per run too, and needs no
cache: a rotated Secret, an exec token that expires or an object that is deleted leaves
nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controllers import safeyaml
from controllers.api import ObjectMeta
from controllers.apitypes import SecretKeyReference
from controllers.conditions import FAILED
from controllers.discovery import RestMapper
from controllers.kinds import SERVICE_ACCOUNT
from controllers.kube import (
    ApiError,
    KubeClient,
    KubeConfigError,
    current_cluster_and_user,
)
from controllers.reconcile import ReconcileError, Stalling
from controllers.secrets import SecretData, SecretError, SecretNotFound, read_secret

__all__ = [
    "KubeConfigSecretNotFound",
    "TargetCluster",
    "TargetOptions",
    "Targets",
    "add_target_flags",
    "check_kubeconfig",
    "kubeconfig_from_secret",
    "self_contained_kubeconfig",
    "service_account_for",
    "service_account_user",
    "target_options",
]

# Tried in this order when secretRef names no key, as Flux.
DEFAULT_KEYS = ("value", "value.yaml")
# What weir's client reads of a kubeconfig's cluster and user (controllers.kube), and so all
# that a library making its own client is given.
_CLUSTER_KEYS = (
    "server",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "tls-server-name",
    "proxy-url",
)
_USER_KEYS = ("client-certificate-data", "client-key-data", "token", "username", "password", "exec")


class KubeConfigSource(Protocol):
    """``spec.kubeConfig`` of any kind."""

    @property
    def config_map_ref(self) -> object | None: ...

    @property
    def secret_ref(self) -> SecretKeyReference | None: ...


class TargetSpec(Protocol):
    @property
    def service_account_name(self) -> str | None: ...

    @property
    def kube_config(self) -> KubeConfigSource | None: ...


class Targeting(Protocol):
    """An object with a target: a Kustomization, a HelmRelease."""

    @property
    def metadata(self) -> ObjectMeta: ...

    @property
    def spec(self) -> TargetSpec: ...


class KubeConfigSecretNotFound(ReconcileError):
    """The ``kubeConfig`` Secret does not exist (on deletion, Flux gives up on the target)."""


@dataclass(frozen=True)
class TargetOptions:
    """The controller flags that shape targets."""

    default_service_account: str = ""
    insecure_kubeconfig_exec: bool = False
    insecure_kubeconfig_tls: bool = False


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """Flux's flags for targets, on a controller's command line."""
    parser.add_argument(
        "--default-service-account",
        default="",
        help="service account to impersonate when an object names none",
    )
    parser.add_argument(
        "--insecure-kubeconfig-exec",
        action="store_true",
        help="allow exec plugins in the kubeconfigs of spec.kubeConfig",
    )
    parser.add_argument(
        "--insecure-kubeconfig-tls",
        action="store_true",
        help="allow kubeconfigs of spec.kubeConfig to skip TLS verification",
    )


def target_options(args: argparse.Namespace) -> TargetOptions:
    """The options the flags of :func:`add_target_flags` set."""
    return TargetOptions(
        default_service_account=args.default_service_account,
        insecure_kubeconfig_exec=args.insecure_kubeconfig_exec,
        insecure_kubeconfig_tls=args.insecure_kubeconfig_tls,
    )


@dataclass(frozen=True)
class TargetCluster:
    """Where one run applies: ``client`` (impersonating ``service_account`` of ``namespace``
    when there is one) and the ``mapper`` of that cluster; ``remote`` for a kubeconfig's,
    whose self-contained ``kubeconfig`` is kept for libraries that make their own client."""

    client: KubeClient
    mapper: RestMapper
    namespace: str
    service_account: str | None
    remote: bool
    # The same cluster without impersonation: the controller's client, or the kubeconfig's.
    _unimpersonated: KubeClient = field(repr=False, compare=False)
    kubeconfig: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def user(self) -> str | None:
        """The user requests are made as, when an account is impersonated."""
        if self.service_account is None:
            return None
        return service_account_user(self.namespace, self.service_account)

    async def service_account_exists(self) -> bool:
        """Whether the impersonated ServiceAccount exists on the target cluster; True with none.

        On deletion Flux skips pruning when the account is gone, as every request would be
        forbidden. Flux looks on the local cluster even for a remote target (fluxcd/pkg#959);
        this looks where the account is used. Only a 404 counts as gone.
        """
        if self.service_account is None:
            return True
        try:
            account = await self._unimpersonated.get_or_none(
                SERVICE_ACCOUNT, self.namespace, self.service_account
            )
        except ApiError:
            return True
        return account is not None


def service_account_user(namespace: str, name: str) -> str:
    """The user name Kubernetes gives a ServiceAccount."""
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_for(obj: Targeting, default_service_account: str) -> str | None:
    """The account to impersonate: the spec's, else the controller default, else none."""
    return obj.spec.service_account_name or default_service_account or None


def kubeconfig_from_secret(secret: SecretData | Mapping[str, Any], key: str | None) -> Any:
    """The parsed kubeconfig under ``key`` of ``secret`` (its data, or the Secret object),
    else under ``value`` or ``value.yaml``; ``ReconcileError`` if there is none or it is not
    YAML."""
    data = secret if isinstance(secret, SecretData) else SecretData.from_object(secret)
    found = key if key else next((k for k in DEFAULT_KEYS if k in data), None)
    if found is None or found not in data:
        wanted = key or DEFAULT_KEYS[0]
        raise ReconcileError(
            f"KubeConfig secret '{data.ref}' does not contain a '{wanted}' key with a kubeconfig",
            reason=FAILED,
        )
    where = f"KubeConfig secret '{data.ref}' key '{found}'"
    message = f"{where} does not hold a YAML kubeconfig"
    try:
        return safeyaml.load(data.binary(found), what=where)
    except SecretError:
        raise ReconcileError(message, reason=FAILED) from None
    except safeyaml.YAMLLoadError as err:
        # A limit crossed is worth naming; a syntax error is not.
        raise ReconcileError(message if err.limit is None else str(err), reason=FAILED) from None


def check_kubeconfig(config: Any, options: TargetOptions) -> None:
    """Refuse what the controller flags do not allow in the current context."""
    cluster, user = current_cluster_and_user(config)
    if "exec" in user and not options.insecure_kubeconfig_exec:
        raise KubeConfigError(
            "kubeconfig user runs an exec plugin, refused unless the controller runs with "
            "--insecure-kubeconfig-exec"
        )
    if cluster.get("insecure-skip-tls-verify") and not options.insecure_kubeconfig_tls:
        raise KubeConfigError(
            "kubeconfig disables TLS verification (insecure-skip-tls-verify), refused unless "
            "the controller runs with --insecure-kubeconfig-tls"
        )


def self_contained_kubeconfig(config: Any) -> dict[str, Any]:
    """The current context of ``config`` alone, with only the cluster and user keys weir's
    client reads; call it on a kubeconfig that client accepted (no file, no ``as``)."""
    cluster, user = current_cluster_and_user(config)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "target", "cluster": _only(cluster, _CLUSTER_KEYS)}],
        "users": [{"name": "target", "user": _only(user, _USER_KEYS)}],
        "contexts": [{"name": "target", "context": {"cluster": "target", "user": "target"}}],
        "current-context": "target",
    }


def _only(section: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: section[key] for key in keys if key in section}


class Targets:
    """Opens the target of each run; keeps the local cluster's RestMapper across runs.

    ``error_reason`` is the condition reason of an unusable kubeconfig (the kustomize
    controller's ``ReconciliationFailed``, the helm controller's ``RESTClientError``)."""

    def __init__(self, options: TargetOptions | None = None, *, error_reason: str = FAILED) -> None:
        self.options = options or TargetOptions()
        self.error_reason = error_reason
        self._local: tuple[KubeClient, RestMapper] | None = None

    def local_mapper(self, client: KubeClient) -> RestMapper:
        """The shared mapper of the controller's cluster; discovery reads the same for anyone."""
        if self._local is None or self._local[0] is not client:
            self._local = (client, RestMapper(client))
        return self._local[1]

    @contextlib.asynccontextmanager
    async def open(self, client: KubeClient, obj: Targeting) -> AsyncIterator[TargetCluster]:
        """The target of ``obj`` for the length of the block; ``client`` is the controller's.

        Raises ``Stalling`` for a configMapRef, ``KubeConfigSecretNotFound`` when the
        kubeconfig Secret does not exist and ``ReconcileError`` (retried) when it, its key or
        its contents are unusable.
        """
        namespace = obj.metadata.namespace or ""
        account = service_account_for(obj, self.options.default_service_account)
        user = service_account_user(namespace, account) if account else None
        ref = obj.spec.kube_config
        if ref is None:
            view = client.impersonating(user) if user else client
            mapper = self.local_mapper(client)
            yield TargetCluster(
                view, mapper, namespace, account, remote=False, _unimpersonated=client
            )
            return
        if ref.secret_ref is None:
            raise Stalling(
                "spec.kubeConfig.configMapRef (workload identity) is not supported by weir; "
                "use spec.kubeConfig.secretRef",
                reason=self.error_reason,
            )
        name = f"{namespace}/{ref.secret_ref.name}"
        try:
            secret = await read_secret(client, namespace, ref.secret_ref.name)
        except SecretError as err:
            message = f"unable to read KubeConfig secret '{name}': {err.problem}"
            if isinstance(err, SecretNotFound):
                raise KubeConfigSecretNotFound(message, reason=self.error_reason) from None
            raise ReconcileError(message, reason=self.error_reason) from None
        try:
            config = kubeconfig_from_secret(secret, ref.secret_ref.key)
        except ReconcileError as err:
            raise ReconcileError(str(err), reason=self.error_reason) from None
        try:
            check_kubeconfig(config, self.options)
            remote = await KubeClient.from_kubeconfig(config)
        except KubeConfigError as err:
            raise ReconcileError(
                f"KubeConfig secret '{name}': {err}", reason=self.error_reason
            ) from None
        try:
            view = remote.impersonating(user) if user else remote
            mapper = RestMapper(view)
            yield TargetCluster(
                view,
                mapper,
                namespace,
                account,
                remote=True,
                _unimpersonated=remote,
                kubeconfig=self_contained_kubeconfig(config),
            )
        finally:
            await remote.close()
