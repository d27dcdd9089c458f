"""Settings of the web client (environment variables, see the service README's configuration table).

The client has no database, no NATS and no secret: it is a browser-facing app that calls the APIs through the
gateway with the visitor's own cookie, so it does not extend ``ServiceSettings`` (which requires ``JWKS_URL``).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ticketing_common.client_address import DEFAULT_TRUSTED_PROXIES, TrustedProxies
from ticketing_common.config import ObservabilitySettings
from ticketing_common.routes import ROUTES, ServiceUrls

STRIPE_API = "https://api.stripe.com"


class Settings(ServiceUrls, ObservabilitySettings):
    """Every field is an environment variable of the same name (upper case)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    service_name: str = "client"
    host: str = "0.0.0.0"
    port: int = 3000

    api_url: str = Field(default="http://127.0.0.1:8080", description="The gateway (or ingress) in front of the APIs.")
    # Each API is called where it lives (<SERVICE>_URL), not through the gateway, which replaces X-Forwarded-For
    # with its peer: only so does a service see the visitor's address (auth's sign-in limits count per address).
    trusted_proxies: TrustedProxies = Field(
        default=DEFAULT_TRUSTED_PROXIES,
        description="IPs/CIDRs of the proxies (the gateway, the Ingress) whose X-Forwarded-For names the visitor.",
    )
    api_host: str = Field(default="", description="Host header sent to API_URL (e.g. ticketing.dev behind ingress).")
    api_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Per API call, waiting for a connection included."
    )
    api_max_connections: int = Field(
        default=256, ge=1, description="Open connections to API_URL at most (kept alive and reused between calls)."
    )

    tickets_per_page: int = Field(default=20, ge=1, le=100)
    events_per_page: int = Field(default=20, ge=1, le=100, description="Events per page of the events' list.")
    currency: str = "usd"
    payment_confirm_seconds: float = Field(
        default=3.0, ge=0, description="How long a successful payment waits for the order to turn complete."
    )
    copy_wait_seconds: float = Field(
        default=3.0,
        ge=0,
        description="How long a purchase retries while the orders service's copy of a new ticket lags.",
    )
    order_poll_seconds: float = Field(default=2.0, gt=0, description="How often the order page asks for its status.")
    queue_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often the waiting room page asks for the buyer's place."
    )

    stripe_publishable_key: str = ""
    stripe_api_base: str = ""

    max_body_bytes: int = 64 * 1024

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def api_urls(self) -> dict[str, str]:
        """Where each API of the route table is called (API_URL for those without a URL of their own)."""
        own = self.service_urls()
        return {
            route.service: str(own.get(route.service, self.api_url)) for route in ROUTES if route.service != "client"
        }

    @field_validator("stripe_publishable_key")
    @classmethod
    def _publishable_only(cls, value: str) -> str:
        # This key is written into every order page: a secret key here would be published.
        value = value.strip()
        if value and not value.startswith("pk_"):
            raise ValueError("STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_test_... or pk_live_...)")
        return value

    @property
    def stripe_elements(self) -> bool:
        """Real Stripe mode: a publishable key and no local stand-in, so the page uses Stripe's card element."""
        stand_in = self.stripe_api_base.strip().rstrip("/") not in ("", STRIPE_API)
        return bool(self.stripe_publishable_key) and not stand_in
