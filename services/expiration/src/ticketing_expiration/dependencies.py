"""Request dependencies of the expiration service: its settings (it serves no route of its own that needs more)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ticketing_common.app import from_app_state
from ticketing_expiration.config import Settings

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
