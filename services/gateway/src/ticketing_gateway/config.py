"""Settings of the gateway: where each service listens (``<SERVICE>_URL``) and where the gateway itself listens."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict
from yarl import URL

from ticketing_common.config import HEADER_TIMEOUT_SECONDS, ObservabilitySettings, ServiceSettings
from ticketing_common.routes import ServiceUrls


class Settings(ServiceUrls, ObservabilitySettings):
    """Every field is an environment variable of the same name (upper case)."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "gateway"
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_timeout_seconds: float = 30.0
    max_connections: int = 512
    # The services' own limit (MAX_BODY_BYTES): the gateway refuses a larger body before it forwards anything.
    max_body_bytes: int = ServiceSettings.model_fields["max_body_bytes"].default
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS

    def upstreams(self) -> dict[str, URL]:
        """Configured services by name (a service without a URL is not part of this deployment)."""
        return self.service_urls()
