"""Gateway settings: where each service listens (``<SERVICE>_URL``) and where the gateway itself listens."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_level: str = "INFO"
    log_json: bool = True

    def upstreams(self) -> dict[str, str]:
        """Configured services by name (a service without a URL is not part of this deployment)."""
        urls = {
            "auth": self.auth_url,
            "tickets": self.tickets_url,
            "orders": self.orders_url,
            "payments": self.payments_url,
            "client": self.client_url,
        }
        return {name: url.rstrip("/") for name, url in urls.items() if url}
