"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

A candidate takes the Lease when it is free or when its record has not changed for
``lease_duration`` by the candidate's own clock (so clock skew between replicas does not
matter); the leader renews every ``retry_period`` and gives up if it cannot renew within
``renew_deadline``. Writes carry the resourceVersion, so two candidates never both win.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import structlog

from controllers.api import micro_time_now
from controllers.kinds import LEASE
from controllers.kube import ApiError, KubeClient, NotFound, TransportError

__all__ = ["LeaderElector", "LostLeadership"]


log = structlog.get_logger()


class LostLeadership(Exception):
    """The Lease could not be renewed in time; the process must stop reconciling."""


@dataclass
class LeaderElector:
    """Competes for the Lease ``namespace/name`` as ``identity``."""

    client: KubeClient
    namespace: str
    name: str
    identity: str
    lease_duration: float = 35.0
    renew_deadline: float = 30.0
    retry_period: float = 5.0

    def __post_init__(self) -> None:
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease."""
        log.info("waiting for leadership", lease=f"{self.namespace}/{self.name}")
        while not await self._try_acquire_or_renew():  # noqa: ASYNC110 - polling is the protocol
            await asyncio.sleep(self.retry_period * random.uniform(1.0, 1.2))  # noqa: S311
        log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)

    async def hold(self) -> None:
        """Renew until cancelled; raise LostLeadership if a renewal deadline passes."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            if await self._try_acquire_or_renew():
                last_renewed = time.monotonic()
            elif time.monotonic() - last_renewed > self.renew_deadline:
                raise LostLeadership(f"could not renew lease {self.namespace}/{self.name}")

    async def release(self) -> None:
        """Hand the Lease back on a clean shutdown so a standby takes over at once."""
        if self._observed is None or self._holder(self._observed) != self.identity:
            return
        lease = dict(self._observed)
        lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
        try:
            await self.client.replace(LEASE, lease)
        except (ApiError, TransportError, OSError, TimeoutError) as err:
            log.warning("lease not released", error=str(err))

    @staticmethod
    def _holder(lease: dict[str, Any]) -> str | None:
        return (lease.get("spec") or {}).get("holderIdentity")

    async def _try_acquire_or_renew(self) -> bool:
        now = micro_time_now()
        try:
            lease = await self.client.get(LEASE, self.namespace, self.name)
        except NotFound:
            return await self._write(None, now)
        except (ApiError, TransportError, OSError, TimeoutError) as err:
            log.warning("lease not read", error=str(err))
            return False
        if lease.get("spec") != (self._observed or {}).get("spec"):
            self._observed, self._observed_at = lease, time.monotonic()
        holder = self._holder(lease)
        expired = time.monotonic() > self._observed_at + self.lease_duration
        if holder and holder != self.identity and not expired:
            return False
        return await self._write(lease, now)

    async def _write(self, lease: dict[str, Any] | None, now: str) -> bool:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": now,
        }
        try:
            if lease is None:
                spec.update(acquireTime=now, leaseTransitions=0)
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": spec,
                }
                written = await self.client.create(LEASE, body)
            else:
                old = lease.get("spec") or {}
                if self._holder(lease) == self.identity:
                    spec["acquireTime"] = old.get("acquireTime", now)
                    spec["leaseTransitions"] = old.get("leaseTransitions", 0)
                else:
                    spec["acquireTime"] = now
                    spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
                written = await self.client.replace(LEASE, {**lease, "spec": spec})
        except (ApiError, TransportError, OSError, TimeoutError) as err:
            log.debug("lease not written", error=str(err))
            return False
        self._observed, self._observed_at = written, time.monotonic()
        return True
