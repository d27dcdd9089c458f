"""Publishing = adding the event to the outbox in the caller's transaction; the relay sends it later."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common.events.catalogue import Event
from ticketing_common.events.tables import OutboxRow

CE_SPECVERSION = "1.0"


def cloudevent_headers(*, event_id: uuid.UUID, subject: str, source: str, time: datetime) -> dict[str, str]:
    """NATS headers of an event: the dedup id JetStream honours plus CloudEvents attributes."""
    return {
        "Nats-Msg-Id": str(event_id),
        "ce-id": str(event_id),
        "ce-type": subject,
        "ce-source": source,
        "ce-time": time.isoformat(),
        "ce-specversion": CE_SPECVERSION,
        "content-type": "application/json",
    }


def publish(
    session: AsyncSession,
    event: Event,
    *,
    subject: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> uuid.UUID:
    """Stage ``event`` in the outbox of ``session``'s transaction; it is sent only if that transaction commits.

    Never commits on its own, so the state change and its event are written together or not at all.
    ``subject`` and ``headers`` override where and how it is sent (e.g. a JetStream schedule message whose
    target is the event's own subject).
    """
    event_id = uuid.uuid4()
    source = str(session.info.get("service", "unknown"))
    session.add(
        OutboxRow(
            event_id=event_id,
            subject=subject or str(event.subject),
            payload=event.model_dump(mode="json", by_alias=True),
            headers={
                **cloudevent_headers(event_id=event_id, subject=event.subject, source=source, time=datetime.now(UTC)),
                **(headers or {}),
            },
        )
    )
    return event_id
