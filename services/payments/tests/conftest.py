"""The payments service under test, against the session's real PostgreSQL and NATS."""

import pytest

from ticketing_common.testing import ServiceUnderTest
from ticketing_payments.config import Settings
from ticketing_payments.main import MIGRATIONS_DIR, create_app


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)
