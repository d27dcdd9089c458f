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
    order_admission_wait_seconds: float = Field(
        default=3.0,
        ge=0,
        le=30,
        description=(
            "How long an order waits for the buyer's admission from the waiting room, or for the copy of the"
            " ticket's event, before its refusal; 0: refuse at once (ORDER_ADMISSION_WAIT_SECONDS)."
        ),
    )
    order_admission_waiters: int = Field(
        default=1000,
        ge=1,
        description="Orders waiting for an admission or an event's copy at once, per process; beyond, 503.",
    )
    order_attempts_per_second: float = Field(
        default=5.0,
        gt=0,
        description="Order attempts a buyer may make per second on average, per process (ORDER_ATTEMPTS_PER_SECOND).",
    )
    order_attempts_burst: int = Field(
        default=10,
        ge=1,
        description="Order attempts a buyer may make at once before the rate applies (ORDER_ATTEMPTS_BURST).",
    )
    order_attempts_buyers: int = Field(
        default=100_000,
        ge=1,
        description="Buyers whose attempts a process counts at once; the least recently seen are forgotten first.",
    )
