"""HTTP routes of the payments service, under ``/api/payments``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from ticketing_common.app import DatabaseDep
from ticketing_common.auth import RequiredUser
from ticketing_common.errors import error_responses
from ticketing_payments import service
from ticketing_payments.dependencies import OrderCopyWaitsDep, SettingsDep, StripeDep
from ticketing_payments.schemas import PaymentIn, PaymentOut

router = APIRouter(prefix="/api/payments", tags=["payments"])


@router.post("", status_code=201, responses=error_responses(400, 401, 402, 404, 409, 503))
async def create_payment(
    body: PaymentIn,
    user: RequiredUser,
    db: DatabaseDep,
    stripe: StripeDep,
    waits: OrderCopyWaitsDep,
    settings: SettingsDep,
) -> PaymentOut:
    """Charge the signed-in buyer's order with a Stripe card token; an order this service has not heard of yet
    is waited for (``PAYMENT_ORDER_WAIT_SECONDS``) before the 404."""
    payment = await service.create_payment(
        db=db,
        stripe=stripe,
        waits=waits,
        currency=settings.currency,
        cutoff=timedelta(seconds=settings.payment_cutoff_seconds),
        wait_seconds=settings.payment_order_wait_seconds,
        buyer=user,
        order_id=body.order_id,
        token=body.token,
    )
    return PaymentOut.model_validate(payment)
