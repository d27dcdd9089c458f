"""The queue service's test harness, shared by its test modules (``conftest.py`` puts this folder on the path): it
plays the tickets service (``event.created`` / ``event.updated`` published straight to JetStream), signs buyers
in and looks at what the queue did."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ticketing_common.auth import COOKIE_NAME
from ticketing_common.config import ServiceSettings
from ticketing_common.db import cloudevent_headers
from ticketing_common.events import Event, EventCreated, EventUpdated
from ticketing_common.events.catalogue import encode
from ticketing_common.testing import http_client, running, session_token, stream_events, wait_until
from ticketing_queue.config import Settings
from ticketing_queue.main import create_app
from ticketing_queue.queries import Room, find_room
from ticketing_queue.schedules import schedule_subject


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Buyer:
    """A signed-in user: the cookie header their requests carry."""

    id: uuid.UUID
    headers: dict[str, str]

    @staticmethod
    def new() -> Buyer:
        user_id = uuid.uuid4()
        return Buyer(user_id, {"Cookie": f"{COOKIE_NAME}={session_token(user_id=user_id)}"})


@dataclass(frozen=True)
class Entrant:
    user_id: uuid.UUID
    position: int | None
    admitted_until: datetime | None
    joined_at: datetime


@dataclass
class Queue:
    """One running queue service (``app``, its HTTP ``client``) and the bus, as the tickets service and buyers
    see them."""

    app: FastAPI
    client: httpx.AsyncClient
    js: JetStreamContext
    stream: str
    versions: dict[uuid.UUID, int] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self.app.state.db.pool
        return pool

    # -- the tickets service --------------------------------------------------------------------------------

    async def publish(self, event: Event, *, event_id: uuid.UUID | None = None, msg_id: str | None = None) -> uuid.UUID:
        """Publish as another service's outbox would; ``msg_id`` (JetStream's dedup key) defaults to the event id."""
        eid = event_id or uuid.uuid4()
        headers = cloudevent_headers(event_id=eid, subject=event.subject, source="test", time=datetime.now(UTC))
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        await self.js.publish(event.subject, encode(event), stream=self.stream, headers=headers)
        return eid

    async def add_event(
        self, *, on_sale_at: datetime | None = None, waiting_room: bool = True, wait: bool = True
    ) -> EventCreated:
        """An event the tickets service created (on sale in an hour unless told), once the queue has its room."""
        event = EventCreated(
            id=uuid.uuid4(),
            name="Concert",
            venue="Hall",
            starts_at=in_seconds(30 * 24 * 3600),
            on_sale_at=on_sale_at or in_seconds(3600),
            max_per_buyer=4,
            waiting_room=waiting_room,
            user_id=uuid.uuid4(),
            version=0,
        )
        await self.publish(event)
        self.versions[event.id] = 0
        if wait:
            await wait_until(lambda: self.room(event.id))
        return event

    def updated(self, event: EventCreated, *, version: int | None = None, **changes: Any) -> EventUpdated:
        """``event.updated`` of ``event`` (its next version unless told) with ``changes``."""
        if version is None:
            version = self.versions[event.id] = self.versions[event.id] + 1
        fields = {**event.model_dump(), **changes, "version": version}
        return EventUpdated(**fields)

    # -- buyers -----------------------------------------------------------------------------------------------

    async def join(self, event_id: uuid.UUID, buyer: Buyer) -> httpx.Response:
        return await self.client.post(f"/api/queue/{event_id}", headers=buyer.headers)

    async def place(self, event_id: uuid.UUID, buyer: Buyer) -> dict[str, Any]:
        response = await self.client.get(f"/api/queue/{event_id}", headers=buyer.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def joined(self, event_id: uuid.UUID, count: int) -> list[Buyer]:
        """``count`` new buyers who joined the room (one after the other)."""
        buyers = [Buyer.new() for _ in range(count)]
        for buyer in buyers:
            response = await self.join(event_id, buyer)
            assert response.status_code == 201, response.text
        return buyers

    async def draw(self, event_id: uuid.UUID) -> dict[str, Any]:
        response = await self.client.get(f"/api/queue/{event_id}/draw")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_drawn(self, event_id: uuid.UUID, *, timeout: float = 10.0) -> Room:
        async def drawn() -> Room | None:
            room = await self.room(event_id)
            return room if room is not None and room.drawn_at is not None else None

        return await wait_until(drawn, timeout=timeout)

    # -- what the queue did -----------------------------------------------------------------------------------

    async def room(self, event_id: uuid.UUID) -> Room | None:
        return await find_room(self.pool, event_id)

    async def entrants(self, event_id: uuid.UUID) -> list[Entrant]:
        """The room's entrants, by position (those without one last, by join time)."""
        rows = await self.pool.fetch(
            "SELECT user_id, position, admitted_until, joined_at FROM entrants WHERE event_id = $1"
            " ORDER BY position NULLS LAST, joined_at",
            event_id,
        )
        return [Entrant(**dict(row)) for row in rows]

    async def wait_admitted(self, event_id: uuid.UUID, count: int, *, timeout: float = 15.0) -> list[Entrant]:
        async def enough() -> list[Entrant] | None:
            entrants = await self.entrants(event_id)
            return entrants if sum(e.admitted_until is not None for e in entrants) >= count else None

        return await wait_until(enough, timeout=timeout, interval=0.05)

    async def outbox(self, subject: str) -> list[dict[str, Any]]:
        """Payloads the service staged on ``subject``, sent or not."""
        rows = await self.pool.fetch("SELECT payload FROM outbox WHERE subject = $1 ORDER BY id", subject)
        return [json.loads(row["payload"]) for row in rows]

    async def schedule(self, event_id: uuid.UUID) -> Any:
        """The event's pending draw schedule in the stream, or None."""
        try:
            return await self.js.get_last_msg(self.stream, schedule_subject(event_id))
        except NotFoundError:
            return None

    async def published(self, subject: str) -> list[Any]:
        """Every message on ``subject`` in the stream once the outbox is drained."""

        async def drained() -> bool:
            return await self.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

        await wait_until(drained)
        return await stream_events(self.js, subject, stream=self.stream)

    def handled(self, subject: str, outcome: str = "ok") -> int:
        return int(self.app.state.metrics.events_handled.labels(subject, outcome)._value.get())

    async def wait_handled(self, subject: str, count: int, outcome: str = "ok", *, timeout: float = 15.0) -> None:
        async def reached() -> bool:
            return self.handled(subject, outcome) >= count

        await wait_until(reached, timeout=timeout)


@asynccontextmanager
async def running_queue(settings: ServiceSettings, js: JetStreamContext, **overrides: Any) -> AsyncIterator[Queue]:
    """A queue service of its own with ``overrides`` of the test settings (the database already prepared)."""
    own = settings.model_copy(update=overrides)
    async with running(create_app(own)) as app, http_client(app) as client:
        yield Queue(app, client, js, own.nats_stream)


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
