"""How late a lone schedule fires, and how soon an already-due one does, straight against nats-server.

Run: ``uv run python services/expiration/bench/punctuality.py [N]`` (default 20). For N orders one after
another it writes the schedule the expiration service writes, due 0.5 s later, and measures the fired
``order.expired``'s JetStream timestamp minus ``expiresAt``; then N schedules due a minute ago, measuring the
fired timestamp minus the schedule's own timestamp.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
from nats.js.api import DeliverPolicy

from ticketing_common.embedded import EmbeddedNats
from ticketing_common.events.bus import ensure_stream
from ticketing_expiration.schedules import schedule_headers, schedule_subject


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, "TICKETING")
            sub = await js.subscribe("order.expired", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
            lone, due = [], []
            for _ in range(n):
                order_id = uuid.uuid4()
                expires_at = datetime.now(UTC) + timedelta(seconds=0.5)
                await js.publish(
                    schedule_subject(order_id),
                    b"{}",
                    headers=schedule_headers(order_id, expires_at, source="expiration"),
                )
                msg = await sub.next_msg(timeout=5)
                lone.append((msg.metadata.timestamp - expires_at).total_seconds())
            for _ in range(n):
                order_id = uuid.uuid4()
                expires_at = datetime.now(UTC) - timedelta(minutes=1)
                ack = await js.publish(
                    schedule_subject(order_id),
                    b"{}",
                    headers=schedule_headers(order_id, expires_at, source="expiration"),
                )
                stored = await js.get_msg("TICKETING", ack.seq)
                msg = await sub.next_msg(timeout=5)
                assert stored.time is not None
                due.append((msg.metadata.timestamp - stored.time).total_seconds())
        finally:
            await nc.close()
            server.stop()
    print(f"lone schedule, fired minus expiresAt: {_summary(lone)}")
    print(f"already-due schedule, fired minus written: {_summary(due)}")


def _summary(values: list[float]) -> str:
    values = sorted(values)
    return f"min {values[0] * 1000:.1f} ms, median {statistics.median(values) * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms"


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
