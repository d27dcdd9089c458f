"""Use cases of the payments service: pay for an order once, refund it if the order was cancelled after all, and
keep the copies of orders and users' emails."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TypeAlias

from ticketing_common import tracing
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
from ticketing_payments.order_waits import ORDER_NOT_FOUND, OrderCopyWaits, OrderNotCopiedYet
from ticketing_payments.queries import OrderToPay, Payment
from ticketing_payments.stripe_gateway import (
    AttemptInDoubt,
    CardDeclined,
    Charge,
    ChargeRefused,
    ProviderUnavailable,
    StripeGateway,
)

logger = logging.getLogger("ticketing.payments")

PROVIDER_UNAVAILABLE = "Payment provider unavailable"
ORDER_ALREADY_PAID = "Order already paid"
ATTEMPT_IN_DOUBT = (
    "An earlier payment attempt of this order, with another card or email, has an unknown outcome: "
    "retry with the same card"
)

StripeOutcome: TypeAlias = CardDeclined | ChargeRefused | AttemptInDoubt | ProviderUnavailable
"""What ``stripe_gateway`` raises instead of returning a charge."""


async def create_payment(
    *,
    db: Database,
    stripe: StripeGateway,
    waits: OrderCopyWaits,
    currency: str,
    cutoff: timedelta,
    wait_seconds: float,
    buyer: UserPayload,
    order_id: uuid.UUID,
    token: str,
) -> Payment:
    """Pay for the order as :func:`charge_order` does; an order this service has no copy of yet (its
    ``order.created`` is on its way) is waited for, up to ``wait_seconds``, before the 404."""
    charge = partial(
        charge_order,
        db=db,
        stripe=stripe,
        currency=currency,
        cutoff=cutoff,
        buyer=buyer,
        order_id=order_id,
        token=token,
    )
    return await waits.until_copied(order_id, charge, seconds=wait_seconds)


async def charge_order(
    *,
    db: Database,
    stripe: StripeGateway,
    currency: str,
    cutoff: timedelta,
    buyer: UserPayload,
    order_id: uuid.UUID,
    token: str,
) -> Payment:
    """Charge the buyer's order through Stripe and record it with its ``charge.created``, exactly once.

    The order's row stays locked from the checks to the commit, the Stripe call included, so concurrent payments
    of one order (on any replica) run one after the other and the later ones find it paid. The charge's
    idempotency key comes from the order and its attempt number, so a retry after a lost answer, a timeout or a
    crash before the commit replays Stripe's first answer instead of charging again.
    """
    refusal: CustomError | None = None
    async with db.unit_of_work() as uow:
        found = await queries.lock_order_to_pay(uow.conn, order_id, buyer.id)
        order = check_payable(found, buyer_id=buyer.id, now=utcnow(), cutoff=cutoff)
        # The charge and its charge.created belong to the order's trace (linked to this request's).
        with tracing.span("charge order", parent=order.trace_parent, link_current=True):
            try:
                charge = await stripe.charge(
                    amount=to_cents(order.price),
                    currency=currency,
                    token=token,
                    receipt_email=order.buyer_email or buyer.email,  # the session's email until user events arrive
                    order_id=order_id,
                    idempotency_key=idempotency_key(order_id, order.charge_attempt),
                )
            except (CardDeclined, ChargeRefused) as exc:
                # Stripe saved this "no" under the key: the next attempt (with another card) needs a new key.
                await queries.next_charge_attempt(uow.conn, order_id)
                refusal = refusal_of(exc)
            except (AttemptInDoubt, ProviderUnavailable) as exc:
                raise refusal_of(exc) from None
            else:
                payment = await _record_payment(uow, order_id=order_id, charge=charge)
    if refusal is not None:
        logger.info("payment refused", extra={"order_id": str(order_id), "reason": refusal.message})
        raise refusal  # after the commit, which keeps the new attempt number
    logger.info("order paid", extra={"order_id": str(order_id), "stripe_id": payment.stripe_id})
    return payment


def check_payable(order: OrderToPay | None, *, buyer_id: uuid.UUID, now: datetime, cutoff: timedelta) -> OrderToPay:
    """The order's copy when its buyer may start a charge now; otherwise the refusal, checked in this order: no
    copy (yet), another buyer's order (404 at once: never waited on, nor revealed), cancelled, paid, and expired or
    within ``cutoff`` of expiring (its ticket is about to be released to other buyers)."""
    if order is None:
        raise OrderNotCopiedYet()
    if order.user_id != buyer_id:
        raise NotFoundError(ORDER_NOT_FOUND)
    if order.status == OrderStatus.CANCELLED:
        raise BadRequestError("Cannot pay for a cancelled order")
    if order.status == OrderStatus.COMPLETE or order.paid:
        raise BadRequestError(ORDER_ALREADY_PAID)
    if order.expires_at - cutoff <= now:
        raise BadRequestError("Cannot pay for an expired order")
    return order


def refusal_of(outcome: StripeOutcome) -> CustomError:
    """The answer to a charge Stripe did not make: 402 with Stripe's message for a declined card, 400 (on the
    ``token`` field when Stripe names it) for a refused request, 409 while an earlier attempt is in doubt, 503 when
    Stripe cannot be reached."""
    if isinstance(outcome, CardDeclined):
        return PaymentRequiredError(outcome.message)
    if isinstance(outcome, ChargeRefused):
        return (
            FieldError("token", outcome.message)
            if "token" in (outcome.param or "")
            else BadRequestError(outcome.message)
        )
    if isinstance(outcome, AttemptInDoubt):
        return ConflictError(ATTEMPT_IN_DOUBT)
    return ServiceUnavailableError(PROVIDER_UNAVAILABLE)


def idempotency_key(order_id: uuid.UUID, attempt: int) -> str:
    """Stripe's idempotency key of an order's charge attempt: every retry of one attempt sends the same key."""
    return f"charge-{order_id}-{attempt}"


async def _record_payment(uow: UnitOfWork, *, order_id: uuid.UUID, charge: Charge) -> Payment:
    """Store the charge as the order's payment, complete its copy and publish ``charge.created``."""
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
    return payment


async def copy_created_order(*, uow: UnitOfWork, event: OrderCreated) -> None:
    """Start the order's copy; a copy that exists already (a re-published event) stays as it is. It keeps the
    trace the event is handled in, which the order's payment continues."""
    await queries.copy_order(uow.conn, event, trace_parent=tracing.current_traceparent())


async def copy_created_orders(*, uow: UnitOfWork, events: Sequence[OrderCreated]) -> None:
    """:func:`copy_created_order` for a batch of events, in one statement."""
    await queries.copy_orders(uow.conn, first_event_per_order(events))


def first_event_per_order(events: Sequence[OrderCreated]) -> list[OrderCreated]:
    """The first event of each order, in order: applied one by one, a later one would find the copy and change
    nothing."""
    first: dict[uuid.UUID, OrderCreated] = {}
    for event in events:
        first.setdefault(event.id, event)
    return list(first.values())


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
