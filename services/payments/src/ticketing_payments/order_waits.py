"""Payments waiting for their order's copy: the requests of this replica, each woken as soon as any replica has
committed the copy it waits for, by a core NATS message that replica publishes right after its commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ticketing_common.errors import NotFoundError, ServiceUnavailableError

logger = logging.getLogger("ticketing.payments")

T = TypeVar("T")

# Core NATS only (outside the stream's subjects, so never stored): a lost message costs a waiter at most one
# re-check interval, never a wrong answer.
ORDER_COPIED = "payments.order-copied"
RECHECK_SECONDS = 1.0
ORDER_NOT_FOUND = "Order not found"
TOO_MANY_WAITING = "Too many payments are waiting for their orders: retry shortly"


class OrderNotCopiedYet(NotFoundError):
    """This service has no copy of the order (yet): its ``order.created`` may still be on its way."""

    default_message = ORDER_NOT_FOUND


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

    async def until_copied(self, order_id: uuid.UUID, attempt: Callable[[], Awaitable[T]], *, seconds: float) -> T:
        """``attempt()``, tried again while it raises :class:`OrderNotCopiedYet`, for up to ``seconds``: as soon
        as a replica commits the order's copy, and every ``RECHECK_SECONDS`` in case that news was lost.

        The waiter is registered before the try that precedes every wait, so a copy committed in between still
        wakes it. ``attempt`` must hold nothing (no database connection) between tries; beyond ``limit``
        waiters, 503.
        """
        try:
            return await attempt()
        except OrderNotCopiedYet:
            if seconds <= 0:
                raise
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with self.watch(order_id) as copied:
            while True:
                copied.clear()
                try:
                    return await attempt()
                except OrderNotCopiedYet:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(copied.wait(), min(remaining, RECHECK_SECONDS))

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

    @contextlib.contextmanager
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

    async def _on_copied(self, msg: Msg) -> None:
        if self._waiting and len(msg.data) == 16:
            for copied in self._waiting.get(uuid.UUID(bytes=msg.data), ()):
                copied.set()
