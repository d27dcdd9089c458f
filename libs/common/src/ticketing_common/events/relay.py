"""The outbox relay: sends pending outbox rows to JetStream, then marks them sent.

It wakes on the outbox trigger's NOTIFY (and at least once a second), claims rows with
``FOR UPDATE SKIP LOCKED`` so replicas never send the same row at once, and publishes with ``Nats-Msg-Id``
so a crash between publishing and marking sent is absorbed by JetStream's duplicate window (and, beyond it,
by every listener's inbox). NATS or PostgreSQL outages only delay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from nats.js import JetStreamContext
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ticketing_common.events.tables import OUTBOX_NOTIFY_CHANNEL, OutboxRow
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.outbox")

BATCH_SIZE = 200
IDLE_POLL_SECONDS = 1.0
PUBLISH_TIMEOUT_SECONDS = 5.0


class OutboxRelay:
    """Publishes a service's outbox to JetStream; one per process, any number of processes."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        database_url: str,
        js: JetStreamContext,
        stream: str,
        metrics: Metrics | None = None,
        after_publish: Callable[[Sequence[OutboxRow]], Awaitable[None]] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
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
        listener = asyncio.create_task(self._listen_for_notifications(), name="outbox-listen")
        try:
            delay = 0.1
            while True:
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
                self._wake.clear()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were sent."""
        async with self._sessionmaker() as session, session.begin():
            rows = (
                await session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.sent_at.is_(None))
                    .order_by(OutboxRow.id)
                    .limit(BATCH_SIZE)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await self._publish(rows)
                if self._after_publish is not None:
                    await self._after_publish(rows)
                await session.execute(
                    update(OutboxRow).where(OutboxRow.id.in_([r.id for r in rows])).values(sent_at=func.now())
                )
            if self._metrics is not None:
                backlog = await session.scalar(
                    select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
                )
                self._metrics.outbox_backlog.set(max(0, (backlog or 0) - len(rows)))
        return len(rows)

    async def _publish(self, rows: Sequence[OutboxRow]) -> None:
        futures = []
        for row in rows:
            futures.append(
                await self._js.publish_async(
                    row.subject,
                    json.dumps(row.payload, separators=(",", ":")).encode(),
                    stream=self._stream,
                    headers=dict(row.headers),
                )
            )
        done, pending = await asyncio.wait(futures, timeout=PUBLISH_TIMEOUT_SECONDS)
        for future in pending:
            future.cancel()
        if pending:
            raise TimeoutError(f"{len(pending)} of {len(futures)} publishes not acknowledged")
        for future in done:
            future.result()  # a JetStream error (e.g. stream missing) fails the batch
        if self._metrics is not None:
            for row in rows:
                self._metrics.events_published.labels(row.subject).inc()

    async def _listen_for_notifications(self) -> None:
        """Keep a LISTEN connection so new rows are sent within milliseconds, reconnecting when it drops."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, closed=closed: closed.set())
                await conn.add_listener(OUTBOX_NOTIFY_CHANNEL, lambda *_args: self._wake.set())
                self._wake.set()  # catch up on anything written while we were not listening
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("outbox LISTEN connection failed", extra={"error": repr(exc)})
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(0.5)
