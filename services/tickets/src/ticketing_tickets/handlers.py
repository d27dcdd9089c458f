"""Event listeners of the tickets service."""

from ticketing_common.config import ServiceSettings
from ticketing_common.events import Event, Listener


def listeners(settings: ServiceSettings) -> list[Listener[Event]]:
    return []
