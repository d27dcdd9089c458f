"""Settings of the gateway: where each service listens (``<SERVICE>_URL``) and where the gateway itself listens."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from ticketing_common.config import HEADER_TIMEOUT_SECONDS, ServiceSettings


class Settings(BaseSettings):
    """Every field is an environment variable of the same name (upper case)."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "gateway"
    host: str = "127.0.0.1"
    port: int = 8080
    auth_url: str = ""
    tickets_url: str = ""
    orders_url: str = ""
    payments_url: str = ""
    client_url: str = ""
    upstream_timeout_seconds: float = 30.0
    max_connections: int = 512
    # The services' own limit (MAX_BODY_BYTES): the gateway refuses a larger body before it forwards anything.
    max_body_bytes: int = ServiceSettings.model_fields["max_body_bytes"].default
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("auth_url", "tickets_url", "orders_url", "payments_url", "client_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """A service's base URL: scheme, host and port only, so a request's path is all the gateway adds."""
        if not value:
            return value
        parsed = URL(value.rstrip("/"))
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.host
            or parsed.user
            or parsed.path not in ("", "/")
            or parsed.query_string
            or parsed.fragment
        ):
            raise ValueError(f"must be http(s)://host:port with nothing else, not {value!r}")
        return str(parsed)

    def upstreams(self) -> dict[str, URL]:
        """Configured services by name (a service without a URL is not part of this deployment)."""
        urls = {
            "auth": self.auth_url,
            "tickets": self.tickets_url,
            "orders": self.orders_url,
            "payments": self.payments_url,
            "client": self.client_url,
        }
        return {name: URL(url) for name, url in urls.items() if url}
