"""Which database failures mean "unreachable" (503, retry the event) rather than a bug (500, park)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError

from ticketing_common.db import is_connection_error


def _wrapped(cause: Exception, wrapper: type[DBAPIError] = DBAPIError) -> DBAPIError:
    """The chain SQLAlchemy's asyncpg dialect raises: its DBAPIError, around the adapted error, around asyncpg's."""
    adapted = Exception(str(cause))
    adapted.__cause__ = cause
    error = wrapper("SELECT 1", None, adapted)
    error.__cause__ = adapted
    return error


def test_a_server_that_is_starting_up_is_a_connection_error_even_wrapped_in_a_plain_dbapi_error() -> None:
    starting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")

    assert is_connection_error(_wrapped(starting))


def test_a_constraint_violation_is_not_a_connection_error() -> None:
    violation = asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint")

    assert not is_connection_error(_wrapped(violation, IntegrityError))
    assert not is_connection_error(ValueError("bad"))
