"""Settings of the expiration service (environment variables, see the README's configuration table)."""

from pydantic import Field

from ticketing_common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "expiration"

    expiry_timer_horizon_seconds: float = Field(
        default=3600.0, ge=0, description="Arm an in-process timer only for expiries this close."
    )
    expiry_timer_max_armed: int = Field(
        default=100_000, ge=0, description="At most this many armed timers per process (0: schedules alone)."
    )
    expiry_timer_grace_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How long after its timer the schedule of an order with a timer fires, should the timer not.",
    )
