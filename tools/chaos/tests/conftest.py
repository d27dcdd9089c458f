"""One whole system (as ``make up`` runs it) for the hostile-input suite, its every log line kept in a file so
the suite can prove that no secret was ever logged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ticketing_chaos.hostile import (
    PASSWORD,
    SESSION_KEY,
    SIGNIN_MAX_FAILURES,
    SIGNIN_MAX_FAILURES_PER_ADDRESS,
    STRIPE_KEY,
    System,
)
from ticketing_common.keys import KeyRing, write_key_ring
from ticketing_launcher.stack import isolated_environ, throwaway_stack


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    key_file = tmp_path_factory.mktemp("keys") / "session-keys.json"
    write_key_ring(key_file, KeyRing((SESSION_KEY,)))
    environ = isolated_environ(
        SESSION_KEY_FILE=str(key_file),
        SIGNIN_MAX_FAILURES=str(SIGNIN_MAX_FAILURES),
        SIGNIN_MAX_FAILURES_PER_ADDRESS=str(SIGNIN_MAX_FAILURES_PER_ADDRESS),
        # Cheap hashing: the suite signs many users up; the cost of Argon2 is the auth service's own test.
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST="1024",
        ARGON2_PARALLELISM="1",
        LOG_LEVEL="DEBUG",
        HEADER_TIMEOUT_SECONDS="2",  # the slow-client tests wait for it
    )
    log_file = tmp_path_factory.mktemp("hostile") / "system.log"
    with log_file.open("w") as sink, throwaway_stack(environ, log_sink=sink, prefix="ticketing-hostile-") as stack:
        yield System(stack, log_file, {SESSION_KEY.private_jwk()["d"], STRIPE_KEY, PASSWORD})
