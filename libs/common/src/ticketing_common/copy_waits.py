"""Requests waiting for a copy this service keeps of another service's data (an order, an event, an admission):
the requests of one process, by the copy's key, each woken as soon as any replica has committed that copy, by a
core NATS message the committing replica publishes right after its commit.

A copy follows its owner's event by a few milliseconds to a few seconds, and a client acts on the owner's answer
at once (it pays for the order it was just given, it orders right after it was admitted): instead of answering
"not found" and making every client retry, the request waits a little for the copy. How a service uses it:

- its use case (the ``attempt``) raises a :class:`NotCopiedYet` (mixed into the error it answers when the wait
  is over) while the copy it needs is missing, naming the copy's key when the caller could not know it;
- it builds one :class:`CopyWaits` per process on a subject of its own, and attaches it to NATS once connected;
- its listener calls :meth:`CopyWaits.copied` with the key once the copy's transaction has committed
  (``Listener.committed``).

Core NATS only (the subject must be outside the stream's subjects, so nothing is stored): a lost message costs a
waiter at most one re-check interval, never a wrong answer. Each try is the caller's own short work: a waiting
request holds no database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ticketing_common.errors import ServiceUnavailableError

logger = logging.getLogger("ticketing.copy_waits")

T = TypeVar("T")

RECHECK_SECONDS = 1.0
"""A waiter tries again this often even without news (read at each wait: tests may change it)."""
TOO_MANY_WAITING = "Too many requests are waiting: retry shortly"


class NotCopiedYet(Exception):
    """Mixed into the error an attempt raises while a copy it needs has not arrived (yet): :meth:`CopyWaits.until_copied`
    tries again when it arrives, and lets the error through once its time is up.

    ``copy_key`` names the copy when the attempt found out which one it needs (an event's, say, read from the
    ticket); None means the key the wait was started with.
    """

    copy_key: uuid.UUID | None = None


class CopyWaits:
    """The waiting requests of one process, by copy key, at most ``limit`` at once; ``subject`` is the core NATS
    subject on which every replica of the service announces the copies it committed."""

    def __init__(self, *, subject: str, limit: int, too_many_message: str = TOO_MANY_WAITING) -> None:
        self.subject = subject
        self.limit = limit
        self.too_many_message = too_many_message
        self._waiting: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._count = 0
        self._nc: NATS | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting now in this process."""
        return self._count

    @property
    def hears_other_replicas(self) -> bool:
        return self._nc is not None

    async def until_copied(self, key: uuid.UUID | None, attempt: Callable[[], Awaitable[T]], *, seconds: float) -> T:
        """``attempt()``, tried again while it raises :class:`NotCopiedYet`, for up to ``seconds``: as soon as a
        replica commits the copy it misses, and every ``RECHECK_SECONDS`` in case that news was lost. The copy
        is the one the error names (``copy_key``), else ``key``; a later try may name another (a second copy
        needed), which is then waited for in the same time.

        The waiter is registered under the key before the try that precedes every wait, so a copy committed in
        between still wakes it. ``attempt`` must hold nothing (no database connection) between tries; beyond
        ``limit`` waiters, 503 with ``Retry-After: 1``.
        """
        try:
            return await attempt()
        except NotCopiedYet as missing:
            if seconds <= 0:
                raise
            key = missing.copy_key or key
            if key is None:
                raise ValueError("a wait for a copy needs its key") from missing
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            with self.watch(key) as copied:
                while True:
                    copied.clear()
                    try:
                        return await attempt()
                    except NotCopiedYet as missing:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            raise
                        needed = missing.copy_key or key
                    if needed != key:
                        break  # another copy is missing now: watch for that one instead
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(copied.wait(), min(remaining, RECHECK_SECONDS))
            key = needed

    async def copied(self, key: uuid.UUID) -> None:
        """This replica has committed the copy named ``key``: tell every replica, this one included (NATS echoes
        a connection's own messages), so one path wakes all waiters. Never raises."""
        if self._nc is None:
            return
        try:
            await self._nc.publish(self.subject, key.bytes)  # buffered by nats-py while it reconnects
        except Exception as exc:
            logger.warning(
                "cannot announce a copy", extra={"subject": self.subject, "key": str(key), "error": repr(exc)}
            )

    async def attach(self, nc: NATS) -> None:
        """Hear every replica's copies (nats-py subscribes again by itself after a reconnection)."""
        await nc.subscribe(self.subject, cb=self._on_copied)
        await nc.flush()
        self._nc = nc

    @contextlib.contextmanager
    def watch(self, key: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever a replica commits the copy named ``key`` from now on; 503 beyond ``limit``."""
        if self._count >= self.limit:
            error = ServiceUnavailableError(self.too_many_message)
            error.headers = {"Retry-After": "1"}
            raise error
        copied = asyncio.Event()
        waiters = self._waiting.setdefault(key, set())
        waiters.add(copied)
        self._count += 1
        try:
            yield copied
        finally:
            self._count -= 1
            waiters.discard(copied)
            if not waiters:
                del self._waiting[key]

    async def _on_copied(self, msg: Msg) -> None:
        if self._waiting and len(msg.data) == 16:
            for copied in self._waiting.get(uuid.UUID(bytes=msg.data), ()):
                copied.set()
