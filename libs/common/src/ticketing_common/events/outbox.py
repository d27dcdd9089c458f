"""The outbox publisher: sends a unit of work's events to JetStream right after it commits, from memory; the
outbox table is the safety net.

- ``submit`` (a commit watcher) queues the committed events; one task publishes whatever is queued with
  ``publish_async`` and ``Nats-Msg-Id``, and marks the acknowledged rows sent in batches (every
  ``MARK_EVERY_SECONDS``), not one UPDATE per event.
- The sweeper republishes rows still unsent ``SWEEP_AFTER_SECONDS`` after they were written (a process that
  crashed between its commit and its publish, a NATS outage), and at start every unsent row at once. It claims rows ``FOR UPDATE SKIP LOCKED`` so
  replicas never sweep the same row at once.
- A row published twice (the sweeper racing a slow publish, a crash before the mark) is one message within
  JetStream's duplicate window, and beyond it every listener's inbox absorbs it. Order between the events of
  one entity is carried by their versions, not by the order of publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg
from nats.js import JetStreamContext

from ticketing_common.db import OutboxMessage
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.outbox")

SWEEP_BATCH_SIZE = 200
SWEEP_AFTER_SECONDS = 3.0
SWEEP_EVERY_SECONDS = 1.0
MARK_EVERY_SECONDS = 0.05
PUBLISH_TIMEOUT_SECONDS = 5.0

MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1::uuid[]) AND sent_at IS NULL"
# Claim and mark in one statement; the marks commit only after JetStream acknowledged every publish, and until then
# the rows stay locked, so other sweepers skip them.
CLAIM_UNSENT = """
UPDATE outbox SET sent_at = now()
WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $2)
    ORDER BY id LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, event_id, subject, payload, headers
"""
COUNT_UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


class OutboxPublisher:
    """Publishes one process's committed events and sweeps what any process left unsent."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        stream: str,
        metrics: Metrics | None = None,
        sweep_after_seconds: float = SWEEP_AFTER_SECONDS,
        after_publish: Callable[[Sequence[OutboxMessage]], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._js = js
        self._stream = stream
        self._metrics = metrics
        self._sweep_after = sweep_after_seconds
        # Test hook: runs between publishing a swept batch and committing its marks (a crash there is harmless).
        self._after_publish = after_publish
        self._queued: list[OutboxMessage] = []
        self._queued_event = asyncio.Event()
        self._acknowledged: list[uuid.UUID] = []

    def submit(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue committed events for publishing (a commit watcher: never blocks)."""
        self._queued.extend(messages)
        self._queued_event.set()

    async def run(self) -> None:
        """Publish, mark and sweep until cancelled, surviving database and NATS outages."""
        tasks = [
            asyncio.create_task(self._publish_loop(), name="outbox-publish"),
            asyncio.create_task(self._mark_loop(), name="outbox-mark"),
            asyncio.create_task(self._sweep_loop(), name="outbox-sweep"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.mark_acknowledged()  # what was published is not sent again by the next process

    async def _publish_loop(self) -> None:
        while True:
            await self._queued_event.wait()
            self._queued_event.clear()
            messages, self._queued = self._queued, []
            try:
                await self._publish(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Left in the table: the sweeper sends them once they are old enough.
                logger.warning("publish failed; the sweeper will retry", extra={"error": repr(exc)})

    async def _publish(self, messages: Sequence[OutboxMessage]) -> None:
        outcomes = await publish_batch(
            self._js,
            [(m.subject, m.payload.encode(), m.headers) for m in messages],
            stream=self._stream,
            timeout=PUBLISH_TIMEOUT_SECONDS,
        )
        failed: BaseException | None = None
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome is None:
                self._acknowledged.append(message.event_id)
                if self._metrics is not None:
                    self._metrics.events_published.labels(message.subject).inc()
            else:
                failed = outcome
        if failed is not None:
            raise failed

    async def _mark_loop(self) -> None:
        while True:
            await asyncio.sleep(MARK_EVERY_SECONDS)
            try:
                await self.mark_acknowledged()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cannot mark published events sent yet", extra={"error": repr(exc)})

    async def mark_acknowledged(self) -> None:
        """Mark the rows JetStream has acknowledged as sent, in one statement."""
        if self._acknowledged:
            ids, self._acknowledged = self._acknowledged, []
            try:
                await self._pool.execute(MARK_SENT, ids)
            except BaseException:
                self._acknowledged[:0] = ids
                raise

    async def _sweep_loop(self) -> None:
        # At start, every row a stopped process left unsent goes at once, not when it is old enough: an event that
        # came due meanwhile (an expiry) is late by every second it waits. A row another replica is publishing
        # right now is sent twice, which JetStream's duplicate window absorbs.
        delay, older_than = 0.0, 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                while await self.sweep(older_than_seconds=older_than) == SWEEP_BATCH_SIZE:
                    pass
                delay, older_than = SWEEP_EVERY_SECONDS, self._sweep_after
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("outbox sweep failed, retrying", extra={"error": repr(exc)})
                delay = min(delay * 2, 5.0)

    async def sweep(self, *, older_than_seconds: float | None = None) -> int:
        """Publish one batch of rows left unsent longer than ``older_than_seconds``; returns how many."""
        older_than = self._sweep_after if older_than_seconds is None else older_than_seconds
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_UNSENT, SWEEP_BATCH_SIZE, older_than)
            rows = sorted(rows, key=lambda row: row["id"])  # RETURNING has no order: publish in commit order
            messages = [
                OutboxMessage(
                    event_id=row["event_id"],
                    subject=row["subject"],
                    payload=row["payload"],
                    headers=json.loads(row["headers"]),
                )
                for row in rows
            ]
            if messages:
                logger.info("sweeping unsent events", extra={"count": len(messages)})
                outcomes = await publish_batch(
                    self._js,
                    [(m.subject, m.payload.encode(), m.headers) for m in messages],
                    stream=self._stream,
                    timeout=PUBLISH_TIMEOUT_SECONDS,
                )
                for outcome in outcomes:
                    if outcome is not None:
                        raise outcome  # the marks roll back: the next sweep sends them again
                if self._after_publish is not None:
                    await self._after_publish(messages)
            if self._metrics is not None:
                # A partial batch took every old row no other sweeper holds; after a full one, count what waits.
                backlog = 0 if 0 < len(rows) < SWEEP_BATCH_SIZE else await conn.fetchval(COUNT_UNSENT)
                self._metrics.outbox_backlog.set(backlog)
        return len(messages)


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
