"""Settings every service shares, read from the environment (pydantic-settings).

A service subclasses :class:`ServiceSettings`, sets ``service_name`` and adds its own fields. Settings refuse
insecure or missing values at start-up with a message that says what to set.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ticketing_common.client_address import DEFAULT_TRUSTED_PROXIES, TrustedProxies
from ticketing_common.db import asyncpg_dsn, database_url
from ticketing_common.events.bus import MAX_AGE_SECONDS as STREAM_MAX_AGE_SECONDS
from ticketing_common.logging import DEFAULT_SLOW_SECONDS

HEADER_TIMEOUT_SECONDS = 10.0
# Revocations are rebuilt from the stream at start, so no session may outlive what the stream keeps.
MAX_SESSION_SECONDS = int(STREAM_MAX_AGE_SECONDS)


class ObservabilitySettings(BaseSettings):
    """How a process logs and traces: every service, the gateway and the web client."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    service_name: str = "service"
    log_level: str = "INFO"
    log_json: bool = True
    # Spans go over OTLP/HTTP to <endpoint>/v1/traces when set; tracing is off otherwise (ticketing_common.tracing).
    otel_exporter_otlp_endpoint: str = ""


class ServiceSettings(ObservabilitySettings):
    """Configuration common to every service; each field is an environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    service_name: str = "service"
    # Only auth holds the private keys (and so needs no JWKS_URL).
    signs_sessions: ClassVar[bool] = False
    host: str = "0.0.0.0"
    port: int = 3000

    database_url: str = Field(
        default="",
        description="A PostgreSQL server; the service uses its own database on it (DATABASE_NAME).",
    )
    database_name: str = ""
    database_pool_size: int = 20

    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "TICKETING"
    nats_stream_replicas: int = 1

    # Where auth publishes the public keys every other service verifies session tokens with.
    jwks_url: str = ""
    jwt_expires_seconds: int = Field(default=24 * 3600, gt=0, le=MAX_SESSION_SECONDS)
    cookie_secure: bool = True

    max_body_bytes: int = 64 * 1024
    trusted_proxies: TrustedProxies = Field(
        default=DEFAULT_TRUSTED_PROXIES,
        description="Comma-separated IPs/CIDRs of the proxies whose X-Forwarded-For is believed (client_address).",
    )
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS  # a connection's request headers arrive within this
    # A successful request or handled event gets no log line of its own (/metrics counts them; the cost is in
    # bench/README.md): only failures, the slow ones, one in LOG_SAMPLE_EVERY (0: none), or all at DEBUG.
    log_slow_seconds: float = Field(default=DEFAULT_SLOW_SECONDS, gt=0)
    log_sample_every: int = Field(default=0, ge=0)

    event_max_deliveries: int = 10
    event_ack_wait_seconds: float = 30.0
    # Batches of one subject applied at once, so a slow transaction does not hold up the events behind it.
    event_concurrency: int = Field(default=4, ge=1, le=64)
    # Up to this many events are applied in one transaction; at low load a batch is the one event that arrived.
    event_batch_size: int = Field(default=256, ge=1, le=1000)
    # Events a process committed but did not get to publish (a crash, a NATS outage) are sent by any replica's
    # sweeper once they are this old; younger ones are still in flight from memory.
    outbox_sweep_after_seconds: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _sessions_can_be_checked(self) -> ServiceSettings:
        if not self.signs_sessions and not self.jwks_url.startswith(("http://", "https://")):
            raise ValueError("JWKS_URL must be set to auth's JWK Set (http://<auth>/.well-known/jwks.json)")
        return self

    @model_validator(mode="after")
    def _database_defaults(self) -> ServiceSettings:
        if not self.database_name:
            self.database_name = f"ticketing_{self.service_name}"
        return self

    @property
    def database_dsn(self) -> str:
        """The ``postgresql://`` DSN asyncpg connects to at run time."""
        return asyncpg_dsn(self.sqlalchemy_url)

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL of this service's own database on ``DATABASE_URL``'s server."""
        if not self.database_url:
            raise ValueError("DATABASE_URL must be set (the launcher and tests set it for you)")
        return server_url_for_database(self.database_url, self.database_name)


def server_url_for_database(server_url: str, database: str) -> str:
    """Point a ``postgresql://`` server URL at ``database`` with the asyncpg driver."""
    return database_url(server_url, database=database, scheme="postgresql+asyncpg")
