"""Settings of the auth service (environment variables, see the service README's configuration table)."""

import os
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from ticketing_common.config import ServiceSettings
from ticketing_common.keys import KeyFileError, read_key_ring


class Settings(ServiceSettings):
    service_name: str = "auth"
    signs_sessions: ClassVar[bool] = True

    # The private session keys (a JWK Set, see `ticketing keys rotate`); auth is the only service that reads them.
    session_key_file: Path = Field(default=Path(""), description="SESSION_KEY_FILE")

    # Argon2id cost; the defaults are argon2-cffi's, RFC 9106's low-memory profile (64 MiB, 3 passes, 4 lanes).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65536, ge=8, description="KiB")
    argon2_parallelism: int = Field(default=4, ge=1)
    password_hash_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        ge=1,
        description="Hashes computed at once per process; bounds CPU and memory under a flood of sign-ins.",
    )

    # Failed password checks within the window, per (email, client address) and per client address across emails
    # (see the README's "Sign-in rate limits").
    signin_max_failures: int = Field(default=10, ge=1)
    signin_max_failures_per_address: int = Field(default=50, ge=1)
    signin_window_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)

    @field_validator("session_key_file")
    @classmethod
    def _session_keys_are_readable(cls, path: Path) -> Path:
        if path == Path(""):
            raise ValueError("SESSION_KEY_FILE must name auth's session key file (`ticketing keys rotate --file F`)")
        try:
            read_key_ring(path)
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
        return path

    @model_validator(mode="after")
    def _address_limit_covers_one_account(self) -> "Settings":
        if self.signin_max_failures_per_address < self.signin_max_failures:
            raise ValueError(
                "SIGNIN_MAX_FAILURES_PER_ADDRESS must be at least SIGNIN_MAX_FAILURES "
                f"({self.signin_max_failures}): an address's limit across emails includes its limit per email"
            )
        return self
