"""How punctually JetStream message schedules fire, straight against nats-server: many pending, then one alone.

Run: ``uv run python services/expiration/bench/punctuality.py [--pending 10000] [--spread 3] [--lead 20]
[--lone 20]``. It writes ``--pending`` schedules exactly as the expiration service writes them (same subject, body
and headers), due one after another over ``--spread`` seconds starting ``--lead`` seconds later, and reads every
fired ``order.expired``: lateness of its JetStream timestamp (and of its receipt) after ``expiresAt``, how many
fired early, twice or not at all. Then ``--lone`` schedules one after another, each due 0.5 s after it is written,
and as many already due, whose lateness is measured from the moment they were written. The target (issue 18):
10,000 pending, none early, p99 ≤ 500 ms, each exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from ticketing_common.embedded import EmbeddedNats
from ticketing_common.events.bus import ensure_stream
from ticketing_common.events.catalogue import encode
from ticketing_expiration.schedules import expired_event, schedule_headers, schedule_subject

STREAM = "TICKETING"
WRITE_CONCURRENCY = 500


async def main(pending: int, spread: float, lead: float, lone: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, STREAM)
            if pending:
                await many_pending(js, pending, spread, lead)
            if lone:
                await one_at_a_time(js, lone)
        finally:
            await nc.close()
            server.stop()


async def many_pending(js: JetStreamContext, pending: int, spread: float, lead: float) -> None:
    received: list[tuple[uuid.UUID, datetime, float]] = []
    fired: set[uuid.UUID] = set()
    all_fired = asyncio.Event()

    async def on_expired(msg: Msg) -> None:
        order_id = uuid.UUID(json.loads(msg.data)["orderId"])
        received.append((order_id, msg.metadata.timestamp, time.time()))
        fired.add(order_id)
        if len(fired) == pending:
            all_fired.set()

    sub = await js.subscribe("order.expired", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW, cb=on_expired)
    first_due = datetime.now(UTC) + timedelta(seconds=lead)
    due = {uuid.uuid4(): first_due + timedelta(seconds=spread * i / pending) for i in range(pending)}
    started = time.monotonic()
    orders = list(due.items())
    for start in range(0, pending, WRITE_CONCURRENCY):
        await asyncio.gather(
            *(write_schedule(js, order_id, at) for order_id, at in orders[start : start + WRITE_CONCURRENCY])
        )
    written = time.monotonic() - started
    if datetime.now(UTC) >= first_due or received:
        raise SystemExit(f"writing {pending} schedules took {written:.1f} s, past the {lead} s lead: raise --lead")

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_fired.wait(), timeout=lead + spread + 30)
    await asyncio.sleep(2.0)  # room for any second copy to show up
    await sub.unsubscribe()

    copies = Counter(order_id for order_id, _, _ in received)
    stored = sorted((at - due[order_id]).total_seconds() for order_id, at, _ in received)
    delivered = sorted(at - due[order_id].timestamp() for order_id, _, at in received)
    print(f"{pending} pending schedules due within {spread:g} s (written in {written:.1f} s, {lead:g} s ahead):")
    print(f"  fired {len(copies)}, missing {pending - len(copies)}, duplicates {sum(n - 1 for n in copies.values())}")
    print(f"  early (stored before expiresAt): {sum(v < 0 for v in stored)}")
    print(f"  lateness in the stream (JetStream timestamp - expiresAt): {_summary(stored)}")
    print(f"  lateness at a subscriber (receipt - expiresAt): {_summary(delivered)}")


async def one_at_a_time(js: JetStreamContext, n: int) -> None:
    sub = await js.subscribe("order.expired", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
    lone, already_due = [], []
    for _ in range(n):
        order_id = uuid.uuid4()
        expires_at = datetime.now(UTC) + timedelta(seconds=0.5)
        await write_schedule(js, order_id, expires_at)
        msg = await sub.next_msg(timeout=5)
        lone.append((msg.metadata.timestamp - expires_at).total_seconds())
    for _ in range(n):
        order_id = uuid.uuid4()
        seq = await write_schedule(js, order_id, datetime.now(UTC) - timedelta(minutes=1))
        stored = await js.get_msg(STREAM, seq)
        msg = await sub.next_msg(timeout=5)
        assert stored.time is not None
        already_due.append((msg.metadata.timestamp - stored.time).total_seconds())
    await sub.unsubscribe()
    print(f"lone schedule, fired minus expiresAt ({n}): {_summary(sorted(lone))}")
    print(f"already-due schedule, fired minus written ({n}): {_summary(sorted(already_due))}")


async def write_schedule(js: JetStreamContext, order_id: uuid.UUID, expires_at: datetime) -> int:
    """The schedule message the expiration service's outbox sends for an order; returns its stream sequence."""
    headers = {"Nats-Msg-Id": str(uuid.uuid4()), **schedule_headers(order_id, expires_at, source="expiration")}
    ack = await js.publish(schedule_subject(order_id), encode(expired_event(order_id)), stream=STREAM, headers=headers)
    return ack.seq


def _summary(values: list[float]) -> str:
    if not values:
        return "none"
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]
    return (
        f"min {values[0] * 1000:.1f} ms, p50 {statistics.median(values) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {values[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000, help="schedules pending at once (0: skip)")
    parser.add_argument("--spread", type=float, default=3.0, help="seconds over which they come due")
    parser.add_argument("--lead", type=float, default=20.0, help="seconds between the start and the first due")
    parser.add_argument("--lone", type=int, default=20, help="lone and already-due schedules to time (0: skip)")
    args = parser.parse_args()
    asyncio.run(main(args.pending, args.spread, args.lead, args.lone))
