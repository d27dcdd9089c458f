"""Request dependencies of the orders routes (the database, ``DatabaseDep``, comes from ``ticketing_common.app``)."""

from typing import Annotated

from fastapi import Depends

from ticketing_common.app import from_app_state
from ticketing_orders.attempts import AttemptLimiter
from ticketing_orders.config import Settings
from ticketing_orders.sale_waits import SaleCopyWaits

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
SaleWaitsDep = Annotated[SaleCopyWaits, Depends(from_app_state("sale_waits", SaleCopyWaits))]
OrderAttemptsDep = Annotated[AttemptLimiter, Depends(from_app_state("order_attempts", AttemptLimiter))]
