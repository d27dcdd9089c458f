"""The admission loop: every replica runs one (``main.while_running``), each round letting every room with buyers
waiting at a position admit its next batch (``service.admit_waiting``); now and then it also forgets join counters
of windows that are over and renews draw schedules written days ago (``service.renew_schedules``). Replicas need no coordination beyond the
room's locks: a room one replica is admitting is skipped by the others, and each batch is decided under the
room's row lock from the room's own bucket, so the rate holds however many replicas run."""

from __future__ import annotations

import asyncio
import logging
import time

from ticketing_common.db import Database, is_connection_error
from ticketing_queue import service
from ticketing_queue.config import Settings

logger = logging.getLogger("ticketing.queue")

PRUNE_EVERY_SECONDS = 60.0
RENEW_EVERY_SECONDS = 600.0


class AdmissionLoop:
    """Runs admission rounds every ``QUEUE_ADMIT_INTERVAL_SECONDS`` until cancelled, surviving database outages;
    ``admitted`` counts the buyers this process admitted."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.admitted = 0
        self.rounds = 0

    async def run(self) -> None:
        next_prune = next_renewal = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                self.admitted += await service.admit_waiting(db=self.db, settings=self.settings)
                if started >= next_prune:
                    await service.forget_past_joins(db=self.db, settings=self.settings)
                    next_prune = started + PRUNE_EVERY_SECONDS
                if started >= next_renewal:
                    next_renewal = started + RENEW_EVERY_SECONDS
                    await service.renew_schedules(db=self.db)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_connection_error(exc):
                    await self.db.connection_failed()
                logger.warning("admission round failed", extra={"error": repr(exc)})
            self.rounds += 1
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.settings.queue_admit_interval_seconds - elapsed))
