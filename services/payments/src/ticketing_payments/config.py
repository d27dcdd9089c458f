"""Settings of the payments service (environment variables, see the service README's configuration table)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ticketing_common.config import ServiceSettings

STRIPE_API = "https://api.stripe.com"


class Settings(ServiceSettings):
    service_name: str = "payments"

    stripe_key: str = Field(default="", repr=False)
    """Stripe secret key (``sk_test_...`` / ``sk_live_...``, or a restricted ``rk_`` key); required to serve."""
    stripe_api_base: str | None = None
    """Where the ``stripe`` library sends requests; unset (Stripe itself) in production, the fake in dev and tests."""
    stripe_max_network_retries: int = Field(default=2, ge=0, le=5)
    stripe_timeout_seconds: float = Field(default=15.0, gt=0, le=80)
    currency: str = "usd"
    payment_cutoff_seconds: float = Field(default=2.0, ge=0)
    """No new charge starts in the last seconds of an order's window: the charge and its ``charge.created`` need
    that long to reach the orders service ahead of the expiry (which would otherwise win, and the charge be
    refunded)."""
    payment_order_wait_seconds: float = Field(default=3.0, ge=0, le=30)
    """How long a payment waits for its order's copy (``order.created`` still on its way) before its 404."""
    payment_order_waiters: int = Field(default=1000, ge=1)
    """Payments waiting for their order's copy at once, per process; beyond, a 503 with ``Retry-After``."""

    @field_validator("stripe_key")
    @classmethod
    def _stripe_key_is_secret(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("sk_", "rk_")):
            raise ValueError("STRIPE_KEY must be a Stripe secret key (sk_test_..., sk_live_... or rk_...)")
        return value

    @field_validator("stripe_api_base")
    @classmethod
    def _api_base(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("STRIPE_API_BASE must be an http(s) URL")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 3 or not value.isascii() or not value.isalpha():
            raise ValueError("CURRENCY must be a three-letter ISO currency code such as usd")
        return value

    @model_validator(mode="after")
    def _no_live_key_off_stripe(self) -> Settings:
        # A live key sent to a stand-in (or any other host) would leak a real secret.
        off_stripe = self.stripe_api_base not in (None, STRIPE_API)
        if off_stripe and self.stripe_key.startswith(("sk_live_", "rk_live_")):
            raise ValueError("STRIPE_API_BASE is set: STRIPE_KEY must be a test key (sk_test_...), never a live one")
        return self
