"""``ticketing check``: read every service's database (read-only) and NATS, and report every broken invariant.

The platform's promises, checked from the outside: no ticket held by an order that is not active (or the
reverse), never two active orders for one ticket, every complete order paid exactly once (and not refunded), no
payment kept for an order that is not complete (it must have been refunded), every replica at its source's version, no order left past its expiry, no outbox row left
unsent, no parked message, and no consumer with work outstanding. Run it when the system is quiet; ``--settle``
re-checks until it is clean or the time is up (replicas converge within milliseconds once events flow).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
from nats.js.errors import NotFoundError

ACTIVE = ("created", "complete")
SERVICES_WITH_DATABASE = ("auth", "tickets", "orders", "expiration", "payments", "queue")
EXPIRY_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    refs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, invariant: str, detail: str, **refs: Any) -> None:
        self.violations.append(Violation(invariant, detail, {k: str(v) for k, v in refs.items()}))

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.ok, "counts": self.counts, "violations": [asdict(v) for v in self.violations]}, indent=2
        )

    def render(self) -> str:
        lines = [f"checked: {', '.join(f'{k}={v}' for k, v in sorted(self.counts.items()))}"]
        if self.ok:
            lines.append("consistent: no invariant is broken")
        for violation in self.violations:
            refs = " ".join(f"{k}={v}" for k, v in violation.refs.items())
            lines.append(f"BROKEN {violation.invariant}: {violation.detail} {refs}".rstrip())
        return "\n".join(lines)


def database_dsn(server_url: str, name: str) -> str:
    """The server URL (``postgresql://…/postgres``) pointed at database ``name``."""
    base, _, _ = server_url.rpartition("/")
    query = ""
    if "?" in server_url.rsplit("/", 1)[1]:
        query = "?" + server_url.rsplit("?", 1)[1]
    return f"{base}/{name}{query}"


async def _fetch(conn: asyncpg.Connection, sql: str) -> list[asyncpg.Record]:
    async with conn.transaction(readonly=True):
        return list(await conn.fetch(sql))


async def check(
    *,
    database_url: str,
    nats_url: str | None,
    databases: Mapping[str, str] | None = None,
    stream: str = "TICKETING",
    now: datetime | None = None,
) -> Report:
    """One pass over every database and NATS; ``databases`` maps service -> database name."""
    names = {svc: f"ticketing_{svc}" for svc in SERVICES_WITH_DATABASE} | dict(databases or {})
    report = Report()
    conns = {svc: await asyncpg.connect(database_dsn(database_url, name)) for svc, name in names.items()}
    try:
        rows = {
            "users": await _fetch(conns["auth"], "SELECT id, email, version FROM users"),
            "tickets": await _fetch(
                conns["tickets"], "SELECT id, title, price, user_id, order_id, event_id, version FROM tickets"
            ),
            "ticket_copies": await _fetch(
                conns["orders"], "SELECT id, title, price, user_id, event_id, version FROM tickets"
            ),
            "events": await _fetch(
                conns["tickets"], "SELECT id, on_sale_at, max_per_buyer, waiting_room, version FROM events"
            ),
            "event_copies": await _fetch(
                conns["orders"], "SELECT id, on_sale_at, max_per_buyer, waiting_room, version FROM events"
            ),
            "rooms": await _fetch(
                conns["queue"], "SELECT event_id AS id, on_sale_at, waiting_room, version FROM rooms"
            ),
            "entrants": await _fetch(
                conns["queue"], "SELECT event_id, user_id, position, admitted_until FROM entrants"
            ),
            "orders": await _fetch(
                conns["orders"], "SELECT id, ticket_id, user_id, status, version, expires_at FROM orders"
            ),
            "charges": await _fetch(conns["orders"], "SELECT order_id, refund_reason FROM charges"),
            "order_copies": await _fetch(conns["payments"], "SELECT id, status, version FROM orders"),
            "user_copies": await _fetch(conns["payments"], "SELECT id, email, version FROM users"),
            "payments": await _fetch(conns["payments"], "SELECT id, order_id, amount, refunded_at FROM payments"),
        }
        for svc, conn in conns.items():
            unsent = await _fetch(conn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
            if unsent[0]["n"]:
                report.add("outbox-unsent", f"{unsent[0]['n']} outbox rows never sent", service=svc)
            for parked in await _fetch(conn, "SELECT consumer, subject, event_id, error FROM parked_messages"):
                report.add(
                    "parked-message",
                    f"{parked['subject']} parked by {parked['consumer']}: {parked['error'][:200]}",
                    service=svc,
                    event_id=parked["event_id"],
                )
    finally:
        for conn in conns.values():
            await conn.close()
    report.counts = {name: len(value) for name, value in rows.items()}
    _check_rows(report, rows, now or datetime.now(UTC))
    if nats_url:
        await _check_nats(report, nats_url, stream)
    return report


def _by_id(records: Iterable[asyncpg.Record], key: str = "id") -> dict[Any, asyncpg.Record]:
    return {record[key]: record for record in records}


def _check_rows(report: Report, rows: Mapping[str, list[asyncpg.Record]], now: datetime) -> None:
    tickets = _by_id(rows["tickets"])
    orders = _by_id(rows["orders"])
    refunds = {c["order_id"] for c in rows["charges"] if c["refund_reason"]}

    # Tickets service <-> orders service: who holds each ticket.
    for ticket in tickets.values():
        holder = ticket["order_id"]
        if holder is not None and (holder not in orders or orders[holder]["status"] not in ACTIVE):
            status = orders[holder]["status"] if holder in orders else "unknown"
            report.add(
                "ticket-held-by-inactive-order", f"ticket held by a {status} order", ticket=ticket["id"], order=holder
            )
    active_by_ticket: dict[Any, list[asyncpg.Record]] = {}
    for order in orders.values():
        if order["status"] in ACTIVE:
            active_by_ticket.setdefault(order["ticket_id"], []).append(order)
            ticket = tickets.get(order["ticket_id"])
            if ticket is None or ticket["order_id"] != order["id"]:
                report.add(
                    "active-order-not-holding-ticket",
                    f"{order['status']} order does not hold its ticket",
                    order=order["id"],
                    ticket=order["ticket_id"],
                )
        if order["status"] == "created" and order["expires_at"] < now - EXPIRY_GRACE:
            report.add("order-stuck", "order still unpaid long after its expiry", order=order["id"])
    for ticket_id, active in active_by_ticket.items():
        if len(active) > 1:
            report.add("double-booking", f"{len(active)} active orders for one ticket", ticket=ticket_id)

    # Orders <-> payments: every complete order paid once; a payment of an order that is not complete (the
    # orders service cancelled it before hearing of the charge) must have been refunded.
    payments_by_order: dict[Any, list[asyncpg.Record]] = {}
    for payment in rows["payments"]:
        payments_by_order.setdefault(payment["order_id"], []).append(payment)
    for order in orders.values():
        payments = payments_by_order.get(order["id"], [])
        kept = [p for p in payments if p["refunded_at"] is None]
        if order["status"] == "complete" and len(kept) != 1:
            report.add("complete-order-payments", f"complete order with {len(kept)} payments", order=order["id"])
        if order["status"] == "complete" and len(kept) != len(payments):
            report.add("complete-order-refunded", "complete order whose payment was refunded", order=order["id"])
    for order_id, payments in payments_by_order.items():
        status = orders[order_id]["status"] if order_id in orders else "unknown"
        kept = [p for p in payments if p["refunded_at"] is None]
        if status != "complete" and kept:
            report.add(
                "payment-for-incomplete-order",
                f"payment kept for a {status} order",
                order=order_id,
                refund_flagged=order_id in refunds,
                payments=len(kept),
            )

    _check_sales(report, rows, tickets, orders)

    # Replicas at their source's version.
    _check_replica(
        report, "orders.tickets", tickets, _by_id(rows["ticket_copies"]), ("title", "price", "user_id", "event_id")
    )
    events = _by_id(rows["events"])
    _check_replica(
        report, "orders.events", events, _by_id(rows["event_copies"]), ("on_sale_at", "max_per_buyer", "waiting_room")
    )
    _check_replica(report, "queue.rooms", events, _by_id(rows["rooms"]), ("on_sale_at", "waiting_room"))
    _check_replica(
        report,
        "payments.orders",
        orders,
        _by_id(rows["order_copies"]),
        ("status",),
        expected_version=_published_order_version,
    )
    _check_replica(report, "payments.users", _by_id(rows["users"]), _by_id(rows["user_copies"]), ("email",))


def _check_sales(
    report: Report,
    rows: Mapping[str, list[asyncpg.Record]],
    tickets: Mapping[Any, asyncpg.Record],
    orders: Mapping[Any, asyncpg.Record],
) -> None:
    """Events' sales: no buyer above an event's limit, nobody ordering a waiting-room event's ticket without having
    been admitted, and the queue admitting in the order of the draw."""
    events = _by_id(rows["events"])
    admitted = {(e["event_id"], e["user_id"]) for e in rows["entrants"] if e["admitted_until"] is not None}
    held: dict[tuple[Any, Any], int] = {}
    for order in orders.values():
        ticket = tickets.get(order["ticket_id"])
        event = events.get(ticket["event_id"]) if ticket is not None else None
        if event is None:
            continue
        if event["waiting_room"] and (event["id"], order["user_id"]) not in admitted:
            report.add(
                "order-without-admission", "order of a waiting-room event by a buyer never admitted", order=order["id"]
            )
        if order["status"] in ACTIVE:
            key = (event["id"], order["user_id"])
            held[key] = held.get(key, 0) + 1
    for (event_id, buyer), count in held.items():
        if count > events[event_id]["max_per_buyer"]:
            report.add(
                "above-limit-per-buyer",
                f"{count} tickets held or bought, the event allows {events[event_id]['max_per_buyer']}",
                event=event_id,
                user=buyer,
            )
    by_event: dict[Any, list[asyncpg.Record]] = {}
    for entrant in rows["entrants"]:
        if entrant["position"] is not None:
            by_event.setdefault(entrant["event_id"], []).append(entrant)
    for event_id, entrants in by_event.items():
        waiting = [e["position"] for e in entrants if e["admitted_until"] is None]
        let_out = [e["position"] for e in entrants if e["admitted_until"] is not None]
        if waiting and let_out and min(waiting) < max(let_out):
            report.add(
                "admitted-out-of-order",
                f"position {max(let_out)} admitted while position {min(waiting)} still waits",
                event=event_id,
            )
        if len({e["position"] for e in entrants}) != len(entrants):
            report.add("position-repeated", "two entrants share a position", event=event_id)


def _check_replica(
    report: Report,
    name: str,
    source: Mapping[Any, asyncpg.Record],
    copies: Mapping[Any, asyncpg.Record],
    fields: tuple[str, ...],
    expected_version: Callable[[asyncpg.Record], int] = lambda record: int(record["version"]),
) -> None:
    for key, original in source.items():
        copy = copies.get(key)
        expected = expected_version(original)
        if copy is None:
            report.add("replica-missing", f"{name} has no copy", id=key)
        elif copy["version"] != expected:
            report.add("replica-behind", f"{name} at version {copy['version']}, source at {expected}", id=key)
        elif any(copy[f] != original[f] for f in fields):
            report.add("replica-differs", f"{name} differs from its source at the same version", id=key)


def _published_order_version(order: asyncpg.Record) -> int:
    """The version of the last order event: completing an order (on charge.created) bumps its version but
    publishes nothing, since payments completed it itself; every other change is published."""
    return int(order["version"]) - 1 if order["status"] == "complete" else int(order["version"])


async def _check_nats(report: Report, url: str, stream: str) -> None:
    nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        try:
            consumers = await js.consumers_info(stream)
        except NotFoundError:
            report.add("stream-missing", f"stream {stream} does not exist")
            return
        for info in consumers:
            outstanding = (info.num_pending or 0) + (info.num_ack_pending or 0)
            if outstanding:
                report.add(
                    "consumer-behind",
                    f"{info.num_pending} pending, {info.num_ack_pending} unacknowledged",
                    consumer=info.name,
                )
    finally:
        await nc.close()


async def check_until_settled(*, settle: float, **kwargs: Any) -> Report:
    """Re-check until the system is consistent or ``settle`` seconds have passed; the last report wins."""
    deadline = asyncio.get_running_loop().time() + settle
    while True:
        report = await check(**kwargs)
        if report.ok or asyncio.get_running_loop().time() >= deadline:
            return report
        await asyncio.sleep(0.5)
