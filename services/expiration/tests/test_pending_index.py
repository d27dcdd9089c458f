"""A starting replica re-arms timers for the pending expiries through a partial index that holds only those
(migration 0004), not by scanning every order the service has heard of."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from ticketing_expiration.service import pending_expiries_query


async def test_the_migrated_database_has_the_partial_index_of_pending_expiries(app: FastAPI) -> None:
    async with app.state.engine.connect() as conn:
        definition = await conn.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = 'order_expiries' AND indexname = :name"),
            {"name": "ix_order_expiries_pending"},
        )
    assert definition is not None
    assert "(expires_at)" in definition
    assert "WHERE ((cancelled_at IS NULL) AND (schedule_event_id IS NOT NULL))" in definition


async def test_the_re_arm_query_reads_the_partial_index(app: FastAPI) -> None:
    query = pending_expiries_query(within_seconds=3600, limit=100).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    async with app.state.engine.connect() as conn:
        # An empty table is cheapest to scan; forbid that to see whether the index can serve the query at all.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join((await conn.execute(text(f"EXPLAIN {query}"))).scalars())
    assert "ix_order_expiries_pending" in plan, plan
