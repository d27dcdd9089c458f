"""Use cases of the payments service: pay for an order once, refund it if the order was cancelled after all, and
keep the copies of orders and users' emails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from ticketing_common.auth import UserPayload
from ticketing_common.db import Database, UnitOfWork, new_id, utcnow
from ticketing_common.errors import (
    BadRequestError,
    ConflictError,
    CustomError,
    FieldError,
    NotFoundError,
    PaymentRequiredError,
    ServiceUnavailableError,
)
from ticketing_common.events import (
    ChargeCreated,
    NotYet,
    OrderCancelled,
    OrderCreated,
    OrderStatus,
    UserCreated,
    UserUpdated,
    is_next_version,
)
from ticketing_common.schemas import to_cents
from ticketing_payments import queries
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.queries import Payment
from ticketing_payments.stripe_gateway import (
    AttemptInDoubt,
    CardDeclined,
    ChargeRefused,
    ProviderUnavailable,
    StripeGateway,
)

logger = logging.getLogger("ticketing.payments")

PROVIDER_UNAVAILABLE = "Payment provider unavailable"
ORDER_NOT_FOUND = "Order not found"
ORDER_ALREADY_PAID = "Order already paid"
RECHECK_SECONDS = 1.0
ATTEMPT_IN_DOUBT = (
    "An earlier payment attempt of this order, with another card or email, has an unknown outcome: "
    "retry with the same card"
)


def idempotency_key(order_id: uuid.UUID, attempt: int) -> str:
    """Stripe's idempotency key of an order's charge attempt: every retry of one attempt sends the same key."""
    return f"charge-{order_id}-{attempt}"


class OrderNotCopiedYet(NotFoundError):
    """This service has no copy of the order (yet): its ``order.created`` may still be on its way."""

    default_message = ORDER_NOT_FOUND


async def create_payment(
    *,
    db: Database,
    stripe: StripeGateway,
    currency: str,
    buyer: UserPayload,
    order_id: uuid.UUID,
    token: str,
    cutoff: timedelta = timedelta(0),
    waits: OrderCopyWaits | None = None,
    wait_seconds: float = 0.0,
) -> Payment:
    """Pay for the order as :func:`charge_order` does, waiting up to ``wait_seconds`` for its copy to arrive.

    No database connection is held while waiting: each check is a transaction of its own. The waiter is
    registered before the re-check that precedes every wait, so a copy committed in between still wakes it; the
    periodic re-check covers a wake-up lost on its way from another replica.
    """
    charge = partial(
        charge_order,
        db=db,
        stripe=stripe,
        currency=currency,
        buyer=buyer,
        order_id=order_id,
        token=token,
        cutoff=cutoff,
    )
    try:
        return await charge()
    except OrderNotCopiedYet:
        if waits is None or wait_seconds <= 0:
            raise
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    with waits.watch(order_id) as copied:
        while True:
            copied.clear()
            try:
                return await charge()
            except OrderNotCopiedYet:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(copied.wait(), min(remaining, RECHECK_SECONDS))


async def charge_order(
    *,
    db: Database,
    stripe: StripeGateway,
    currency: str,
    buyer: UserPayload,
    order_id: uuid.UUID,
    token: str,
    cutoff: timedelta = timedelta(0),
) -> Payment:
    """Charge the buyer's order through Stripe and record it with its ``charge.created``, exactly once.

    The order's row stays locked from the checks to the commit, the Stripe call included, so concurrent payments
    of one order (on any replica) run one after the other and the later ones find it paid. The charge's
    idempotency key comes from the order and its attempt number, so a retry after a lost answer, a timeout or a
    crash before the commit replays Stripe's first answer instead of charging again.
    """
    refusal: CustomError | None = None
    payment: Payment | None = None
    async with db.unit_of_work() as uow:
        order = await queries.lock_order_to_pay(uow.conn, order_id, buyer.id)
        if order is None:
            raise OrderNotCopiedYet()
        if order.user_id != buyer.id:
            raise NotFoundError(ORDER_NOT_FOUND)  # at once: never wait on, or reveal, another buyer's order
        if order.status == OrderStatus.CANCELLED:
            raise BadRequestError("Cannot pay for a cancelled order")
        if order.status == OrderStatus.COMPLETE or order.paid:
            raise BadRequestError(ORDER_ALREADY_PAID)
        if order.expires_at - cutoff <= utcnow():
            # Its ticket is (about to be) released to other buyers: too late to start a charge.
            raise BadRequestError("Cannot pay for an expired order")
        try:
            charge = await stripe.charge(
                amount=to_cents(order.price),
                currency=currency,
                token=token,
                receipt_email=order.buyer_email or buyer.email,  # the session's email until user events arrive
                order_id=order_id,
                idempotency_key=idempotency_key(order_id, order.charge_attempt),
            )
        except CardDeclined as exc:
            # Stripe saved this "no" under the key: the next attempt (with another card) needs a new key.
            await queries.next_charge_attempt(uow.conn, order_id)
            refusal = PaymentRequiredError(exc.message)
        except ChargeRefused as exc:
            await queries.next_charge_attempt(uow.conn, order_id)
            refusal = FieldError("token", exc.message) if "token" in (exc.param or "") else BadRequestError(exc.message)
        except AttemptInDoubt:
            raise ConflictError(ATTEMPT_IN_DOUBT) from None
        except ProviderUnavailable:
            raise ServiceUnavailableError(PROVIDER_UNAVAILABLE) from None
        else:
            payment = await queries.record_payment(
                uow.conn,
                payment_id=new_id(),
                order_id=order_id,
                stripe_id=charge.stripe_id,
                amount=charge.amount,
                currency=charge.currency,
            )
            if payment is None:
                # Unreachable while the row lock holds, but the constraint is the guarantee.
                raise BadRequestError(ORDER_ALREADY_PAID)
            uow.publish(
                ChargeCreated(
                    id=payment.id,
                    order_id=order_id,
                    stripe_id=payment.stripe_id,
                    amount=payment.amount,
                    currency=payment.currency,
                )
            )
    if refusal is not None:
        logger.info("payment refused", extra={"order_id": str(order_id), "reason": refusal.message})
        raise refusal
    assert payment is not None
    logger.info("order paid", extra={"order_id": str(order_id), "stripe_id": payment.stripe_id})
    return payment


async def copy_created_order(*, uow: UnitOfWork, event: OrderCreated) -> None:
    """Start the order's copy; a copy that exists already (a re-published event) stays as it is."""
    await queries.copy_order(uow.conn, event)


async def copy_created_orders(*, uow: UnitOfWork, events: Sequence[OrderCreated]) -> None:
    """:func:`copy_created_order` for a batch of events, in one statement."""
    await queries.copy_orders(uow.conn, events)


async def copy_cancelled_order(*, uow: UnitOfWork, event: OrderCancelled) -> Payment | None:
    """Cancel the copy when the event is its next version (later: ``NotYet``; earlier: already applied).

    Returns the order's payment when it must be paid back: this service charged the order, then the orders
    service cancelled it before it heard of the charge (the buyer cancelled, or the expiry fired, first).
    """
    change = await queries.cancel_order(uow.conn, event.id, event.version)
    if not is_next_version(change.version if change else None, event.version):
        return None
    assert change is not None
    if not change.applied:
        raise NotYet("the copy changed while it was being cancelled")  # its version was read under the same lock
    if change.previous_status != OrderStatus.COMPLETE:
        return None
    # A statement of its own: it must see a payment committed while the cancellation waited for the row lock.
    return await queries.find_unrefunded_payment(uow.conn, event.id)


async def refund_payment(*, uow: UnitOfWork, stripe: StripeGateway, payment: Payment) -> None:
    """Give a payment's money back through Stripe and record it in the caller's transaction.

    The idempotency key comes from the payment, so a redelivered event (after a crash, or a Stripe outage that
    rolled the transaction back) replays the one refund instead of refunding twice.
    """
    refund_id = await stripe.refund(
        payment_intent=payment.stripe_id, order_id=payment.order_id, idempotency_key=f"refund-{payment.id}"
    )
    await queries.record_refund(uow.conn, payment.id, refund_id)
    logger.warning(
        "paid order cancelled: payment refunded",
        extra={"order_id": str(payment.order_id), "stripe_id": payment.stripe_id, "refund_id": refund_id},
    )


async def copy_created_user(*, uow: UnitOfWork, event: UserCreated) -> None:
    """Start the user's email copy; an existing copy stays as it is."""
    await queries.copy_user(uow.conn, event.id, event.email, event.version)


async def copy_updated_user(*, uow: UnitOfWork, event: UserUpdated) -> None:
    """Take the new email when the event is the copy's next version."""
    change = await queries.update_user(uow.conn, event.id, event.email, event.version)
    is_next_version(change.version if change else None, event.version)
