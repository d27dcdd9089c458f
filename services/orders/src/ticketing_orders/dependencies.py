"""Request dependencies of the orders routes (the database, ``DatabaseDep``, comes from ``ticketing_common.app``)."""

from typing import Annotated

from fastapi import Depends

from ticketing_common.app import from_app_state
from ticketing_orders.config import Settings

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
