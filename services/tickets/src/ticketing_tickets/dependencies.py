"""Request dependencies of the tickets service.

``GET /api/tickets/:id`` takes the database and the read model from ``request.app.state`` itself: it is the
hottest route, and every dependency FastAPI solves per request costs it throughput (bench/README.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ticketing_common.app import from_app_state
from ticketing_tickets.config import Settings

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
