"""In-process expiry timers: the punctual path of an expiry, in front of its durable JetStream schedule.

nats-server runs its scheduler at most once per 250 ms, so when many schedules are pending each fires up to
250 ms late. The replica that scheduled an order therefore also arms an asyncio timer for it; when it fires,
``fire`` publishes ``order.expired`` itself and purges the schedule. Such an order's schedule is written for a
grace period after ``expiresAt`` (:meth:`ExpiryTimers.schedule_time`), so it fires only when the timer did not:
the replica stopped or crashed, or NATS was unreachable at that moment. Timers are memory only and die with the
process; nothing is lost, the schedule is the durable copy.

Timers that come due while a previous batch is being fired are fired together in the next batch: one
transaction and one round of publishes for all of them, so a burst of expiries costs fewer round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice

from ticketing_expiration.schedules import as_utc

logger = logging.getLogger("ticketing.expiration")

Fire = Callable[[Sequence[uuid.UUID]], Awaitable[None]]
"""Expires these orders now (those not cancelled meanwhile)."""

BATCH_SIZE = 200


class ExpiryTimers:
    """The armed timers of one process, keyed by order; at most ``max_armed``, none beyond ``horizon_seconds``."""

    def __init__(self, fire: Fire, *, horizon_seconds: float, max_armed: int, grace_seconds: float) -> None:
        self._fire = fire
        self._horizon = horizon_seconds
        self._max_armed = max_armed
        self._grace = timedelta(seconds=grace_seconds)
        self._armed: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._due: dict[uuid.UUID, float] = {}  # order -> loop time it was due at, in coming-due order
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._armed)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._armed or order_id in self._due

    @property
    def horizon_seconds(self) -> float:
        """How far ahead an expiry may be to get a timer."""
        return self._horizon

    @property
    def free(self) -> int:
        """How many more timers may be armed."""
        return max(0, self._max_armed - len(self._armed))

    def accepts(self, expires_at: datetime) -> bool:
        """Whether a timer would be armed for an expiry at ``expires_at`` now."""
        remaining = (as_utc(expires_at) - datetime.now(UTC)).total_seconds()
        return not self._closed and self.free > 0 and remaining <= self._horizon

    def schedule_time(self, expires_at: datetime) -> datetime:
        """When the schedule of an order with a timer fires: a grace after the timer, which purges it first."""
        return max(as_utc(expires_at), datetime.now(UTC)) + self._grace

    def arm(self, order_id: uuid.UUID, expires_at: datetime) -> bool:
        """Fire the order's expiry at ``expires_at`` (at once if it has passed); False after :meth:`close`."""
        if self._closed or order_id in self:
            return False
        loop = asyncio.get_running_loop()
        delay = (as_utc(expires_at) - datetime.now(UTC)).total_seconds()
        self._armed[order_id] = loop.call_at(loop.time() + max(0.0, delay), self._come_due, order_id)
        if self._worker is None:
            self._worker = loop.create_task(self._run(), name="expiry-timers")
        return True

    def cancel(self, order_id: uuid.UUID) -> None:
        """Disarm the order's timer, if this process holds one."""
        handle = self._armed.pop(order_id, None)
        if handle is not None:
            handle.cancel()
        self._due.pop(order_id, None)

    async def close(self) -> None:
        """Disarm every timer and stop firing; their schedules remain in JetStream and fire instead."""
        self._closed = True
        for handle in self._armed.values():
            handle.cancel()
        self._armed.clear()
        self._due.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    def _come_due(self, order_id: uuid.UUID) -> None:
        handle = self._armed.pop(order_id, None)
        if handle is not None:
            self._due[order_id] = handle.when()
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._due:
                batch = list(islice(self._due, BATCH_SIZE))
                # One that waited longer than the grace (the process was stalled) is left to its schedule, which
                # fires about now: publishing it too would only make a duplicate.
                stale_before = loop.time() - self._grace.total_seconds()
                batch = [order_id for order_id in batch if self._due.pop(order_id) > stale_before]
                if not batch:
                    continue
                try:
                    await self._fire(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Nothing to retry: each order's schedule fires a grace later.
                    logger.warning("expiry timers failed", extra={"orders": len(batch), "error": repr(exc)})
