"""Event listeners of the auth service: none, auth owns the users and only publishes their events."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from ticketing_common.events import Listener


def listeners(app: FastAPI) -> Sequence[Listener[Any]]:
    return []
