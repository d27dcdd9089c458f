"""Payments waiting for their order's copy: the requests of this replica, each woken as soon as any replica has
committed the copy it waits for, by a core NATS message that replica publishes right after its commit."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ticketing_common.errors import ServiceUnavailableError

logger = logging.getLogger("ticketing.payments")

# Core NATS only (outside the stream's subjects, so never stored): a lost message costs a waiter at most one
# re-check interval, never a wrong answer.
ORDER_COPIED = "payments.order-copied"
TOO_MANY_WAITING = "Too many payments are waiting for their orders: retry shortly"


class OrderCopyWaits:
    """The waiting requests of one process, by order id, at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._count = 0
        self._nc: NATS | None = None

    @property
    def waiting(self) -> int:
        return self._count

    @property
    def hears_other_replicas(self) -> bool:
        return self._nc is not None

    @contextmanager
    def watch(self, order_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever a replica commits ``order_id``'s copy from now on; 503 beyond ``limit``."""
        if self._count >= self.limit:
            error = ServiceUnavailableError(TOO_MANY_WAITING)
            error.headers = {"Retry-After": "1"}
            raise error
        copied = asyncio.Event()
        waiters = self._waiting.setdefault(order_id, set())
        waiters.add(copied)
        self._count += 1
        try:
            yield copied
        finally:
            self._count -= 1
            waiters.discard(copied)
            if not waiters:
                del self._waiting[order_id]

    async def copied(self, order_id: uuid.UUID) -> None:
        """This replica has committed the order's copy: tell every replica, this one included (NATS echoes a
        connection's own messages), so one path wakes all waiters."""
        if self._nc is None:
            return
        try:
            await self._nc.publish(ORDER_COPIED, order_id.bytes)  # buffered by nats-py while it reconnects
        except Exception as exc:
            logger.warning("cannot announce an order copy", extra={"order_id": str(order_id), "error": repr(exc)})

    async def attach(self, nc: NATS) -> None:
        """Hear every replica's copies (nats-py subscribes again by itself after a reconnection)."""
        await nc.subscribe(ORDER_COPIED, cb=self._on_copied)
        await nc.flush()
        self._nc = nc

    async def _on_copied(self, msg: Msg) -> None:
        if self._waiting and len(msg.data) == 16:
            for copied in self._waiting.get(uuid.UUID(bytes=msg.data), ()):
                copied.set()
