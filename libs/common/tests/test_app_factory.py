"""The app factory: it returns a failed unit of work's connection and runs a service's own work inside the shared
start-up and shut-down; the test helper that finds routes FastAPI would run in its thread pool."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from common_demo import DemoSettings
from fastapi import APIRouter, Depends, FastAPI

from ticketing_common.app import DatabaseDep, create_app
from ticketing_common.auth import CurrentUser, RequiredUser
from ticketing_common.config import ServiceSettings
from ticketing_common.testing import http_client, running, session_settings, thread_pool_callables


def _settings() -> ServiceSettings:
    return ServiceSettings(**session_settings(), service_name="demo")


def _plain_dependency() -> int:
    return 1


async def _async_dependency(value: Annotated[int, Depends(_plain_dependency)]) -> int:
    return value


def test_finds_a_dependency_declared_with_a_plain_def_even_when_nested() -> None:
    router = APIRouter()

    @router.get("/nested")
    async def nested(value: Annotated[int, Depends(_async_dependency)]) -> int:
        return value

    app = create_app(_settings(), title="demo", routers=[router])

    assert [name.rsplit(".", 1)[-1] for name in thread_pool_callables(app)] == ["_plain_dependency"]


def test_finds_an_endpoint_declared_with_a_plain_def() -> None:
    router = APIRouter()

    @router.get("/sync")
    def sync_endpoint() -> int:
        return 1

    app = create_app(_settings(), title="demo", routers=[router])

    assert [name.rsplit(".", 1)[-1] for name in thread_pool_callables(app)] == ["sync_endpoint"]


async def test_accepts_the_shared_dependencies() -> None:
    router = APIRouter()

    @router.get("/me")
    async def me(user: CurrentUser, required: RequiredUser) -> str:
        return str(user)

    app = create_app(_settings(), title="demo", routers=[router])
    assert thread_pool_callables(app) == []
    async with http_client(app) as client:
        response = await client.get("/me")
    assert response.status_code == 401


async def test_a_unit_of_work_that_raises_rolls_back_and_returns_its_connection(demo_settings: DemoSettings) -> None:
    router = APIRouter()

    @router.post("/failing")
    async def failing(db: DatabaseDep) -> int:
        async with db.unit_of_work() as uow:
            await uow.conn.execute("INSERT INTO ticket_copies (id, title, version) VALUES (gen_random_uuid(), 'x', 0)")
            raise ValueError("the use case failed after writing")

    app = create_app(demo_settings.model_copy(update={"database_pool_size": 2}), title="demo", routers=[router])
    async with running(app), http_client(app) as client:
        for _ in range(5):  # more than the pool holds: each failure gave its connection back
            assert (await client.post("/failing")).status_code == 500
        assert await app.state.db.pool.fetchval("SELECT count(*) FROM ticket_copies") == 0


async def test_a_started_service_leaves_its_start_up_heap_out_of_garbage_collections(
    demo_settings: DemoSettings,
) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with running(create_app(demo_settings, title="demo")):
        assert gc.get_freeze_count() > 0


async def test_the_service_work_runs_between_the_shared_start_up_and_shut_down(demo_settings: DemoSettings) -> None:
    seen: list[str] = []

    @asynccontextmanager
    async def service_work(app: FastAPI) -> AsyncIterator[None]:
        # The database is already set up, and not yet torn down at the end.
        seen.append(f"started, database answers {await app.state.db.pool.fetchval('SELECT 1')}")
        yield
        seen.append(f"stopping, database answers {await app.state.db.pool.fetchval('SELECT 2')}")

    app = create_app(demo_settings, title="demo", while_running=service_work)
    async with running(app):
        assert seen == ["started, database answers 1"]
    assert seen == ["started, database answers 1", "stopping, database answers 2"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"])
@pytest.mark.parametrize("proxy_header", ["X-Forwarded-For", "Forwarded"])
async def test_returns_404_for_an_operational_endpoint_asked_through_a_proxy(
    demo_settings: DemoSettings, path: str, proxy_header: str
) -> None:
    app = create_app(demo_settings, title="demo")
    async with running(app), http_client(app) as client:
        direct = await client.get(path)
        proxied = await client.get(path, headers={proxy_header: "for=203.0.113.7"})
    assert direct.status_code == 200  # kubelet probes, Prometheus and the launcher come directly
    assert proxied.status_code == 404
    assert proxied.json() == {"errors": [{"message": "Not Found"}]}
