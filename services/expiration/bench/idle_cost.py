"""What pending expiries cost while they wait: nats-server CPU time with 0 and with N pending schedules.

Run: ``uv run python services/expiration/bench/idle_cost.py [N] [SECONDS]`` (defaults 10000 and 10). It starts
a throwaway nats-server, creates the TICKETING stream, writes N schedule messages due in an hour (the headers
the expiration service writes), and samples the server's user+system CPU time over SECONDS of idling.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats

from ticketing_common.embedded import EmbeddedNats
from ticketing_common.events.bus import ensure_stream
from ticketing_expiration.schedules import schedule_headers, schedule_subject


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return cpu_seconds(pid) - before


async def main(pending: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        assert server.pid is not None
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, "TICKETING")
            await asyncio.sleep(1.0)
            empty = await idle_cpu(server.pid, seconds)
            due = datetime.now(UTC) + timedelta(hours=1)
            started = time.monotonic()
            for start in range(0, pending, 1000):
                acks = []
                for _ in range(start, min(pending, start + 1000)):
                    order_id = uuid.uuid4()
                    headers = schedule_headers(order_id, due, source="expiration")
                    acks.append(await js.publish_async(schedule_subject(order_id), b"{}", headers=headers))
                await asyncio.gather(*acks)
            written = time.monotonic() - started
            await asyncio.sleep(1.0)
            loaded = await idle_cpu(server.pid, seconds)
        finally:
            await nc.close()
            server.stop()
    print(f"wrote {pending} schedules in {written:.2f}s")
    print(
        f"nats-server CPU over {seconds:.0f}s idle: {empty * 1000:.0f} ms with 0 pending, {loaded * 1000:.0f} ms with {pending}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000, float(sys.argv[2]) if len(sys.argv) > 2 else 10))
