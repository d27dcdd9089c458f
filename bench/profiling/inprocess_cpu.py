"""CPU per request and per event of the shared framework with and without a log line for each, in one process and
alternating blocks (paired under the same conditions; it counts this process's CPU time only), on the demo service
of ``libs/common/tests`` against embedded PostgreSQL and NATS.

    uv run python bench/profiling/inprocess_cpu.py [--count 500 --rounds 4] | cat >/dev/null   # stdout piped, as the launcher

Per request: ``POST /demo/tickets`` in-process (httpx ASGI transport: body, session, publish, commit), the relay
stopped. Per event: a relay publishes the outbox and the listener handles each ``ticket.created`` (inbox claim,
insert, ack). The figures go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "libs" / "common" / "tests"))

from common_demo import MIGRATIONS, DemoSettings, TicketCopy, build_demo_app
from fastapi import FastAPI

from ticketing_common.app import RequestMiddleware
from ticketing_common.embedded import EmbeddedNats, EmbeddedPostgres
from ticketing_common.events.relay import OutboxRelay
from ticketing_common.logging import RoutineLog
from ticketing_common.testing import TestInfra, http_client, prepare_database, running, settings_for


def routine_logs(app: FastAPI) -> list[RoutineLog]:
    """The request middleware's and every listener's ``RoutineLog``, to switch sampling between blocks."""
    found = [runner._routine for runner in app.state.events.runners]
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, RequestMiddleware):
            found.append(layer.routine)
        layer = getattr(layer, "app", None)
    return found


async def measure(infra: TestInfra, count: int, rounds: int) -> dict[str, list[float]]:
    settings = settings_for(DemoSettings, infra, log_json=True)
    await prepare_database(settings, MIGRATIONS)
    app = build_demo_app(settings)
    figures: dict[str, list[float]] = {}
    made = 0
    async with running(app), http_client(app) as client:
        await app.state.events.stop_relay()
        for i in range(50):  # warm-up: caches, pool; builds the middleware stack
            await client.post("/demo/tickets", json={"title": f"warm {i}", "price": 10})
        made += 50
        for _ in range(rounds):
            for sample_every in (1, 0):  # 1: a line for each (as before LOG_SAMPLE_EVERY), 0: none
                for routine in routine_logs(app):
                    routine.sample_every = sample_every
                started = time.process_time()
                for i in range(count):
                    response = await client.post("/demo/tickets", json={"title": f"Seat {i}", "price": 10})
                    assert response.status_code == 201
                made += count
                figures.setdefault(f"request_ms, a line each={sample_every == 1}", []).append(
                    (time.process_time() - started) * 1000 / count
                )
                relay = OutboxRelay(
                    sessionmaker=app.state.sessionmaker, js=app.state.events.js, stream=settings.nats_stream
                )
                started = time.process_time()
                task = asyncio.create_task(relay.run())
                while True:
                    async with app.state.sessionmaker() as session:
                        if await session.scalar(select(func.count()).select_from(TicketCopy)) >= made:
                            break
                    await asyncio.sleep(0.05)
                figures.setdefault(f"event_ms, a line each={sample_every == 1}", []).append(
                    (time.process_time() - started) * 1000 / count
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500, help="requests (and events) per block")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inprocess-cpu-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL may run as another OS user
        postgres, nats = EmbeddedPostgres(root / "postgres", durable=False), EmbeddedNats(root / "nats")
        try:
            infra = TestInfra(database_url=postgres.start(), nats_url=nats.start(), root=root)
            figures = asyncio.run(measure(infra, args.count, args.rounds))
        finally:
            nats.stop()
            postgres.stop()
    for name, values in figures.items():
        print(f"{name}: " + ", ".join(f"{v:.3f}" for v in values), file=sys.stderr)


if __name__ == "__main__":
    main()
