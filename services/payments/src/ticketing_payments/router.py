"""HTTP routes of the payments service, under ``/api/payments``: thin, the use cases live in ``service.py``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from ticketing_common.app import DatabaseDep
from ticketing_common.auth import RequiredUser
from ticketing_common.errors import error_responses
from ticketing_payments.dependencies import OrderCopyWaitsDep, PaymentsSettingsDep, StripeDep
from ticketing_payments.schemas import PaymentIn, PaymentOut
from ticketing_payments.service import create_payment

router = APIRouter(prefix="/api/payments", tags=["payments"])


@router.post("", status_code=201, responses=error_responses(400, 401, 402, 404, 409, 503))
async def pay(
    body: PaymentIn,
    user: RequiredUser,
    db: DatabaseDep,
    stripe: StripeDep,
    settings: PaymentsSettingsDep,
    waits: OrderCopyWaitsDep,
) -> PaymentOut:
    """Charge the signed-in buyer's order with a Stripe card token; an order this service has not heard of yet
    is waited for (``PAYMENT_ORDER_WAIT_SECONDS``) before the 404."""
    payment = await create_payment(
        db=db,
        stripe=stripe,
        currency=settings.currency,
        buyer=user,
        order_id=body.order_id,
        token=body.token,
        cutoff=timedelta(seconds=settings.payment_cutoff_seconds),
        waits=waits,
        wait_seconds=settings.payment_order_wait_seconds,
    )
    return PaymentOut.model_validate(payment)
