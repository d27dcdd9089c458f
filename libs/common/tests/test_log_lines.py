"""Which requests and events get a log line of their own: failures, slow ones, a sample, or all at DEBUG. The rest
are only counted in /metrics."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from common_demo import DemoSettings, build_demo_app
from fastapi import FastAPI

from ticketing_common.testing import http_client, running, wait_until

RunDemo = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def run_demo(demo_settings: DemoSettings, caplog: pytest.LogCaptureFixture) -> RunDemo:
    @asynccontextmanager
    async def run(**settings: Any) -> AsyncIterator[FastAPI]:
        app = build_demo_app(demo_settings.model_copy(update=settings))
        logging.getLogger().addHandler(caplog.handler)  # the app's logging set-up replaced the root's handlers
        async with running(app):
            yield app

    return run


def _lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


async def _create_tickets(app: FastAPI, count: int) -> None:
    """One at a time, each copy made before the next: every event is then handled on its own (a batch of several
    gets one "event batch" line instead, so counting lines would depend on timing)."""
    async with http_client(app) as client:
        for i in range(count):
            response = await client.post("/demo/tickets", json={"title": f"Seat {i}", "price": 10})
            assert response.status_code == 201
            await _copy_made(app, uuid.UUID(response.json()["id"]))


async def _copy_made(app: FastAPI, ticket_id: uuid.UUID) -> None:
    async def there() -> bool:
        return await app.state.db.pool.fetchval("SELECT 1 FROM ticket_copies WHERE id = $1", ticket_id) is not None

    await wait_until(there)


async def test_a_successful_request_and_its_event_get_no_log_line_but_are_counted(
    run_demo: RunDemo, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_demo() as app:
        await _create_tickets(app, 3)
        async with http_client(app) as client:
            metrics = (await client.get("/metrics")).text

    assert _lines(caplog, "request") == []
    assert _lines(caplog, "event") == []
    assert 'requests_total{method="POST",route="/demo/tickets",status="201"} 3.0' in metrics
    assert 'events_handled_total{outcome="ok",subject="ticket.created"} 3.0' in metrics


async def test_a_failed_request_is_logged_as_a_warning(run_demo: RunDemo, caplog: pytest.LogCaptureFixture) -> None:
    async with run_demo() as app, http_client(app) as client:
        assert (await client.get("/demo/errors/not-found")).status_code == 404
        assert (await client.get("/demo/errors/database")).status_code == 503

    [line] = _lines(caplog, "request")
    assert line.levelno == logging.WARNING
    assert vars(line)["status"] == 503
    assert vars(line)["route"] == "/demo/errors/{kind}"


async def test_a_slow_request_and_a_slow_event_are_logged(run_demo: RunDemo, caplog: pytest.LogCaptureFixture) -> None:
    async with run_demo(log_slow_seconds=1e-9) as app:  # everything is slow
        await _create_tickets(app, 2)

    assert [(r.levelno, vars(r)["status"]) for r in _lines(caplog, "request")] == [(logging.INFO, 201)] * 2
    assert [(r.levelno, vars(r)["outcome"]) for r in _lines(caplog, "event")] == [(logging.INFO, "ok")] * 2


async def test_one_request_and_one_event_in_every_log_sample_every_are_logged(
    run_demo: RunDemo, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_demo(log_sample_every=3) as app:
        await _create_tickets(app, 7)

    assert len(_lines(caplog, "request")) == 2
    assert len(_lines(caplog, "event")) == 2
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() in ("request", "event"))


async def test_every_request_and_event_is_logged_at_debug_level(
    run_demo: RunDemo, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_demo() as app:
        caplog.set_level(logging.DEBUG)
        await _create_tickets(app, 2)

    assert [r.levelno for r in _lines(caplog, "request")] == [logging.DEBUG] * 2
    assert [r.levelno for r in _lines(caplog, "event")] == [logging.DEBUG] * 2
