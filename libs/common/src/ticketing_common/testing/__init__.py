"""Test support for the services: real servers (see ``plugin``) and helpers."""

from ticketing_common.testing.helpers import (
    TEST_JWT_KEY,
    ReceivedEvent,
    ServiceUnderTest,
    TestInfra,
    http_client,
    prepare_database,
    recorded_statements,
    reset_stream,
    running,
    settings_for,
    signin,
    stream_events,
    thread_pool_callables,
    truncate_all,
    wait_for_events,
    wait_until,
)

__all__ = [
    "TEST_JWT_KEY",
    "ReceivedEvent",
    "ServiceUnderTest",
    "TestInfra",
    "http_client",
    "prepare_database",
    "recorded_statements",
    "reset_stream",
    "running",
    "settings_for",
    "signin",
    "stream_events",
    "thread_pool_callables",
    "truncate_all",
    "wait_for_events",
    "wait_until",
]
