"""From an Alert that selected an event to a send: the Provider, its Secrets, the target.

The Provider comes from the informer (or a GET when the informer has not seen it yet), its
Secrets (``secretRef``, ``certSecretRef``, ``proxySecretRef``) are read when an event needs
them, as Flux reads them, and ``notification.providers`` turns both into a ``Target`` and
sends. Sends run in the background, at most ``max_sends`` at once: a dispatch waits for a free
slot, so a flood of events backs up in the event server's bounded queue instead of starting
tasks without end.

Problems are reported as Warning events, at most one per object and message per interval
(``Reporter``): on the Alert for what concerns it (its Provider is missing, a send failed),
on the Provider too when the Provider itself cannot be used (``ProviderError``, a Secret that
cannot be read).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger as BoundLogger

from controllers.api import CustomResource
from controllers.events import EventRecorder
from controllers.informer import Informer
from controllers.kube import KubeClient, KubeError
from controllers.secrets import SecretData, SecretError, read_secret
from notification.alerts import DuplicateFilter, FluxEvent, notification, provider_skips
from notification.api_v1beta3 import Alert, Provider
from notification.providers import DeliveryError, ProviderError, Target, deliver, resolve_target

__all__ = ["Dispatcher", "Reporter"]

log = structlog.get_logger()

# Flux's reasons for the Warning events it records on an Alert.
DISPATCH_FAILED = "NotificationDispatchFailed"
METADATA_CONFLICT = "MetadataAppendFailed"
INVALID_CONFIG = "InvalidConfig"
# A send takes at most the Provider's timeout (retries included, enforced by the providers);
# this much more is the last resort that frees a slot whatever happens.
SEND_MARGIN_SECONDS = 30.0
MAX_SENDS = 64


class Reporter:
    """Warning events on Alerts and Providers, each distinct one at most once per
    ``interval`` seconds per object, so a stream of events through a broken Alert does not
    become a stream of Kubernetes Events."""

    def __init__(self, recorder: EventRecorder, interval: float) -> None:
        self._recorder = recorder
        self._recent = DuplicateFilter(interval)

    async def warn(self, obj: CustomResource, reason: str, message: str) -> None:
        meta = obj.metadata
        key = "\0".join((obj.info.kind, meta.namespace or "", meta.name, reason, message))
        if self._recent.admit(key):
            await self._recorder.record(obj, "Warning", reason, message)


class Dispatcher:
    """Resolves the Provider of each Alert that selected an event, and sends through it."""

    def __init__(
        self,
        client: KubeClient,
        providers: Informer,
        reporter: Reporter,
        *,
        max_sends: int = MAX_SENDS,
    ) -> None:
        self._client = client
        self._providers = providers
        self._reporter = reporter
        self._slots = asyncio.Semaphore(max_sends)
        self._sends: set[asyncio.Task[None]] = set()

    async def dispatch(self, alert: Alert, event: FluxEvent) -> None:
        """Send ``event`` through ``alert``'s Provider in the background, once a send slot is
        free; problems are logged and reported, never raised."""
        alert_log = log.bind(
            alert=alert.key,
            provider=alert.spec.provider_ref.name,
            object=str(event.involved_object),
        )
        provider = await self._provider(alert, event, alert_log)
        if provider is None:
            return
        if provider.suspended:
            alert_log.debug("provider suspended, event not sent")
            return
        skipped = provider_skips(provider.spec.type, event)
        if skipped is not None:
            alert_log.info("event not sent to this provider type", reason=skipped)
            return
        target = await self._target(alert, provider, event, alert_log)
        if target is None:
            return
        body, conflicts = notification(event, alert)
        if conflicts:
            keys = {key: ", ".join(sources) for key, sources in conflicts.items()}
            alert_log.info("metadata key conflicts", conflicts=keys)
            await self._reporter.warn(
                alert,
                METADATA_CONFLICT,
                f"metadata key conflicts detected (keys {', '.join(keys)}): see the Alert API "
                "docs and Flux RFC 0008 for the order in which metadata sources apply",
            )
        await self._slots.acquire()
        task = asyncio.create_task(self._send(target, body, alert, provider, event, alert_log))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._slots.release()

    async def close(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the sends in flight, then cancel the rest."""
        if not self._sends:
            return
        _, pending = await asyncio.wait(set(self._sends), timeout=grace)
        if pending:
            log.warning("notifications cancelled at shutdown", count=len(pending))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _provider(
        self, alert: Alert, event: FluxEvent, alert_log: BoundLogger
    ) -> Provider | None:
        namespace = alert.metadata.namespace or ""
        name = alert.spec.provider_ref.name
        raw = self._providers.get(f"{namespace}/{name}")
        if raw is None:
            # Created a moment ago, perhaps: the informer may not have it yet.
            try:
                raw = await self._client.get_or_none(Provider.info, namespace, name)
            except KubeError as err:
                alert_log.warning("provider not read", error=str(err))
                return None
        if raw is None:
            alert_log.warning("provider not found")
            await self._reporter.warn(
                alert,
                DISPATCH_FAILED,
                f"failed to dispatch notification for {event.involved_object}: "
                f"provider '{namespace}/{name}' not found",
            )
            return None
        try:
            return Provider.model_validate(raw)
        except ValidationError as err:
            alert_log.warning("provider not valid", errors=err.error_count())
            await self._reporter.warn(
                alert,
                DISPATCH_FAILED,
                f"failed to dispatch notification for {event.involved_object}: "
                f"provider '{namespace}/{name}' is not valid",
            )
            return None

    async def _target(
        self, alert: Alert, provider: Provider, event: FluxEvent, alert_log: BoundLogger
    ) -> Target | None:
        namespace = provider.metadata.namespace or ""
        spec = provider.spec
        try:
            secrets: list[SecretData | None] = []
            for ref in (spec.secret_ref, spec.cert_secret_ref, spec.proxy_secret_ref):
                secrets.append(
                    None if ref is None else await read_secret(self._client, namespace, ref.name)
                )
            return resolve_target(provider, *secrets)
        except (SecretError, ProviderError) as err:
            problem = str(err)
        except KubeError as err:
            # The API server did not answer: not the Provider's fault, nothing to report on it.
            alert_log.warning("provider secret not read", error=str(err))
            return None
        alert_log.warning("provider cannot be used", error=problem)
        await self._reporter.warn(provider, INVALID_CONFIG, problem)
        await self._reporter.warn(
            alert,
            DISPATCH_FAILED,
            f"failed to dispatch notification for {event.involved_object}: provider "
            f"'{namespace}/{provider.metadata.name}': {problem}",
        )
        return None

    async def _send(
        self,
        target: Target,
        body: dict[str, Any],
        alert: Alert,
        provider: Provider,
        event: FluxEvent,
        alert_log: BoundLogger,
    ) -> None:
        try:
            async with asyncio.timeout(target.timeout + SEND_MARGIN_SECONDS):
                sent = await deliver(target, body, alert)
        except (DeliveryError, TimeoutError) as err:
            problem = str(err) or f"no answer within {target.timeout:g}s"
            alert_log.warning("notification not sent", error=problem)
            await self._reporter.warn(
                alert,
                DISPATCH_FAILED,
                f"failed to send notification for {event.involved_object}: {problem}",
            )
            return
        except ProviderError as err:
            alert_log.warning("provider cannot be used", error=str(err))
            await self._reporter.warn(provider, INVALID_CONFIG, str(err))
            return
        except Exception as err:
            # No traceback: its text could hold what the target holds (credentials).
            alert_log.error(
                "notification failed", error_type=type(err).__name__, error=target.redact(str(err))
            )
            return
        if sent:
            alert_log.info("notification sent", type=target.type)
        else:
            alert_log.debug("notification not for this provider type", type=target.type)
