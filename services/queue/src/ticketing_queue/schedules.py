"""One event's draw: the JetStream message schedule that fires ``queue.draw-due`` at its ``onSaleAt``.

A schedule is a message on ``queue.draws.<eventId>`` with ``Nats-Schedule: @at <onSaleAt>`` and
``Nats-Schedule-Target: queue.draw-due``, written through the outbox. At that time nats-server itself publishes
the message's body to the target subject (keeping the headers but ``Nats-Msg-Id`` and the ``Nats-Schedule*``
ones, adding ``Nats-Scheduler``), then deletes the schedule. One subject per event: a new on-sale time replaces
the schedule rather than adding a second one (the expiration service's mechanism, see its README).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ticketing_common.db import cloudevent_headers
from ticketing_common.events import Subject
from ticketing_common.events.catalogue import DrawDue

SCHEDULE_SUBJECT_PREFIX = "queue.draws"

# Fixed namespaces of the ids the service derives: never random, so every copy of one fact has the same id.
_DRAW_DUE_NAMESPACE = uuid.UUID("0b6f0f38-5f7e-4d2a-9a51-6a3c1f7d2e90")
_ADMITTED_NAMESPACE = uuid.UUID("c5d3a0e4-2b7a-4f19-8d6e-91f4b2a7c3d8")


def schedule_subject(event_id: uuid.UUID) -> str:
    """The subject holding the event's one draw schedule."""
    return f"{SCHEDULE_SUBJECT_PREFIX}.{event_id}"


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def draw_due_event_id(event_id: uuid.UUID, on_sale_at: datetime) -> uuid.UUID:
    """The ``ce-id`` of the ``queue.draw-due`` of one event at one on-sale time: the same for every copy."""
    return uuid.uuid5(_DRAW_DUE_NAMESPACE, f"{Subject.DRAW_DUE}:{event_id}:{as_utc(on_sale_at).isoformat()}")


def admitted_event_id(event_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    """The event id of a buyer's ``queue.admitted``: a buyer is admitted once per event, so the outbox's unique
    event id is one more guard against a second admission."""
    return uuid.uuid5(_ADMITTED_NAMESPACE, f"{Subject.BUYER_ADMITTED}:{event_id}:{user_id}")


def draw_due(event_id: uuid.UUID, on_sale_at: datetime) -> DrawDue:
    return DrawDue(event_id=event_id, on_sale_at=as_utc(on_sale_at))


def schedule_headers(event_id: uuid.UUID, on_sale_at: datetime, *, source: str) -> dict[str, str]:
    """Headers making the outbox message a schedule that fires the event's ``queue.draw-due`` at ``on_sale_at``
    (at once if it has passed). ``ce-time`` is the on-sale time, the moment the draw became due; ``Nats-Msg-Id``
    is left to the outbox (the schedule message's own id), which the server strips when firing."""
    at = as_utc(on_sale_at)
    headers = cloudevent_headers(
        event_id=draw_due_event_id(event_id, at), subject=Subject.DRAW_DUE, source=source, time=at
    )
    del headers["Nats-Msg-Id"]
    return {
        **headers,
        "Nats-Schedule": f"@at {at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}",
        "Nats-Schedule-Target": str(Subject.DRAW_DUE),
    }
