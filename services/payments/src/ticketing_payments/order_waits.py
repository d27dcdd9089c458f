"""Payments waiting for their order's copy: the shared copy waits (``ticketing_common.copy_waits``) keyed by order
id, on the payments' own core NATS subject, woken as soon as any replica has committed the order's copy."""

from __future__ import annotations

from ticketing_common.copy_waits import CopyWaits, NotCopiedYet
from ticketing_common.errors import NotFoundError

# Core NATS only (outside the stream's subjects, so never stored): a lost message costs a waiter at most one
# re-check interval (``copy_waits.RECHECK_SECONDS``), never a wrong answer.
ORDER_COPIED = "payments.order-copied"
ORDER_NOT_FOUND = "Order not found"
TOO_MANY_WAITING = "Too many payments are waiting for their orders: retry shortly"


class OrderNotCopiedYet(NotFoundError, NotCopiedYet):
    """This service has no copy of the order (yet): its ``order.created`` may still be on its way. Waited on
    (keyed by the order id the payment names), then answered 404."""

    default_message = ORDER_NOT_FOUND


class OrderCopyWaits(CopyWaits):
    """The payments of one process waiting for their order's copy, by order id, at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        super().__init__(subject=ORDER_COPIED, limit=limit, too_many_message=TOO_MANY_WAITING)
