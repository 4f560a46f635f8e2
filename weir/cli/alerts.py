"""Whether Alerts and Providers can be used, as ``weir get``, ``create`` and ``resume`` show it.

Flux's v1beta3 gives neither kind a status: the notification controller reads them when an
event arrives and reports a problem as a Warning event on the object. The commands judge them
the same way, with the controller's own checks, from what the cluster holds now (read with the
user's credentials):

- a Provider is usable when the Secrets it names (``secretRef``, ``certSecretRef``,
  ``proxySecretRef``) exist and, with them, ``notification.providers.resolve_target`` accepts
  it: a type weir sends, an address, the token its type needs, ...;
- an Alert is usable when every regular expression of its ``inclusionList`` and
  ``exclusionList`` compiles (RE2, as the controller and Flux compile them) and its Provider
  exists and is usable.

Each judgement is a Ready status and a message, as a condition would say them: ``True``,
``False`` with the first problem, or ``Unknown`` when a Secret cannot be read (a user who may
not read Secrets). Messages never hold a secret. Suspension is not judged: ``get`` shows it in
its own column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from controllers.kube import KubeClient
from controllers.secrets import SecretData, SecretError, SecretNotFound, read_secret
from notification.alerts import InvalidAlert, message_filter
from notification.api_v1beta3 import Alert, Provider
from notification.providers import ProviderError, resolve_target

__all__ = ["Judgement", "judge_alerts", "judge_providers"]

Judgement = tuple[str, str]


class _Lookups:
    """Providers and their judgements, read once per command however many Alerts name them."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._providers: dict[tuple[str, str], Judgement | None] = {}

    async def provider(self, namespace: str, name: str) -> Judgement | None:
        """The judgement of Provider ``namespace/name``, None when there is no such Provider."""
        if (namespace, name) not in self._providers:
            found = await self.client.get_or_none(Provider.info, namespace, name)
            judged = None if found is None else await _provider_judgement(self.client, found)
            self._providers[namespace, name] = judged
        return self._providers[namespace, name]


async def _provider_judgement(client: KubeClient, raw: dict[str, Any]) -> Judgement:
    try:
        provider = Provider.model_validate(raw)
    except ValidationError as err:
        return "False", f"not valid: {err.errors()[0]['msg']}"
    namespace = provider.metadata.namespace or ""
    spec = provider.spec
    secrets: list[SecretData | None] = []
    for ref in (spec.secret_ref, spec.cert_secret_ref, spec.proxy_secret_ref):
        try:
            secrets.append(None if ref is None else await read_secret(client, namespace, ref.name))
        except SecretNotFound as err:
            return "False", str(err)
        except SecretError as err:
            return "Unknown", str(err)
    try:
        resolve_target(provider, *secrets)
    except ProviderError as err:
        return "False", str(err)
    return "True", f"sends {spec.type} alerts"


async def _alert_judgement(lookups: _Lookups, raw: dict[str, Any]) -> Judgement:
    try:
        alert = Alert.model_validate(raw)
        message_filter(alert)
    except ValidationError as err:
        return "False", f"not valid: {err.errors()[0]['msg']}"
    except InvalidAlert as err:
        return "False", str(err)
    name = alert.spec.provider_ref.name
    judged = await lookups.provider(alert.metadata.namespace or "", name)
    if judged is None:
        return "False", f"provider '{name}' not found"
    status, message = judged
    if status != "True":
        return status, f"provider '{name}': {message}"
    return "True", f"sends to provider '{name}'"


async def judge_providers(
    client: KubeClient, providers: Sequence[dict[str, Any]]
) -> list[Judgement]:
    """(Ready, message) of each Provider."""
    return [await _provider_judgement(client, provider) for provider in providers]


async def judge_alerts(client: KubeClient, alerts: Sequence[dict[str, Any]]) -> list[Judgement]:
    """(Ready, message) of each Alert."""
    lookups = _Lookups(client)
    return [await _alert_judgement(lookups, alert) for alert in alerts]
