"""Settings of the tickets service (environment variables, see the README's configuration table)."""

from pydantic import Field

from ticketing_common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "tickets"
    # The read model behind GET /api/tickets/:id (cache.py); 0 entries turns it off.
    ticket_cache_size: int = Field(default=50_000, ge=0)
    ticket_cache_ttl_seconds: float = Field(default=300.0, gt=0)
