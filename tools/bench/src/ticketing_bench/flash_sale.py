"""Scenario 1, the flash sale: sellers list tickets, buyers race for them through the gateway, half of the winners
pay (a few after a declined card), the rest let their orders expire. Then every invariant is checked."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from ticketing_bench import client, http1
from ticketing_bench.client import User
from ticketing_bench.stats import count_by, summary
from ticketing_bench.system import System
from ticketing_launcher.check import check, database_dsn


@dataclass
class SaleSize:
    sellers: int
    tickets: int
    buyers: int
    connections: int
    declined_every: int = 10  # every n-th paying winner first tries a declined card
    pay_after: float = 1.0  # seconds a winner takes to type in a card (less than the window minus the cutoff)


@dataclass
class Win:
    order_id: str
    ticket_id: str
    buyer: User
    expires_at: datetime
    pays: bool
    paid: bool = False
    uncertain: bool = False  # a payment whose answer never came: either outcome is fine, if consistent
    paid_at: datetime | None = None  # when the buyer got the payment's 201
    payment_statuses: list[int] = field(default_factory=list)


@dataclass
class SaleRecord:
    """Everything the buyers saw."""

    tickets: list[str]
    wins: list[Win] = field(default_factory=list)
    order_latencies: list[float] = field(default_factory=list)  # seconds, every POST /api/orders
    payment_latencies: list[float] = field(default_factory=list)  # seconds, every POST /api/payments
    order_statuses: list[str] = field(default_factory=list)  # "201", "400 Ticket is already reserved", ...
    payment_statuses: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0  # the last buyer gave up or won
    payments_ended: float = 0.0
    listing_reads: int = 0
    last_order_at: float = 0.0


class Sampler:
    """Samples RSS and CPU of every process in a thread, every ``interval`` seconds, while running."""

    def __init__(self, system: System, interval: float = 0.5) -> None:
        self.system = system
        self.interval = interval
        self.samples: list[tuple[float, dict[str, dict[str, float]]]] = []
        self.cpu_s = 0.0  # the sampling thread's own CPU (part of the load generator's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.system.sample()))
            self.cpu_s = time.thread_time()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self.system.sample()))

    def peak_rss(self) -> dict[str, float]:
        peak: dict[str, float] = {}
        for _, sample in self.samples:
            for name, values in sample.items():
                peak[name] = max(peak.get(name, 0.0), values["rss_mib"])
        return peak

    def cpu_used(self) -> dict[str, float]:
        if len(self.samples) < 2:
            return {}
        first, last = self.samples[0][1], self.samples[-1][1]
        return {name: last[name]["cpu_s"] - first.get(name, {"cpu_s": 0.0})["cpu_s"] for name in last}


async def prepare(
    system: System, size: SaleSize, *, progress: Callable[[str, int], Callable[[], None]]
) -> tuple[list[User], list[User], list[str]]:
    """Sign up sellers and buyers, list the tickets, and wait until the orders service knows them all."""
    base = system.gateway
    async with client.session(16) as http:
        sellers = await client.sign_up_many(
            http, base, "seller", size.sellers, progress=progress("sign up sellers", size.sellers)
        )
        buyers = await client.sign_up_many(
            http, base, "buyer", size.buyers, progress=progress("sign up buyers", size.buyers)
        )
        tickets = await client.create_tickets(
            http, base, sellers, size.tickets, progress=progress("list tickets", size.tickets)
        )
    if "nats" in system.urls and "database" in system.urls:
        await system.wait_quiet(120)
    return sellers, buyers, [t["id"] for t in tickets]


async def race(
    system: System, size: SaleSize, buyers: list[User], tickets: list[str], *, tick: Callable[[], None]
) -> SaleRecord:
    """Buyers, ``size.connections`` at a time, as a sale really happens: no shared view of what is taken. Each buyer
    reads the listing (``GET /api/tickets``, its first page of available tickets), tries random tickets of it until
    one is theirs, reading it again when every one they saw failed, and gives up when the listing is empty. A
    winner's payment runs in its own task, ``pay_after`` seconds later, so it holds no buyer's place. A 404 from the payments service is final
    (the payment did not happen; the order expires). The buyers and the payments each have a pool of
    ``size.connections`` kept-alive connections of the bench's own HTTP client (:mod:`ticketing_bench.http1`,
    cheaper than aiohttp on the cores the system uses too)."""
    base = system.gateway
    record = SaleRecord(tickets=list(tickets))
    ours = set(tickets)
    rng = random.Random(9)  # noqa: S311 (load generation, not security)
    queue = list(buyers)
    winners = 0
    payments: list[asyncio.Task[None]] = []

    async def pay(http: http1.Pool, win: Win, token: str) -> int:
        failures = 0
        while True:
            try:
                reply = await http.call(
                    "POST", "/api/payments", user=win.buyer, json={"orderId": win.order_id, "token": token}
                )
            except http1.ERRORS as exc:
                record.payment_statuses.append(type(exc).__name__)
                failures += 1
                if failures < 3:
                    continue  # the same card again: the payments service makes the retry idempotent
                win.uncertain = True
                return 0
            # Final, a 404 too: the payments service waits for its copy of the order before answering one.
            record.payment_latencies.append(reply.seconds)
            record.payment_statuses.append(_label(reply))
            win.payment_statuses.append(reply.status)
            return reply.status

    async def pays(http: http1.Pool, win: Win, declined_first: bool) -> None:
        await asyncio.sleep(size.pay_after)
        if declined_first:
            await pay(http, win, "tok_chargeDeclined")
        win.paid = await pay(http, win, "tok_visa") == 201
        if win.paid:
            win.paid_at = datetime.now(UTC)

    async def listing(http: http1.Pool) -> list[str]:
        try:
            reply = await http.call("GET", "/api/tickets?limit=100")
        except http1.ERRORS:
            return []
        record.listing_reads += 1
        if reply.status != 200:
            return []
        return [t["id"] for t in reply.body["tickets"] if t["id"] in ours and t.get("orderId") is None]

    async def buyer_loop(http: http1.Pool, paying: http1.Pool) -> None:
        nonlocal winners
        while queue:
            buyer = queue.pop()
            seen = await listing(http)
            while seen:
                ticket = seen.pop(rng.randrange(len(seen)))
                try:
                    reply = await http.call("POST", "/api/orders", user=buyer, json={"ticketId": ticket})
                except http1.ERRORS as exc:
                    record.order_statuses.append(type(exc).__name__)
                    continue
                record.order_latencies.append(reply.seconds)
                record.order_statuses.append(_label(reply))
                if reply.status == 201:
                    record.last_order_at = time.monotonic()
                    win = Win(
                        reply.body["id"],
                        ticket,
                        buyer,
                        datetime.fromisoformat(reply.body["expiresAt"]),
                        winners % 2 == 0,
                    )
                    winners += 1
                    record.wins.append(win)
                    if win.pays:
                        declined = (winners // 2) % size.declined_every == 0
                        payments.append(asyncio.create_task(pays(paying, win, declined)))
                    break
                if not seen:
                    seen = await listing(http)
            tick()

    async with http1.Pool(base, size.connections) as http, http1.Pool(base, size.connections) as paying:
        record.started = time.monotonic()
        await asyncio.gather(*(buyer_loop(http, paying) for _ in range(size.connections)))
        record.ended = time.monotonic()
        await asyncio.gather(*payments)
        record.payments_ended = time.monotonic()
    return record


def _message(reply: client.Reply) -> str:
    try:
        return str(reply.body["errors"][0]["message"])
    except (TypeError, KeyError, IndexError):
        return ""


def _label(reply: client.Reply) -> str:
    message = _message(reply)
    return f"{reply.status} {message}".strip()


# -- verification ----------------------------------------------------------------------------------------------


def verify(
    record: SaleRecord,
    orders: dict[str, dict[str, Any]],
    tickets: dict[str, dict[str, Any]],
    charges_by_order: dict[str, int] | None,
    refunds_by_order: dict[str, int] | None = None,
) -> list[str]:
    """Every broken invariant, as seen through the APIs (and the fake Stripe when ``charges_by_order`` is given).

    ``orders``: order id -> the buyer's GET /api/orders/:id; ``tickets``: ticket id -> GET /api/tickets/:id;
    ``charges_by_order``: order id -> succeeded charges at Stripe that were not refunded; ``refunds_by_order``:
    order id -> refunded charges (reported alongside, never an excuse)."""
    refunds_by_order = refunds_by_order or {}
    problems: list[str] = []
    paid_per_ticket: dict[str, int] = {}
    for win in record.wins:
        order = orders.get(win.order_id)
        ticket = tickets.get(win.ticket_id)
        if order is None or ticket is None:
            problems.append(f"order {win.order_id} or its ticket {win.ticket_id} cannot be read back")
            continue
        if win.uncertain:
            expected = 1 if order["status"] == "complete" else 0
            if order["status"] not in ("complete", "cancelled"):
                problems.append(f"order {win.order_id} (payment answer lost) is {order['status']}")
            if charges_by_order is not None and charges_by_order.get(win.order_id, 0) != expected:
                problems.append(
                    f"{order['status']} order {win.order_id} has {charges_by_order.get(win.order_id, 0)} charges"
                )
        elif win.paid:
            paid_per_ticket[win.ticket_id] = paid_per_ticket.get(win.ticket_id, 0) + 1
            if order["status"] != "complete":
                when = ""
                if win.paid_at is not None:
                    margin = (win.paid_at - win.expires_at).total_seconds()
                    when = f" (201 received {abs(margin):.3f} s {'after' if margin >= 0 else 'before'} its expiresAt)"
                if refunds_by_order.get(win.order_id):
                    when += "; its charge was refunded"
                problems.append(f"paid order {win.order_id} is {order['status']}, not complete{when}")
            if ticket["orderId"] != win.order_id:
                problems.append(f"ticket {win.ticket_id} of paid order {win.order_id} is held by {ticket['orderId']}")
            if charges_by_order is not None and charges_by_order.get(win.order_id, 0) != 1:
                problems.append(f"paid order {win.order_id} has {charges_by_order.get(win.order_id, 0)} charges")
        else:
            if order["status"] != "cancelled":
                problems.append(f"unpaid order {win.order_id} is {order['status']}, not cancelled")
            if ticket["orderId"] is not None and not any(w.paid and w.ticket_id == win.ticket_id for w in record.wins):
                problems.append(f"ticket {win.ticket_id} of unpaid order {win.order_id} is not back for sale")
            if charges_by_order is not None and charges_by_order.get(win.order_id, 0) != 0:
                problems.append(f"unpaid order {win.order_id} has {charges_by_order[win.order_id]} charges")
        if order["ticket"]["version"] != ticket["version"]:
            problems.append(
                f"orders' copy of ticket {win.ticket_id} at version {order['ticket']['version']}, "
                f"tickets at {ticket['version']}"
            )
    for ticket_id, paid in paid_per_ticket.items():
        if paid > 1:
            problems.append(f"ticket {ticket_id} sold {paid} times")
    if charges_by_order is not None:
        ours = {w.order_id for w in record.wins}
        for order_id, count in charges_by_order.items():
            if order_id not in ours and count:
                problems.append(f"{count} charges for order {order_id} that no buyer of this sale paid")
    return problems


async def read_back(system: System, record: SaleRecord, connections: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each winning order as its buyer sees it, and each ticket as the public sees it."""
    orders: dict[str, Any] = {}
    tickets: dict[str, Any] = {}
    base = system.gateway
    async with client.session(connections) as http:

        async def order(i: int) -> None:
            win = record.wins[i]
            reply = await client.call(http, "GET", f"{base}/api/orders/{win.order_id}", user=win.buyer)
            if reply.status == 200:
                orders[win.order_id] = reply.body

        async def ticket(i: int) -> None:
            reply = await client.call(http, "GET", f"{base}/api/tickets/{record.tickets[i]}")
            if reply.status == 200:
                tickets[record.tickets[i]] = reply.body

        await client.gather_limited(len(record.wins), order, concurrency=connections)
        await client.gather_limited(len(record.tickets), ticket, concurrency=connections)
    return orders, tickets


async def stripe_charges(system: System) -> tuple[dict[str, int], dict[str, int]] | None:
    """Per order (``metadata.order_id`` of the PaymentIntent) at the fake Stripe: succeeded charges that were not
    refunded, and refunded ones."""
    if "stripe" not in system.urls:
        return None
    headers = {"Authorization": f"Bearer {system.stripe_key}"}
    async with client.session(4) as http:
        intents = await _list_all(http, system.urls["stripe"] + "/v1/payment_intents", headers)
        charges = await _list_all(http, system.urls["stripe"] + "/v1/charges", headers)
    order_of_intent = {i["id"]: i.get("metadata", {}).get("order_id") for i in intents}
    kept: dict[str, int] = {}
    refunded: dict[str, int] = {}
    for charge in charges:
        order_id = order_of_intent.get(charge["payment_intent"])
        if charge["status"] == "succeeded" and order_id:
            target = refunded if charge.get("refunded") else kept
            target[order_id] = target.get(order_id, 0) + 1
    return kept, refunded


async def _list_all(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": "100", **({"starting_after": after} if after else {})}
        async with http.get(url, headers=headers, params=params) as response:
            response.raise_for_status()
            page = await response.json()
        items += page["data"]
        if not page["has_more"] or not page["data"]:
            return items
        after = page["data"][-1]["id"]


async def final_states_reached(system: System, record: SaleRecord) -> bool:
    """From the orders database: every order of the sale complete or cancelled (cheap, for timing)."""
    conn = await asyncpg.connect(database_dsn(system.urls["database"], "ticketing_orders"))
    try:
        return await _all_final(conn, record)
    finally:
        await conn.close()


async def _all_final(conn: asyncpg.Connection, record: SaleRecord) -> bool:
    rows = await conn.fetch(
        "SELECT id::text, status FROM orders WHERE id = ANY($1::uuid[])", [w.order_id for w in record.wins]
    )
    status = {r["id"]: r["status"] for r in rows}
    # Terminal, not necessarily right: whether it is the right final state is verify()'s job.
    return all(status.get(w.order_id) in ("complete", "cancelled") for w in record.wins)


def _final(win: Win) -> tuple[str, ...]:
    if win.uncertain:
        return ("complete", "cancelled")
    return ("complete",) if win.paid else ("cancelled",)


async def settle(system: System, record: SaleRecord, *, timeout: float) -> dict[str, Any]:
    """Wait for the whole system to be consistent and final; time it from the end of the load and from the last
    expiry. Consistent = the checker finds nothing broken (when the databases are reachable) and every order is in
    its final state. Every 0.25 s the cheap question comes first (one query on a connection kept open); the
    checker's pass, which reads every service's tables whole over new connections, runs only once every order is
    final (or at the deadline), so the wait costs the load generator and PostgreSQL little."""
    loop_started = time.monotonic()
    last_expiry = max((w.expires_at for w in record.wins if not w.paid), default=None)
    result: dict[str, Any] = {"checker": None}
    deadline = loop_started + timeout
    orders_db = None
    if "database" in system.urls:
        orders_db = await asyncpg.connect(database_dsn(system.urls["database"], "ticketing_orders"))
    try:
        while True:
            report = None
            if orders_db is not None:
                final = await _all_final(orders_db, record)
                if final or time.monotonic() > deadline:
                    report = await check(database_url=system.urls["database"], nats_url=system.urls.get("nats"))
                    final = final and report.ok
            else:
                orders, _ = await read_back(system, record, 16)
                final = all(orders.get(w.order_id, {}).get("status") in _final(w) for w in record.wins)
            now = time.monotonic()
            if final or now > deadline:
                result["settled"] = final
                result["seconds_after_load"] = now - record.ended
                if last_expiry is not None:
                    result["seconds_after_last_expiry"] = time.time() - last_expiry.timestamp()
                if report is not None:
                    result["checker"] = {
                        "ok": report.ok,
                        "counts": report.counts,
                        "violations": [v.__dict__ for v in report.violations],
                    }
                return result
            await asyncio.sleep(0.25)
    finally:
        if orders_db is not None:
            await orders_db.close()


def summarise(record: SaleRecord, size: SaleSize) -> dict[str, Any]:
    duration = record.ended - record.started
    orders = len(record.wins)
    return {
        "size": size.__dict__,
        "duration_s": duration,
        "orders_created": orders,
        "orders_paid": sum(w.paid for w in record.wins),
        "orders_unpaid": sum(not w.paid for w in record.wins),
        "orders_per_s": orders / duration if duration else 0.0,
        "order_attempts": len(record.order_statuses),
        "order_attempts_per_s": len(record.order_statuses) / duration if duration else 0.0,
        "listing_reads": record.listing_reads,
        "payments_done_s": record.payments_ended - record.started,
        "order_latency_ms": {k: v * 1000 if k != "count" else v for k, v in summary(record.order_latencies).items()},
        "payment_latency_ms": {
            k: v * 1000 if k != "count" else v for k, v in summary(record.payment_latencies).items()
        },
        "order_statuses": count_by(record.order_statuses),
        "payment_statuses": count_by(record.payment_statuses),
        "tickets_left_unsold": size.tickets - len({w.ticket_id for w in record.wins}),
    }
