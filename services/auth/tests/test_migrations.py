"""The hand-written migrations create exactly the tables the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import MetaData

from ticketing_auth.models import Base
from ticketing_common.db import MessagingBase


async def test_the_migrated_schema_matches_the_models(app: FastAPI) -> None:
    metadata = MetaData()
    for table in [*Base.metadata.tables.values(), *MessagingBase.metadata.tables.values()]:
        table.to_metadata(metadata)

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with app.state.engine.connect() as connection:
        diff = await connection.run_sync(differences)

    # The messaging tables' partial index is created by the shared migration helper only.
    diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_outbox_pending")]
    assert diff == []
