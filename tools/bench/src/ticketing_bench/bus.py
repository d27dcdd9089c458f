"""Reading the system's own records back: JetStream messages (with their stored timestamps) and the services'
per-event log lines (the time each handler finished)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

STREAM = "TICKETING"


@dataclass(frozen=True)
class StoredEvent:
    subject: str
    data: dict[str, Any]
    headers: dict[str, str]
    stored_at: datetime  # the stream's timestamp of the message

    @property
    def ce_time(self) -> datetime | None:
        value = self.headers.get("ce-time")
        return datetime.fromisoformat(value) if value else None


async def last_sequence(nats_url: str) -> int:
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def read_since(nats_url: str, sequence: int, subject: str = ">", *, idle: float = 1.0) -> list[StoredEvent]:
    """Every message on ``subject`` stored after stream sequence ``sequence``, read with an ordered consumer."""
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    events: list[StoredEvent] = []
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            subject,
            stream=STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=sequence + 1),
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle)
                except TimeoutError:
                    break
                data: dict[str, Any] = {}
                with contextlib.suppress(ValueError):
                    data = json.loads(msg.data) if msg.data else {}
                events.append(StoredEvent(msg.subject, data, dict(msg.headers or {}), msg.metadata.timestamp))
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return events


@dataclass(frozen=True)
class HandledEvent:
    service: str
    consumer: str
    subject: str
    event_id: str
    outcome: str
    logged_at: datetime  # millisecond resolution: the log line is written right after the commit and the ack


def handled_events(log_file: Path, *, offset: int = 0) -> list[HandledEvent]:
    """The listeners' "event" log lines in the launcher's log (``name | {json}``), from byte ``offset`` on."""
    found: list[HandledEvent] = []
    with log_file.open("rb") as raw:
        raw.seek(offset)
        for line in raw:
            _, bar, rest = line.decode(errors="replace").partition("| ")
            if not bar or '"message": "event"' not in rest:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(rest)
                found.append(
                    HandledEvent(
                        service=entry["service"],
                        consumer=entry["consumer"],
                        subject=entry["subject"],
                        event_id=entry["event_id"],
                        outcome=entry["outcome"],
                        logged_at=datetime.fromisoformat(entry["time"]),
                    )
                )
    return found
