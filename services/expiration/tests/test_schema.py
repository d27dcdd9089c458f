"""The expiration service's own table, as its migrations leave it."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text


async def test_order_expiries_is_indexed_by_its_primary_key_alone(app: FastAPI) -> None:
    # The service reads order_expiries by order id only; the partial index of pending expiries (0004), which only
    # the in-process timers' re-arm read, is dropped by 0005.
    async with app.state.engine.connect() as conn:
        indexes = (
            await conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'order_expiries'"))
        ).all()
    assert indexes == ["pk_order_expiries"]
