"""The listener base class and the loop that feeds it from a durable JetStream pull consumer.

A service's listener is a few lines: name the event type and write ``handle``. The runner guarantees:

- one durable consumer per (service, subject), shared by every replica, so each event goes to one replica;
- the event id is recorded in ``processed_events`` in the handler's own transaction, so a redelivered
  event is acknowledged without effect;
- the ack is sent only after that transaction commits;
- ``raise NotYet()`` (an event ahead of the local copy's version) redelivers the message later, with backoff;
- a message that keeps failing is parked in ``parked_messages`` after a bounded number of deliveries, logged,
  and acknowledged so the rest keep flowing. An unreachable database is never a reason to park;
- a retry or a parking is logged; any other outcome only when slow or sampled (``RoutineLog``), and counted in
  ``events_handled_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Generic, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ticketing_common.db import is_connection_error
from ticketing_common.events.catalogue import Event
from ticketing_common.events.tables import ParkedMessage, ProcessedEvent
from ticketing_common.logging import DEFAULT_SLOW_SECONDS, RoutineLog
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.events")

E = TypeVar("E", bound=Event)

MAX_BACKOFF_SECONDS = 5.0
NOT_YET_MAX_DELIVERIES = 60

_inbox = ProcessedEvent.__table__
# Built once: constructing a statement costs more CPU than executing it (~0.1 ms per statement, every event).
# On the table, not the entity: the ORM's bulk-DML path adds ~65 µs more.
CLAIM_EVENT = (
    pg_insert(_inbox)
    .values(consumer=bindparam("consumer"), event_id=bindparam("event_id"))
    .on_conflict_do_nothing()
    .returning(_inbox.c.event_id)
)


class NotYet(Exception):
    """Raised by a handler when the event cannot be applied yet (e.g. an earlier version is missing)."""


def is_next_version(current: int | None, incoming: int) -> bool:
    """Version gate for replicas: True to apply ``incoming`` (exactly ``current + 1``), False when it was
    already applied (behind: acknowledge without effect); raises :class:`NotYet` when it is ahead of the copy
    or the copy does not exist yet, so the message is redelivered later."""
    if current is None or incoming > current + 1:
        raise NotYet(f"version {incoming} is ahead of local version {current}")
    return incoming == current + 1


@dataclass(frozen=True)
class EventContext:
    """Where a delivered event came from."""

    event_id: str
    subject: str
    deliveries: int
    published_at: datetime | None


class Listener(ABC, Generic[E]):
    """Subclass, set ``event`` to a catalogue payload class, and implement :meth:`handle`."""

    event: ClassVar[type[Event]]

    @abstractmethod
    async def handle(self, event: E, session: AsyncSession, context: EventContext) -> None:
        """Apply the event inside ``session``'s transaction; never commit here."""

    async def committed(self, event: E, context: EventContext) -> None:
        """Called once ``handle``'s transaction has committed (not for a duplicate); must not raise."""

    @property
    def subject(self) -> str:
        return str(self.event.subject)


def durable_name(service: str, subject: str) -> str:
    return f"{service}-{subject.replace('.', '-').replace('>', 'all').replace('*', 'any')}"


def backoff_seconds(deliveries: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 0.05 * 2 ** max(0, deliveries - 1)))


class ListenerRunner:
    """Pulls one listener's messages and applies them, one at a time, until cancelled."""

    def __init__(
        self,
        listener: Listener[Event],
        *,
        service: str,
        js: JetStreamContext,
        stream: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics | None = None,
        max_deliveries: int = 10,
        ack_wait: float = 30.0,
        concurrency: int = 1,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        sample_every: int = 0,
    ) -> None:
        self.listener = listener
        self.service = service
        self.consumer = durable_name(service, listener.subject)
        self._js = js
        self._stream = stream
        self._sessionmaker = sessionmaker
        self._metrics = metrics
        self._max_deliveries = max_deliveries
        self._ack_wait = ack_wait
        self._concurrency = max(1, concurrency)
        self._routine = RoutineLog(logger, slow_seconds=slow_seconds, sample_every=sample_every)
        self._stopped = False

    def stop(self) -> None:
        """Finish the message in hand, then return from :meth:`run`."""
        self._stopped = True

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.consumer,
            filter_subject=self.listener.subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_ack_pending=1000,
        )

    async def run(self) -> None:
        """Consume until cancelled, surviving NATS and database outages.

        ``concurrency`` pull subscriptions share the durable consumer, like that many replicas in one process, so
        a slow transaction does not hold up the events behind it. Order between them is not guaranteed, which the
        version gates and the inbox already make harmless.
        """
        subscriptions = [await self._subscribe() for _ in range(self._concurrency)]
        await asyncio.gather(*(self._consume(subscription) for subscription in subscriptions))

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        while True:
            try:
                return await self._js.pull_subscribe(
                    self.listener.subject,
                    durable=self.consumer,
                    stream=self._stream,
                    config=self.consumer_config(),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cannot create consumer yet", extra={"consumer": self.consumer, "error": repr(exc)})
                await asyncio.sleep(1.0)

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while not self._stopped:
            try:
                # One at a time: fetch() returns as soon as a message arrives (a larger batch lingers).
                messages = await subscription.fetch(1, timeout=5.0)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopped or self._js._nc.is_closed:
                    return  # nats-py turns a cancellation into ConnectionClosedError while closing
                logger.warning("fetch failed", extra={"consumer": self.consumer, "error": repr(exc)})
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                await self.process(message)

    async def process(self, msg: Msg) -> str:
        """Apply one delivered message and settle it (ack, nak or park); returns the outcome."""
        started = time.perf_counter()
        headers = msg.headers or {}
        metadata = msg.metadata
        deliveries = metadata.num_delivered
        # ce-id names the event; Nats-Msg-Id equals it for our publishers (JetStream's dedup key).
        event_id = headers.get("ce-id") or headers.get("Nats-Msg-Id") or f"{self._stream}:{metadata.sequence.stream}"
        published_at = _parse_time(headers.get("ce-time"))
        context = EventContext(event_id, msg.subject, deliveries, published_at)
        outcome: str
        error: BaseException | None = None
        try:
            event = self.listener.event.model_validate_json(msg.data)
        except ValidationError as exc:
            outcome = await self._park(msg, context, exc)  # malformed: no retry can help
        else:
            try:
                outcome = await self._apply(event, context)
                await msg.ack()
                if outcome == "ok":
                    await self.listener.committed(event, context)
                if outcome == "ok" and published_at is not None and self._metrics is not None:
                    lag = time.time() - published_at.timestamp()
                    self._metrics.event_lag.labels(msg.subject).observe(max(0.0, lag))
            except NotYet as exc:
                error = exc
                if deliveries >= NOT_YET_MAX_DELIVERIES:
                    outcome = await self._park(msg, context, exc)
                else:
                    outcome = "not_yet"
                    await msg.nak(delay=backoff_seconds(deliveries))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
                if is_connection_error(exc) or deliveries < self._max_deliveries:
                    outcome = "retry"
                    await msg.nak(delay=backoff_seconds(deliveries))
                else:
                    outcome = await self._park(msg, context, exc)
        if self._metrics is not None:
            self._metrics.events_handled.labels(msg.subject, outcome).inc()
        duration = time.perf_counter() - started
        level = logging.WARNING if outcome in ("retry", "parked") else self._routine.level(duration)
        if level is not None:
            logger.log(
                level,
                "event",
                extra={
                    "consumer": self.consumer,
                    "subject": msg.subject,
                    "event_id": event_id,
                    "outcome": outcome,
                    "deliveries": deliveries,
                    "duration_ms": round(duration * 1000, 2),
                    **({"error": repr(error)} if error is not None and outcome != "not_yet" else {}),
                },
            )
        return outcome

    async def _apply(self, event: Event, context: EventContext) -> str:
        async with self._sessionmaker() as session, session.begin():
            session.info["service"] = self.service
            claimed = await session.scalar(CLAIM_EVENT, {"consumer": self.consumer, "event_id": context.event_id})
            if claimed is None:
                return "duplicate"
            await self.listener.handle(event, session, context)
        return "ok"

    async def _park(self, msg: Msg, context: EventContext, error: BaseException) -> str:
        try:
            async with self._sessionmaker() as session, session.begin():
                already = await session.scalar(
                    select(ParkedMessage.id).where(
                        ParkedMessage.consumer == self.consumer, ParkedMessage.event_id == context.event_id
                    )
                )
                if already is None:
                    await session.execute(
                        insert(ParkedMessage).values(
                            consumer=self.consumer,
                            subject=msg.subject,
                            event_id=context.event_id,
                            data=msg.data.decode(errors="replace"),
                            headers=dict(msg.headers or {}),
                            error=repr(error),
                            deliveries=context.deliveries,
                        )
                    )
        except Exception as exc:
            logger.warning("cannot park message yet", extra={"consumer": self.consumer, "error": repr(exc)})
            await msg.nak(delay=backoff_seconds(context.deliveries))
            return "retry"
        logger.error(
            "message parked",
            extra={"consumer": self.consumer, "event_id": context.event_id, "error": repr(error)},
        )
        await msg.term()
        return "parked"


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
