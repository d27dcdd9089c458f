"""Gateway settings: where each service listens (``<SERVICE>_URL``) and where the gateway itself listens."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from ticketing_common.config import HEADER_TIMEOUT_SECONDS, ServiceSettings


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

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

    def upstreams(self) -> dict[str, URL]:
        """Configured services by name (a service without a URL is not part of this deployment)."""
        urls = {
            "auth": self.auth_url,
            "tickets": self.tickets_url,
            "orders": self.orders_url,
            "payments": self.payments_url,
            "client": self.client_url,
        }
        return {name: _base_url(name, url) for name, url in urls.items() if url}


def _base_url(name: str, url: str) -> URL:
    """A service's base URL: scheme, host and port only, so a request's path is all the gateway adds."""
    parsed = URL(url.rstrip("/"))
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.user or parsed.path not in ("", "/"):
        raise ValueError(f"{name.upper()}_URL must be http(s)://host:port with nothing else, not {url!r}")
    if parsed.query_string or parsed.fragment:
        raise ValueError(f"{name.upper()}_URL must be http(s)://host:port with nothing else, not {url!r}")
    return parsed
