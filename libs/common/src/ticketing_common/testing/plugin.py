"""pytest plugin: one real PostgreSQL and one real nats-server per test session, and helpers.

When ``DATABASE_URL`` / ``NATS_URL`` are set those servers are used (each on its own); otherwise throwaway
embedded servers start on free ports in a temporary folder. Services' conftests build on :func:`service_app`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ticketing_common.config import ServiceSettings
from ticketing_common.embedded import EmbeddedNats, EmbeddedPostgres
from ticketing_common.testing.helpers import (
    JwksServer,
    ReceivedEvent,
    ServiceUnderTest,
    TestInfra,
    connect_nats,
    http_client,
    prepare_database,
    reset_stream,
    running,
    settings_for,
    stream_events,
    truncate_all,
    wait_until,
)
from ticketing_common.testing.migrations import MigratedDatabase, fresh_database


@pytest.fixture(scope="session")
def infra() -> Iterator[TestInfra]:
    """Real PostgreSQL and NATS servers for the whole test session, and the test JWK Set served over HTTP."""
    database_url = os.environ.get("DATABASE_URL")
    nats_url = os.environ.get("NATS_URL")
    started: list[EmbeddedPostgres | EmbeddedNats] = []
    with tempfile.TemporaryDirectory(prefix="ticketing-test-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL may run as another OS user
        if not database_url:
            postgres = EmbeddedPostgres(root / "postgres", durable=False)
            database_url = postgres.start()
            started.append(postgres)
        if not nats_url:
            nats_server = EmbeddedNats(root / "nats")
            nats_url = nats_server.start()
            started.append(nats_server)
        try:
            with JwksServer() as jwks:
                yield TestInfra(
                    database_url=database_url, nats_url=nats_url, root=root, jwks_url=jwks.url, servers=started
                )
        finally:
            for server in reversed(started):
                server.stop()


@pytest.fixture(scope="session")
async def nats_client(infra: TestInfra) -> AsyncIterator[NATS]:
    nc = await connect_nats(infra.nats_url)
    yield nc
    await nc.close()


@pytest.fixture(scope="session")
def js(nats_client: NATS) -> JetStreamContext:
    """JetStream, for tests that look at what was really published."""
    return nats_client.jetstream()


@pytest.fixture
def service() -> ServiceUnderTest:
    """Overridden by each service's conftest: which service the fixtures below run."""
    raise pytest.UsageError("define a `service` fixture returning ServiceUnderTest in your conftest.py")


@pytest.fixture
async def settings(service: ServiceUnderTest, infra: TestInfra, js: JetStreamContext) -> ServiceSettings:
    """The service's settings on the test servers, its database migrated and emptied, the bus empty."""
    settings = settings_for(service.settings_cls, infra, **service.overrides)
    if service.migrations_dir is not None:
        await prepare_database(settings, service.migrations_dir)
        await truncate_all(settings)
    await reset_stream(js, settings.nats_stream)
    return settings


@pytest.fixture
async def migrated_db(service: ServiceUnderTest, infra: TestInfra) -> AsyncIterator[MigratedDatabase]:
    """For the service's migration tests: a database of their own (not the one ``settings`` names), created
    afresh for each test and migrated to head, with a connection to it (see ``ticketing_common.testing.migrations``).
    """
    if service.migrations_dir is None:
        raise pytest.UsageError(f"{service.settings_cls.__name__}'s service has no migrations to test")
    name = f"{settings_for(service.settings_cls, infra).database_name}_migrations"
    async with fresh_database(infra.database_url, name, service.migrations_dir) as database:
        yield database


@pytest.fixture
async def app(service: ServiceUnderTest, settings: ServiceSettings) -> AsyncIterator[FastAPI]:
    """The service running (database, outbox publisher and listeners started)."""
    async with running(service.create_app(settings)) as running_app:
        yield running_app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in-process."""
    async with http_client(app) as http:
        yield http


@pytest.fixture
def published(app: FastAPI, js: JetStreamContext) -> Callable[[str], Awaitable[list[ReceivedEvent]]]:
    """Reads every event on a subject once the app's outbox is drained: exactly what it has published so far."""

    async def read(subject: str) -> list[ReceivedEvent]:
        async def drained() -> bool:
            pending = await app.state.db.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            return pending == 0

        await wait_until(drained)
        return await stream_events(js, subject)

    return read
