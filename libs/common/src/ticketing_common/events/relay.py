"""The outbox relay: sends pending outbox rows to JetStream, then marks them sent.

It wakes right after any commit of its sessionmaker that wrote outbox rows (``publisher.on_events_committed``) and
at least twice a second for rows other processes left behind (a replica that crashed), claims rows with
``FOR UPDATE SKIP LOCKED`` so replicas never send the same row at once, and publishes with ``Nats-Msg-Id``
so a crash between publishing and marking sent is absorbed by JetStream's duplicate window (and, beyond it,
by every listener's inbox). NATS or PostgreSQL outages only delay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from nats.js import JetStreamContext
from sqlalchemy import Text, bindparam, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ticketing_common.events.tables import OutboxRow
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.outbox")

BATCH_SIZE = 200
IDLE_POLL_SECONDS = 0.5
PUBLISH_TIMEOUT_SECONDS = 5.0

# Built once: building them costs more CPU than running them, on every commit of every service. On the table,
# not the entity, so they skip the ORM's bulk-DML path.
_outbox = OutboxRow.__table__
CLAIM_AND_MARK = (
    update(_outbox)
    .where(
        _outbox.c.id.in_(
            select(_outbox.c.id)
            .where(_outbox.c.sent_at.is_(None))
            .order_by(_outbox.c.id)
            .limit(bindparam("batch_size"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(sent_at=func.now())
    # The payload as PostgreSQL's text of it: sent as is, where a dict would be decoded and encoded again.
    .returning(
        _outbox.c.id,
        _outbox.c.event_id,
        _outbox.c.subject,
        cast(_outbox.c.payload, Text).label("payload"),
        _outbox.c.headers,
    )
)
COUNT_PENDING = select(func.count()).select_from(_outbox).where(_outbox.c.sent_at.is_(None))


class PendingEvent(Protocol):
    """The columns of an outbox row the relay sends."""

    id: int
    event_id: uuid.UUID
    subject: str
    payload: str  # JSON text
    headers: dict[str, str]


class OutboxRelay:
    """Publishes a service's outbox to JetStream; one per process, any number of processes."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        stream: str,
        metrics: Metrics | None = None,
        after_publish: Callable[[Sequence[PendingEvent]], Awaitable[None]] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._js = js
        self._stream = stream
        self._metrics = metrics
        # Test hook: runs between publishing a batch and marking it sent (a crash there must be harmless).
        self._after_publish = after_publish
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled, surviving database and NATS outages."""
        delay = 0.1
        while True:
            self._wake.clear()  # before reading: a commit from now on wakes the next round
            try:
                while await self.publish_pending() == BATCH_SIZE:
                    pass
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("outbox relay failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that lands
            # just as the wake-up fires, and the relay then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_SECONDS):
                    await self._wake.wait()

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were sent."""
        async with self._sessionmaker() as session, session.begin():
            # Claim and mark in one statement; the marks commit only after JetStream acknowledged every publish,
            # and until then the rows stay locked, so other relays skip them.
            marked = await session.execute(CLAIM_AND_MARK, {"batch_size": BATCH_SIZE})
            rows = sorted(marked.all(), key=lambda row: row.id)  # RETURNING has no order: publish in commit order
            if rows:
                await self._publish(rows)
                if self._after_publish is not None:
                    await self._after_publish(rows)
            if self._metrics is not None:
                # A partial batch took every row no other relay holds: nothing waits, and the hot path skips the
                # count. After a full batch or an idle poll, count (our own rows are already marked sent here).
                backlog = 0
                if not 0 < len(rows) < BATCH_SIZE:
                    backlog = await session.scalar(COUNT_PENDING) or 0
                self._metrics.outbox_backlog.set(backlog)
        return len(rows)

    async def _publish(self, rows: Sequence[PendingEvent]) -> None:
        outcomes = await publish_batch(
            self._js,
            [(row.subject, row.payload.encode(), row.headers) for row in rows],
            stream=self._stream,
            timeout=PUBLISH_TIMEOUT_SECONDS,
        )
        if unacknowledged := sum(isinstance(outcome, NotAcknowledged) for outcome in outcomes):
            raise TimeoutError(f"{unacknowledged} of {len(rows)} publishes not acknowledged")
        for outcome in outcomes:
            if outcome is not None:
                raise outcome  # a JetStream error (e.g. stream missing) fails the batch
        if self._metrics is not None:
            for row in rows:
                self._metrics.events_published.labels(row.subject).inc()


class NotAcknowledged(TimeoutError):
    """JetStream did not acknowledge a publish in time; it may still have stored it (``Nats-Msg-Id`` makes a retry
    harmless)."""


async def publish_batch(
    js: JetStreamContext,
    messages: Sequence[tuple[str, bytes, Mapping[str, str]]],
    *,
    stream: str,
    timeout: float,
) -> list[BaseException | None]:
    """Publish ``(subject, data, headers)`` messages without waiting between them, then each one's outcome, in
    order: None once JetStream stored it, else its error (``NotAcknowledged`` when ``timeout`` passed first)."""
    futures = [
        await js.publish_async(subject, data, stream=stream, headers=dict(headers))
        for subject, data, headers in messages
    ]
    if futures:
        await asyncio.wait(futures, timeout=timeout)
    outcomes: list[BaseException | None] = []
    for future in futures:
        if future.done():
            outcomes.append(future.exception())
        else:
            future.cancel()
            outcomes.append(NotAcknowledged(f"not acknowledged within {timeout} s"))
    return outcomes
