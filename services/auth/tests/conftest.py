"""The auth service under test, against the session's real PostgreSQL and NATS."""

import pytest

from ticketing_auth.config import Settings
from ticketing_auth.main import MIGRATIONS_DIR, create_app
from ticketing_common.testing import ServiceUnderTest


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)
