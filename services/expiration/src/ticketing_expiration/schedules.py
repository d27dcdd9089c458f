"""One order's ``order.expired``: the JetStream message schedule that is its durable timer, and its direct copy.

A schedule is a message on ``expiration.orders.<orderId>`` with ``Nats-Schedule: @at <time>`` and
``Nats-Schedule-Target: order.expired``. At that time nats-server itself publishes the message's body to the
target subject, keeping its headers except ``Nats-Msg-Id`` and the ``Nats-Schedule*`` ones and adding
``Nats-Scheduler: <schedule subject>``, then deletes the schedule. One subject per order means a second
schedule for the same order replaces the first instead of adding a second timer, and purging the subject
cancels it. The in-process timer (``timers.py``) publishes the same event directly, built by the same code.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from nats.js import JetStreamContext

from ticketing_common.events import OrderExpired, Subject
from ticketing_common.events.catalogue import encode
from ticketing_common.events.publisher import cloudevent_headers
from ticketing_common.events.relay import publish_batch

SCHEDULE_SUBJECT_PREFIX = "expiration.orders"
SCHEDULER_HEADER = "Nats-Scheduler"
PUBLISH_TIMEOUT_SECONDS = 2.0

# Fixed namespace of the order.expired event ids: the id is a function of the order, never random.
_EXPIRED_EVENT_NAMESPACE = uuid.UUID("6f1c3a52-8a0e-4c55-9d6b-3b8f0f3f0e51")


def schedule_subject(order_id: uuid.UUID) -> str:
    """The subject holding the order's one schedule message."""
    return f"{SCHEDULE_SUBJECT_PREFIX}.{order_id}"


def expired_event_id(order_id: uuid.UUID) -> uuid.UUID:
    """The ``ce-id`` of the order's ``order.expired``: the same for every copy, so inboxes absorb repeats."""
    return uuid.uuid5(_EXPIRED_EVENT_NAMESPACE, f"{Subject.ORDER_EXPIRED}:{order_id}")


def expired_event(order_id: uuid.UUID) -> OrderExpired:
    return OrderExpired(order_id=order_id)


def expired_headers(order_id: uuid.UUID, expires_at: datetime, *, source: str) -> dict[str, str]:
    """The CloudEvents headers of the order's ``order.expired``, identical on the timer's and the schedule's copy.

    ``ce-time`` is the expiry time, the moment the fact "this order expired" becomes true, rather than the
    moment the schedule was written (minutes earlier), so consumers' ``event_lag_seconds`` measures how late the
    expiry was handled, not the length of the payment window. ``Nats-Msg-Id`` is left to each message.
    """
    headers = cloudevent_headers(
        event_id=expired_event_id(order_id), subject=Subject.ORDER_EXPIRED, source=source, time=as_utc(expires_at)
    )
    del headers["Nats-Msg-Id"]
    return headers


def schedule_headers(
    order_id: uuid.UUID, expires_at: datetime, *, source: str, fire_at: datetime | None = None
) -> dict[str, str]:
    """Headers making the outbox message a schedule that fires ``order.expired`` at ``fire_at`` (``expires_at``)."""
    at = as_utc(fire_at or expires_at)
    return {
        **expired_headers(order_id, expires_at, source=source),
        "Nats-Schedule": f"@at {at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}",
        "Nats-Schedule-Target": str(Subject.ORDER_EXPIRED),
    }


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def remove_schedule(js: JetStreamContext, *, stream: str, order_id: uuid.UUID) -> None:
    """Delete the order's pending schedule from the stream (nothing happens if it already fired or never was)."""
    await js.purge_stream(stream, subject=schedule_subject(order_id))


async def publish_expired(
    js: JetStreamContext, *, stream: str, source: str, expiries: Mapping[uuid.UUID, datetime]
) -> set[uuid.UUID]:
    """Publish these orders' ``order.expired`` straight to JetStream; returns the orders whose copy was stored.

    ``Nats-Msg-Id`` is the ``ce-id``, so JetStream drops a retried copy within its duplicate window.
    """
    orders = list(expiries.items())
    messages = []
    for order_id, expires_at in orders:
        headers = expired_headers(order_id, expires_at, source=source)
        headers["Nats-Msg-Id"] = headers["ce-id"]
        messages.append((str(Subject.ORDER_EXPIRED), encode(expired_event(order_id)), headers))
    outcomes = await publish_batch(js, messages, stream=stream, timeout=PUBLISH_TIMEOUT_SECONDS)
    return {order_id for (order_id, _), outcome in zip(orders, outcomes, strict=True) if outcome is None}
