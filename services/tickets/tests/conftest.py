"""The tickets service under test, against the session's real PostgreSQL and NATS."""

import pytest

from ticketing_common.testing import ServiceUnderTest
from ticketing_tickets.config import Settings
from ticketing_tickets.main import MIGRATIONS_DIR, create_app


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)
