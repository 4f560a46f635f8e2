"""The cluster a Kustomization applies to, and who it applies as (Flux's runtime/client).

- ``spec.serviceAccountName``, else ``--default-service-account``: applying, pruning, health
  checks and inventory reads are made as ``system:serviceaccount:<namespace>:<name>`` (the
  user alone, as Flux). The controller's own requests (the Kustomization, its sources and
  Secrets, status) keep the controller's identity: they use its client, not the target's.
- ``spec.kubeConfig.secretRef``: the cluster of the kubeconfig in that Secret, under ``key``,
  else ``value``, else ``value.yaml``; an account named as above is impersonated there. Exec
  plugins and disabled TLS verification need ``--insecure-kubeconfig-exec`` and
  ``--insecure-kubeconfig-tls``; local file paths, auth-providers and ``as`` are never used.
  Flux drops all of these silently (fluxcd/pkg runtime/client KubeConfig); weir refuses them
  with a message that says why.
- ``spec.kubeConfig.configMapRef`` (cloud workload identity) is refused: weir has no providers.

Lifetimes: a local target is a view of the controller's client (same connections, same rate
limit) with one RestMapper shared by every run, since discovery is expensive. A remote client
and its mapper live for one ``Targets.open()`` block and are closed when it ends. That costs a
TLS handshake and one discovery per run, as Flux builds a client per run too, and needs no
cache: a rotated Secret, an exec token that expires or a Kustomization that is deleted leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers import safeyaml
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
from controllers.secrets import SecretData, SecretError, read_secret
from kustomize.api_v1 import Kustomization

__all__ = [
    "TargetCluster",
    "TargetOptions",
    "Targets",
    "check_kubeconfig",
    "kubeconfig_from_secret",
    "service_account_for",
    "service_account_user",
]

# Tried in this order when secretRef names no key, as Flux.
DEFAULT_KEYS = ("value", "value.yaml")


@dataclass(frozen=True)
class TargetOptions:
    """The controller flags that shape targets."""

    default_service_account: str = ""
    insecure_kubeconfig_exec: bool = False
    insecure_kubeconfig_tls: bool = False


@dataclass(frozen=True)
class TargetCluster:
    """Where one run applies: ``client`` (impersonating ``service_account`` of ``namespace``
    when there is one) and the ``mapper`` of that cluster; ``remote`` for a kubeconfig's."""

    client: KubeClient
    mapper: RestMapper
    namespace: str
    service_account: str | None
    remote: bool
    # The same cluster without impersonation: the controller's client, or the kubeconfig's.
    _unimpersonated: KubeClient = field(repr=False, compare=False)

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


def service_account_for(obj: Kustomization, default_service_account: str) -> str | None:
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


class Targets:
    """Opens the target of each run; keeps the local cluster's RestMapper across runs."""

    def __init__(self, options: TargetOptions | None = None) -> None:
        self.options = options or TargetOptions()
        self._local: tuple[KubeClient, RestMapper] | None = None

    def local_mapper(self, client: KubeClient) -> RestMapper:
        """The shared mapper of the controller's cluster; discovery reads the same for anyone."""
        if self._local is None or self._local[0] is not client:
            self._local = (client, RestMapper(client))
        return self._local[1]

    @contextlib.asynccontextmanager
    async def open(self, client: KubeClient, obj: Kustomization) -> AsyncIterator[TargetCluster]:
        """The target of ``obj`` for the length of the block; ``client`` is the controller's.

        Raises ``Stalling`` for a configMapRef and ``ReconcileError`` (retried) when the
        kubeconfig Secret, its key or its contents are unusable.
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
                reason=FAILED,
            )
        name = f"{namespace}/{ref.secret_ref.name}"
        try:
            secret = await read_secret(client, namespace, ref.secret_ref.name)
        except SecretError as err:
            raise ReconcileError(
                f"unable to read KubeConfig secret '{name}': {err.problem}", reason=FAILED
            ) from None
        config = kubeconfig_from_secret(secret, ref.secret_ref.key)
        try:
            check_kubeconfig(config, self.options)
            remote = await KubeClient.from_kubeconfig(config)
        except KubeConfigError as err:
            raise ReconcileError(f"KubeConfig secret '{name}': {err}", reason=FAILED) from None
        try:
            view = remote.impersonating(user) if user else remote
            mapper = RestMapper(view)
            yield TargetCluster(
                view, mapper, namespace, account, remote=True, _unimpersonated=remote
            )
        finally:
            await remote.close()
