"""Settings of the queue service (environment variables, see the service README's settings table)."""

from pydantic import Field

from ticketing_common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "queue"
    queue_admit_per_second: float = Field(
        default=50.0,
        gt=0,
        le=10_000,
        description="Buyers let out of one event's waiting room per second, in position order (QUEUE_ADMIT_PER_SECOND).",
    )
    queue_admission_seconds: int = Field(
        default=600,
        gt=0,
        description="How long an admitted buyer may order the event's tickets (QUEUE_ADMISSION_SECONDS).",
    )
    queue_join_limit: int = Field(
        default=10,
        ge=1,
        description="Joins (POST /api/queue/:eventId, repeats included) one user may make per window (QUEUE_JOIN_LIMIT).",
    )
    queue_join_window_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="The window of QUEUE_JOIN_LIMIT, from the first join counted in it (QUEUE_JOIN_WINDOW_SECONDS).",
    )
    queue_event_wait_seconds: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="How long a join waits for the service's copy of a just-created event before its 404 "
        "(QUEUE_EVENT_WAIT_SECONDS).",
    )
    queue_admit_interval_seconds: float = Field(
        default=0.2,
        gt=0,
        le=1.0,
        description="How often each replica's admission loop looks for buyers to admit (QUEUE_ADMIT_INTERVAL_SECONDS); "
        "at most the one second of admissions a room may save up.",
    )
