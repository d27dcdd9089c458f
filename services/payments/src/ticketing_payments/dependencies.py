"""Request dependencies of the payments service: its settings, its Stripe gateway and its waiting payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ticketing_payments.config import Settings
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.stripe_gateway import StripeGateway


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _stripe(request: Request) -> StripeGateway:
    gateway: StripeGateway = request.app.state.stripe
    return gateway


async def _order_copy_waits(request: Request) -> OrderCopyWaits:
    waits: OrderCopyWaits = request.app.state.order_copy_waits
    return waits


PaymentsSettingsDep = Annotated[Settings, Depends(_settings)]
StripeDep = Annotated[StripeGateway, Depends(_stripe)]
OrderCopyWaitsDep = Annotated[OrderCopyWaits, Depends(_order_copy_waits)]
