"""One order's ``order.expired``: the JetStream message schedule that is its durable timer.

A schedule is a message on ``expiration.orders.<orderId>`` with ``Nats-Schedule: @at <time>`` and
``Nats-Schedule-Target: order.expired``. At that time nats-server itself publishes the message's body to the
target subject, keeping its headers except ``Nats-Msg-Id`` and the ``Nats-Schedule*`` ones and adding
``Nats-Scheduler: <schedule subject>``, then deletes the schedule. One subject per order means a second
schedule for the same order replaces the first instead of adding a second timer, and purging the subject
cancels it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nats.js import JetStreamContext

from ticketing_common.db import cloudevent_headers
from ticketing_common.events import OrderExpired, Subject

SCHEDULE_SUBJECT_PREFIX = "expiration.orders"

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


def schedule_headers(order_id: uuid.UUID, expires_at: datetime, *, source: str) -> dict[str, str]:
    """Headers making the outbox message a schedule that fires the order's ``order.expired`` at ``expires_at``.

    The fired copy keeps the CloudEvents ones. ``ce-time`` is the expiry time, the moment the fact "this order
    expired" becomes true, rather than the moment the schedule was written (minutes earlier), so consumers'
    ``event_lag_seconds`` measures how late the expiry was handled, not the length of the payment window.
    ``Nats-Msg-Id`` is left to the outbox (the schedule message's own id); the server strips it when firing.
    """
    at = as_utc(expires_at)
    headers = cloudevent_headers(
        event_id=expired_event_id(order_id), subject=Subject.ORDER_EXPIRED, source=source, time=at
    )
    del headers["Nats-Msg-Id"]
    return {
        **headers,
        "Nats-Schedule": f"@at {at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}",
        "Nats-Schedule-Target": str(Subject.ORDER_EXPIRED),
    }


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def remove_schedule(js: JetStreamContext, *, stream: str, order_id: uuid.UUID) -> None:
    """Delete the order's pending schedule from the stream (nothing happens if it already fired or never was)."""
    await js.purge_stream(stream, subject=schedule_subject(order_id))
