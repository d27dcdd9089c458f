"""Test support for the services: real servers (see ``plugin``), helpers, and migration tests (``migrations``)."""

import pytest

# Before the imports below, so that the asserts of ``migrations`` (the tests' own, in effect) report a diff too.
pytest.register_assert_rewrite("ticketing_common.testing.migrations")

from ticketing_common.testing.helpers import (  # noqa: E402
    TEST_KEY_RING,
    TEST_SIGNING_KEY,
    UNREACHABLE_JWKS_URL,
    JwksServer,
    ReceivedEvent,
    ServiceUnderTest,
    TestInfra,
    claims_of,
    http_client,
    prepare_database,
    recorded_statements,
    reset_stream,
    running,
    serve_in_a_process,
    session_key_file_for_tests,
    session_settings,
    session_token,
    settings_for,
    signin,
    stream_events,
    thread_pool_callables,
    truncate_all,
    wait_for_events,
    wait_until,
)
from ticketing_common.testing.migrations import (  # noqa: E402
    ALEMBIC_TABLE,
    Column,
    MigratedDatabase,
    Schema,
    fresh_database,
    sql_statements,
)

__all__ = [
    "ALEMBIC_TABLE",
    "TEST_KEY_RING",
    "TEST_SIGNING_KEY",
    "UNREACHABLE_JWKS_URL",
    "Column",
    "JwksServer",
    "MigratedDatabase",
    "ReceivedEvent",
    "Schema",
    "ServiceUnderTest",
    "TestInfra",
    "claims_of",
    "fresh_database",
    "http_client",
    "prepare_database",
    "recorded_statements",
    "reset_stream",
    "running",
    "serve_in_a_process",
    "session_key_file_for_tests",
    "session_settings",
    "session_token",
    "settings_for",
    "signin",
    "sql_statements",
    "stream_events",
    "thread_pool_callables",
    "truncate_all",
    "wait_for_events",
    "wait_until",
]
