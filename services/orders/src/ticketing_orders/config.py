"""Settings of the orders service (environment variables, see the README's configuration table)."""

from pydantic import Field

from ticketing_common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "orders"
    order_expiration_seconds: int = Field(
        default=15 * 60,
        gt=0,
        description="How long a new order holds its ticket before it expires unless paid (ORDER_EXPIRATION_SECONDS).",
    )
