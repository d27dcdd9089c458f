"""Which database failures mean "unreachable" (503, retry the event) rather than a bug (500, park)."""

from __future__ import annotations

import asyncpg
import pytest

from ticketing_common.db import is_connection_error, violated_constraint

pytestmark = pytest.mark.unit


def test_a_server_that_is_starting_up_is_a_connection_error_even_when_wrapped() -> None:
    starting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    wrapped = RuntimeError("use case failed")
    wrapped.__cause__ = starting

    assert is_connection_error(starting)
    assert is_connection_error(wrapped)


def test_a_server_shutting_down_or_a_closed_connection_is_a_connection_error() -> None:
    assert is_connection_error(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert is_connection_error(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
    assert is_connection_error(ConnectionResetError())


def test_a_connection_left_waiting_by_a_dead_server_is_a_connection_error_but_other_client_errors_are_not() -> None:
    left_waiting = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )

    assert is_connection_error(left_waiting)
    assert not is_connection_error(asyncpg.exceptions.InternalClientError("unexpected codec state"))


def test_a_constraint_violation_is_not_a_connection_error_and_names_its_constraint() -> None:
    violation = asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint")
    violation.constraint_name = "uq_users_email"

    assert not is_connection_error(violation)
    assert not is_connection_error(ValueError("bad"))
    assert violated_constraint(violation) == "uq_users_email"
    assert violated_constraint(ValueError("bad")) is None
