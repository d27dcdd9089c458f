"""A service's event machinery for one process: the NATS connection, its outbox publisher and its listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database
from ticketing_common.events.bus import connect, ensure_stream
from ticketing_common.events.catalogue import Event
from ticketing_common.events.listener import Listener, ListenerRunner
from ticketing_common.events.outbox import OutboxPublisher
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.events")


class EventRuntime:
    """Starts in the background (NATS may come up later than the service) and stops cleanly."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        db: Database,
        listeners: Callable[[], Sequence[Listener[Event]]] | None = None,
        metrics: Metrics | None = None,
        publisher: bool = True,
    ) -> None:
        self.settings = settings
        self.db = db
        self._build_listeners = listeners
        self.listeners: list[Listener[Event]] = []
        self.metrics = metrics
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.publisher: OutboxPublisher | None = None
        self.runners: list[ListenerRunner] = []
        self._with_publisher = publisher
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher_task: asyncio.Task[None] | None = None
        self._undo_wake: Callable[[], None] | None = None
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected and self._ready.is_set()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def when_connected(self, attach: Callable[[NATS], Awaitable[None]], *, name: str) -> None:
        """Run ``attach(nc)`` once NATS is connected (it may come up after the service), again a second later
        while it fails; cancelled by :meth:`stop`. For what a service subscribes to besides its listeners."""

        async def attach_when_connected() -> None:
            while True:
                try:
                    await self.wait_ready(timeout=3600.0)
                    assert self.nc is not None
                    await attach(self.nc)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("cannot attach yet", extra={"attaching": name, "error": repr(exc)})
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(attach_when_connected(), name=name))

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._start(), name="events-start"))

    async def _start(self) -> None:
        settings = self.settings
        self.nc = await connect(settings.nats_url, name=settings.service_name)
        self.js = self.nc.jetstream()
        while True:
            try:
                await ensure_stream(self.js, settings.nats_stream, replicas=settings.nats_stream_replicas)
                break
            except Exception as exc:
                logger.warning("cannot ensure stream yet", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
        if self._with_publisher:
            self.publisher = OutboxPublisher(
                pool=self.db.pool,
                js=self.js,
                stream=settings.nats_stream,
                metrics=self.metrics,
                sweep_after_seconds=settings.outbox_sweep_after_seconds,
            )
            self._undo_wake = self.db.watch_commits(self.publisher.submit)
            self._publisher_task = asyncio.create_task(self.publisher.run(), name="outbox-publisher")
            self._tasks.append(self._publisher_task)
        # Built once NATS is there, so a listener can hold the connection it needs (never one per event).
        self.listeners = list(self._build_listeners()) if self._build_listeners is not None else []
        for listener in self.listeners:
            runner = ListenerRunner(
                listener,
                service=settings.service_name,
                js=self.js,
                stream=settings.nats_stream,
                db=self.db,
                metrics=self.metrics,
                max_deliveries=settings.event_max_deliveries,
                ack_wait=settings.event_ack_wait_seconds,
                concurrency=settings.event_concurrency,
                batch_size=settings.event_batch_size,
                slow_seconds=settings.log_slow_seconds,
                sample_every=settings.log_sample_every,
            )
            self.runners.append(runner)
            self._tasks.append(asyncio.create_task(runner.run(), name=f"listener-{runner.consumer}"))
        self._ready.set()
        logger.info("events ready", extra={"listeners": [r.consumer for r in self.runners]})

    async def stop_publisher(self) -> None:
        """Stop only the outbox publisher (tests drive the sweeper by hand)."""
        if self._undo_wake is not None:
            self._undo_wake()
            self._undo_wake = None
        if self._publisher_task is not None:
            self._publisher_task.cancel()
            await asyncio.gather(self._publisher_task, return_exceptions=True)

    async def stop(self) -> None:
        if self._undo_wake is not None:
            self._undo_wake()
            self._undo_wake = None
        for runner in self.runners:
            runner.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
