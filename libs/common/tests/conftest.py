"""Fixtures running the demo service of ``common_demo`` against the session's real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from common_demo import MIGRATIONS, DemoSettings, build_demo_app
from fastapi import FastAPI

from ticketing_common.testing import (
    TestInfra,
    prepare_database,
    reset_stream,
    running,
    settings_for,
    truncate_all,
)


@pytest.fixture
async def demo_settings(infra: TestInfra, js: Any) -> DemoSettings:
    settings = settings_for(DemoSettings, infra)
    await prepare_database(settings, MIGRATIONS)
    await truncate_all(settings)
    await reset_stream(js, settings.nats_stream)
    return settings


@pytest.fixture
async def demo_app(demo_settings: DemoSettings) -> AsyncIterator[FastAPI]:
    async with running(build_demo_app(demo_settings)) as app:
        yield app
