"""Settings of the payments service (environment variables, see the README's configuration table)."""

from ticketing_common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "payments"
