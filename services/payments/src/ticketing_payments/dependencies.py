"""Request dependencies of the payments service: its settings, its Stripe gateway and its waiting payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ticketing_common.app import from_app_state
from ticketing_payments.config import Settings
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.stripe_gateway import StripeGateway

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
StripeDep = Annotated[StripeGateway, Depends(from_app_state("stripe", StripeGateway))]
OrderCopyWaitsDep = Annotated[OrderCopyWaits, Depends(from_app_state("order_copy_waits", OrderCopyWaits))]
