"""Settings of the expiration service (environment variables, see the README's configuration table)."""

from ticketing_common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "expiration"
