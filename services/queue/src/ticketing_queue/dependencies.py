"""Request dependencies of the queue routes (the database, ``DatabaseDep``, comes from ``ticketing_common.app``)."""

from typing import Annotated

from fastapi import Depends

from ticketing_common.app import from_app_state
from ticketing_queue.config import Settings
from ticketing_queue.service import RevealedDraws

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
RevealedDrawsDep = Annotated[RevealedDraws, Depends(from_app_state("revealed_draws", RevealedDraws))]
