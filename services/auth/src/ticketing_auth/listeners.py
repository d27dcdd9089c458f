"""Event listeners of the auth service: none, auth owns users and only publishes their events."""

from ticketing_common.config import ServiceSettings
from ticketing_common.events import Event, Listener


def listeners(settings: ServiceSettings) -> list[Listener[Event]]:
    return []
