"""The queue service under test, against the session's real PostgreSQL and NATS; the harness is in
``queue_testing.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.config import ServiceSettings
from ticketing_common.testing import ServiceUnderTest
from ticketing_queue.config import Settings
from ticketing_queue.main import MIGRATIONS_DIR, create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))  # queue_testing, shared by the test modules

from queue_testing import Queue


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)


@pytest.fixture
async def queue(app: FastAPI, client: httpx.AsyncClient, js: JetStreamContext, settings: ServiceSettings) -> Queue:
    """The default queue service (the plugin's ``app``) and the bus."""
    return Queue(app, client, js, settings.nats_stream)
