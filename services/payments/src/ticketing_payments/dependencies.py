"""Request dependencies of the payments service: its settings and its Stripe gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ticketing_payments.config import Settings
from ticketing_payments.stripe_gateway import StripeGateway


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _stripe(request: Request) -> StripeGateway:
    gateway: StripeGateway = request.app.state.stripe
    return gateway


PaymentsSettingsDep = Annotated[Settings, Depends(_settings)]
StripeDep = Annotated[StripeGateway, Depends(_stripe)]
