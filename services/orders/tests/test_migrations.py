"""The hand-written migrations create exactly the tables the models describe, and downgrade cleanly."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ticketing_common.config import server_url_for_database
from ticketing_common.db import migrate
from ticketing_orders.config import Settings
from ticketing_orders.main import MIGRATIONS_DIR
from ticketing_orders.models import Base

OUR_TABLES = {"tickets", "orders", "charges"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # The messaging tables (outbox, inbox, parked) come from the shared library, not from these models.
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in Base.metadata.tables


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _inspect(url: str) -> tuple[list[Any], set[str]]:
    """The differences between the models and the database, and the database's tables."""

    def inspect(connection: Connection) -> tuple[list[Any], set[str]]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _ours})
        return list(compare_metadata(context, Base.metadata)), set(connection.dialect.get_table_names(connection))

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(inspect)
    finally:
        await engine.dispose()


async def test_the_migrations_match_the_models_and_downgrade_cleanly(settings: Settings) -> None:
    url = server_url_for_database(settings.database_url, "ticketing_orders_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    differences, tables = await _inspect(url)
    assert differences == []
    assert tables >= OUR_TABLES | MESSAGING_TABLES

    await asyncio.to_thread(command.downgrade, _alembic(url), "0001")
    _, tables = await _inspect(url)
    assert not OUR_TABLES & tables
    assert tables >= MESSAGING_TABLES

    await asyncio.to_thread(command.upgrade, _alembic(url), "head")
    differences, _ = await _inspect(url)
    assert differences == []
