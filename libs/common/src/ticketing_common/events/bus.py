"""The NATS connection and the one JetStream stream every subject of the catalogue lives on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

logger = logging.getLogger("ticketing.events")

STREAM_SUBJECTS = ("user.>", "ticket.>", "order.>", "charge.>", "expiration.>", "session.>", "event.>", "queue.>")
DUPLICATE_WINDOW_SECONDS = 120.0
MAX_AGE_SECONDS = 7 * 24 * 3600.0


def stream_config(name: str, *, replicas: int = 1, subjects: Sequence[str] = STREAM_SUBJECTS) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=list(subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=MAX_AGE_SECONDS,
        num_replicas=replicas,
        allow_msg_schedules=True,
    )


async def ensure_stream(js: JetStreamContext, name: str, *, replicas: int = 1) -> None:
    """Create the stream, or bring an existing one to this configuration (idempotent, safe when raced)."""
    config = stream_config(name, replicas=replicas)
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Already there with another configuration (or created concurrently): converge on ours.
        await js.update_stream(config)


async def _log_error(exc: Exception) -> None:
    logger.warning("nats error", extra={"error": repr(exc)})


async def _log_disconnected() -> None:
    logger.warning("nats disconnected")


async def _log_reconnected() -> None:
    logger.info("nats reconnected")


async def connect(url: str, *, name: str) -> NATS:
    """Connect, retrying until NATS answers; afterwards the client reconnects by itself forever."""
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
                error_cb=_log_error,
                disconnected_cb=_log_disconnected,
                reconnected_cb=_log_reconnected,
            )
        except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
            logger.warning("nats not reachable, retrying", extra={"url": url, "error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
