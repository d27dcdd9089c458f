"""The hand-written migrations create exactly the tables the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ticketing_orders.config import Settings
from ticketing_orders.models import Base


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # The messaging tables (outbox, inbox, parked) come from the shared library, not from these models.
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in Base.metadata.tables


async def test_the_migrated_schema_matches_the_models(settings: Settings) -> None:
    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _ours})
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
