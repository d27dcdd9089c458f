"""The hand-written migrations build exactly the tables the models describe, and downgrade cleanly."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ticketing_common.config import server_url_for_database
from ticketing_common.db import migrate
from ticketing_tickets.main import MIGRATIONS_DIR
from ticketing_tickets.models import Base


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _differences(url: str) -> list:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    finally:
        await engine.dispose()
    # The messaging tables come from the shared library's helper, not from this service's models.
    ours = set(Base.metadata.tables)
    return [
        d
        for d in diff
        if not (d[0] == "remove_table" and d[1].name not in ours)
        and not (d[0] == "remove_index" and d[1].table.name not in ours)
    ]


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
    finally:
        await engine.dispose()


async def test_migrations_match_the_models_and_downgrade_cleanly(settings) -> None:
    url = server_url_for_database(settings.database_url, "ticketing_tickets_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    assert await _differences(url) == []
    assert {"tickets", "cancelled_orders", "outbox", "processed_events", "parked_messages"} <= await _tables(url)

    await asyncio.to_thread(command.downgrade, _alembic(url), "0001")
    assert not {"tickets", "cancelled_orders"} & await _tables(url)
    await asyncio.to_thread(command.upgrade, _alembic(url), "head")
    assert await _differences(url) == []
