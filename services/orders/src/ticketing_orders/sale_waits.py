"""Orders waiting for a copy their ticket's sale needs: the copy of the ticket's event (``event.created`` on its
way), or the buyer's admission from the event's waiting room (``queue.admitted`` on its way). The shared copy
waits (``ticketing_common.copy_waits``) on this service's own core NATS subject, keyed by event id for an event's
copy and by ``domain.admission_key(event, buyer)`` for an admission."""

from __future__ import annotations

from ticketing_common.copy_waits import CopyWaits

# Core NATS only: outside the stream's subjects (``order.>`` is not ``orders.``), never stored.
SALE_COPIED = "orders.sale-copied"
TOO_MANY_WAITING = "Too many orders are waiting for their event or admission: retry shortly"


class SaleCopyWaits(CopyWaits):
    """The orders of one process waiting for their event's copy or their buyer's admission, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__(subject=SALE_COPIED, limit=limit, too_many_message=TOO_MANY_WAITING)
