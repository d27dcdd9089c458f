"""Scenario 7, the on-sale through the waiting room (issue #21): a seller creates an event whose ``onSaleAt`` is a
little in the future and lists its tickets in one call; every buyer joins the event's waiting room before
``onSaleAt``; at ``onSaleAt`` the queue service draws their positions and lets them out at
``QUEUE_ADMIT_PER_SECOND``; each admitted buyer orders tickets of the event and every second order is paid.

What is checked, each from what the system publishes:

- **the draw**: ``GET /api/queue/:eventId/draw`` read before ``onSaleAt`` (the commitment, no seed) and after the
  draw (seed and entrants); the positions recomputed by the reference script ``services/queue/verify_draw.py``
  (loaded from the repository, so the bench checks the published algorithm; the bench's own copy of
  queue-draw-v1 only when the script is not there, said in the report) and compared with the position the queue
  told every buyer; the entrants must be exactly the buyers whose join was answered before ``onSaleAt`` (a join
  answered after it may be one; a non-entrant must be told a place behind the lottery);
- **admission in draw order**: each buyer polls its place (``GET /api/queue/:eventId``), sleeping about half the
  advertised ``estimatedWaitSeconds`` (at least ``poll_floor``, at most ``poll_cap``), so its admission lies
  between the sending of its last "waiting" poll and the arrival of its first "admitted" one. A buyer admitted
  out of order is *proven* when a buyer with a better position was still answered "waiting" by a poll sent after
  this buyer's "admitted" arrived (the tolerance is each buyer's own poll interval). Exact as well: every buyer's
  ``admittedUntil`` (admission time + ``QUEUE_ADMISSION_SECONDS``, the same for every buyer) must not decrease
  along the positions;
- **nobody orders without admission**: buyers who never join try once before ``onSaleAt`` (400 not on sale yet)
  and once after the draw (403); every ``cheat_every``-th buyer tries once while still far back in the line (403);
  any 201 among those is an order without admission, as is any order of the event in the orders database (local
  run) by a buyer who was never admitted or created before the buyer was last seen waiting, and any order of the
  event in a never-admitted buyer's own ``GET /api/orders``;
- **maxPerBuyer**: every ``beyond_every``-th buyer who wants ``maxPerBuyer`` tickets tries one more (400);
- **the invariants** of every order of the sale, exactly as the flash sale checks its own
  (:func:`ticketing_bench.flash_sale.verify`, :func:`~ticketing_bench.flash_sale.settle`), then the runner's final
  consistency check.

The buying: an admitted buyer wants 1 to ``maxPerBuyer`` tickets; it reads the event's listing (100 a page), tries
random tickets of the page, reads the next page after ``refresh_after`` failures (the first again after the last)
and gives up after ``patience`` such rounds without an order, or when the listing is empty.

Figures: time from ``onSaleAt`` to sold out (every ticket ordered once; and every ticket held by an order at once,
from the orders' answers and expiresAt, and the event page's ``tickets.available`` reaching 0: unpaid orders expire
and their tickets come back), waits from joining and from ``onSaleAt`` to admission, as the buyers saw them and at
the queue (``admittedUntil - QUEUE_ADMISSION_SECONDS``), p50/p99.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ticketing_bench import client, flash_sale, http1
from ticketing_bench.client import User
from ticketing_bench.flash_sale import SaleRecord, Win
from ticketing_bench.stats import count_by, summary
from ticketing_bench.system import System
from ticketing_launcher.check import database_dsn

REFERENCE_SCRIPT = Path(__file__).resolve().parents[4] / "services" / "queue" / "verify_draw.py"
# The queue's settings when the run does not set them (services/queue/README.md, Settings).
QUEUE_DEFAULTS = {"QUEUE_ADMIT_PER_SECOND": "50", "QUEUE_ADMISSION_SECONDS": "600"}
# A waiting buyer tries to order only when its estimated wait is well beyond ORDER_ADMISSION_WAIT_SECONDS (3 s):
# the orders service holds an attempt that long for an admission on its way, so nearer the front the attempt
# could honestly succeed.
CHEAT_MIN_WAIT_SECONDS = 8
RETRY_429_SECONDS = 1.0  # Retry-After is whole seconds, at least 1
ADMITTED_403_RETRIES = 2  # an admitted buyer's order refused 403 (the admission's copy late) is tried again


@dataclass(frozen=True)
class OnSaleSize:
    buyers: int
    tickets: int
    connections: int
    control: int  # buyers who never join: each tries to order before onSaleAt (400) and after the draw (403)
    lead_seconds: float  # onSaleAt = the event's creation + this: time for every join to land before it
    cheat_every: int = 10  # every n-th buyer tries to order once while far back in the line (403)
    beyond_every: int = 10  # every n-th buyer wanting maxPerBuyer tickets tries one more (400)
    max_per_buyer: int = 4
    pay_after: float = 1.0
    refresh_after: int = 3  # an admitted buyer reads the listing again after this many failed attempts in a row
    patience: int = 2  # and gives up after this many such readings without an order
    poll_floor: float = 0.5  # shortest sleep between two polls of one buyer
    poll_cap: float = 15.0  # longest


# -- the draw algorithm ----------------------------------------------------------------------------------------


class OwnDrawError(Exception):
    """The draw does not check out (the bench's copy of the reference script's ``DrawError``)."""


def own_entrant_hash(user_id: str) -> str:
    return hashlib.sha256(str(uuid.UUID(user_id)).encode("utf-8")).hexdigest()


def own_positions(draw: Mapping[str, Any]) -> dict[str, int]:
    """queue-draw-v1 as services/queue/README.md states it; used only when the reference script is not there."""
    seed_hex, entrants, commitment = draw.get("seed"), draw.get("entrants"), draw.get("commitment")
    if seed_hex is None or entrants is None:
        raise OwnDrawError("the draw has not happened yet: the seed and the entrants are not revealed")
    seed = bytes.fromhex(seed_hex)
    if hashlib.sha256(seed).hexdigest() != commitment:
        raise OwnDrawError(f"sha256(seed) is {hashlib.sha256(seed).hexdigest()}, not the commitment {commitment}")
    if entrants != sorted(set(entrants)):
        raise OwnDrawError("the entrants are not distinct and sorted")
    keys = {h: hashlib.sha256(seed + bytes.fromhex(h)).hexdigest() for h in entrants}
    ranked = sorted(entrants, key=lambda h: (keys[h], h))
    return {h: position for position, h in enumerate(ranked, start=1)}


@dataclass(frozen=True)
class DrawAlgorithm:
    positions: Callable[[Mapping[str, Any]], dict[str, int]]
    entrant_hash: Callable[[str], str]
    error: type[Exception]
    source: str


def load_algorithm(script: Path = REFERENCE_SCRIPT) -> DrawAlgorithm:
    """The reference script's ``positions``/``entrant_hash``/``DrawError``, loaded from its file; the bench's own
    copy when the file is not there (an installed bench outside the repository)."""
    if script.is_file():
        spec = importlib.util.spec_from_file_location("ticketing_bench_verify_draw", script)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return DrawAlgorithm(module.positions, module.entrant_hash, module.DrawError, str(script))
    return DrawAlgorithm(own_positions, own_entrant_hash, OwnDrawError, "the bench's own copy (onsale.own_positions)")


def check_draw(
    algorithm: DrawAlgorithm,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    told: Mapping[str, int | None],
    joined: Iterable[str],
    maybe: Iterable[str] = (),
) -> dict[str, Any]:
    """The draw as published against what the buyers were told. ``before``: ``GET /draw`` before ``onSaleAt``;
    ``after``: once drawn; ``told``: user id -> the position the queue answered that buyer (None: never seen);
    ``joined``: the users whose join was answered before ``onSaleAt`` (each must be an entrant); ``maybe``: those
    whose join was sent before it and answered after (they may be). Every entrant must be one of them; an entrant
    must have been told its recomputed position, anyone else a position after the lottery's."""
    problems: list[str] = []
    hashes = {user_id: algorithm.entrant_hash(user_id) for user_id in (*joined, *maybe, *told)}
    certain = {hashes[user_id] for user_id in joined}
    result: dict[str, Any] = {
        "reference": algorithm.source,
        "algorithm": (after or before or {}).get("algorithm"),
        "expected_entrants": len(certain),
    }
    if before is None or after is None:
        problems.append("the draw could not be read " + ("before onSaleAt" if before is None else "after it"))
        return {**result, "verified": False, "problems": problems}
    if before.get("seed") is not None or before.get("entrants") is not None:
        problems.append("the seed or the entrants were shown before the draw")
    if after.get("commitment") != before.get("commitment"):
        problems.append(f"the commitment changed: {before.get('commitment')} before, {after.get('commitment')} after")
    try:
        by_hash = algorithm.positions(after)
    except algorithm.error as exc:
        problems.append(f"the reference algorithm refuses the draw: {exc}")
        by_hash = {}
    published = set(after.get("entrants") or ())
    missing = sorted(u for u in joined if hashes[u] not in published)
    extra = len(published - certain - {hashes[u] for u in maybe})
    if missing:
        problems.append(f"{len(missing)} buyers who joined before onSaleAt are not entrants (first: {missing[0]})")
    if extra:
        problems.append(f"{extra} entrants are none of the buyers who joined")
    mismatches = []
    lottery = len(published)
    for user_id, position in told.items():
        expected = by_hash.get(hashes[user_id])
        wrong = position != expected if expected is not None else position is not None and position <= lottery
        if wrong:
            mismatches.append({"user": user_id, "told": position, "recomputed": expected})
    if by_hash and mismatches:
        first = mismatches[0]
        problems.append(
            f"{len(mismatches)} buyers were told another position than the recomputed one (first: {first['user']} "
            f"told {first['told']}, recomputed {first['recomputed'] or f'after the {lottery} of the lottery'})"
        )
    return {
        **result,
        "verified": not problems,
        "entrants": len(published),
        "missing_entrants": len(missing),
        "extra_entrants": extra,
        "positions_checked": len(told),
        "position_mismatches": len(mismatches) if by_hash else None,
        "problems": problems,
    }


# -- admission order -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """One buyer's admission as observed: between ``waiting_sent`` (the sending of its last poll answered
    "waiting"; None: none after joining) and ``admitted_seen`` (the arrival of its first "admitted"), wall clock
    seconds; ``admitted_until`` from the answer (epoch seconds)."""

    user: str
    position: int
    waiting_sent: float | None
    admitted_seen: float
    admitted_until: float | None


def admission_order(admissions: Iterable[Admission]) -> dict[str, Any]:
    """Admissions against the draw's order. ``violations``: buyers proven admitted before someone with a better
    position (that one was still answered "waiting" by a poll sent after this buyer's "admitted" arrived);
    ``admitted_until_inversions``: buyers whose ``admittedUntil`` is earlier than that of a better position
    (exact: the admission time plus one constant). Both must be 0."""
    ordered = sorted(admissions, key=lambda a: a.position)
    latest_waiting = -math.inf  # the latest "waiting" poll sent by any better position
    latest_until = -math.inf
    violations: list[dict[str, Any]] = []
    inversions = 0
    duplicates = len(ordered) - len({a.position for a in ordered})
    for a in ordered:
        if latest_waiting > a.admitted_seen:
            violations.append(
                {"user": a.user, "position": a.position, "proof_margin_s": latest_waiting - a.admitted_seen}
            )
        if a.admitted_until is not None:
            if latest_until > a.admitted_until + 1e-6:
                inversions += 1
            latest_until = max(latest_until, a.admitted_until)
        if a.waiting_sent is not None:
            latest_waiting = max(latest_waiting, a.waiting_sent)
    resolution = [a.admitted_seen - a.waiting_sent for a in ordered if a.waiting_sent is not None]
    return {
        "checked": len(ordered),
        "violations": len(violations),
        "examples": violations[:10],
        "admitted_until_inversions": inversions,
        "duplicate_positions": duplicates,
        "resolution_s": summary(resolution),
    }


# -- sold out --------------------------------------------------------------------------------------------------


def sold_out_at(orders: Iterable[tuple[float, str, float]], tickets: int) -> float | None:
    """The first moment every ticket was held by an order at once: ``orders`` are (created, ticket id, held
    until), ``held until`` the order's expiresAt, or infinity once paid. None when it never happened."""
    held: dict[str, float] = {}
    for created, ticket, until in sorted(orders):
        held[ticket] = max(held.get(ticket, -math.inf), until)
        if len(held) >= tickets and sum(1 for u in held.values() if u > created) >= tickets:
            return created
    return None


# -- what the buyers did ---------------------------------------------------------------------------------------


@dataclass
class Attempt:
    kind: str  # "early" (before onSaleAt), "control" (never joined), "cheat" (still waiting), "admitted", "beyond"
    ticket: str
    sent: float  # wall clock
    received: float
    status: int  # 0: no answer
    label: str
    order_id: str | None = None


@dataclass
class Buyer:
    user: User
    wants: int = 1
    cheats: bool = False
    beyond: bool = False
    joined: bool = False
    join_sent: float | None = None
    join_received: float | None = None
    position: int | None = None
    first_position_seen: float | None = None
    waiting_sent: float | None = None  # the sending of the last poll answered "waiting"
    admitted_seen: float | None = None  # the arrival of the first poll answered "admitted" (or "expired")
    admitted_until: datetime | None = None
    state: str | None = None
    polls: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    wins: list[Win] = field(default_factory=list)


@dataclass
class OnSaleRecord:
    event_id: str
    on_sale_at: datetime
    tickets: list[str]
    max_per_buyer: int
    buyers: list[Buyer]
    control: list[Buyer]
    event: dict[str, Any] = field(default_factory=dict)
    draw_before: dict[str, Any] | None = None
    draw_after: dict[str, Any] | None = None
    draw_seen: float | None = None  # wall clock: the first GET /draw showing the seed
    wins: list[Win] = field(default_factory=list)
    created_at: dict[str, float] = field(default_factory=dict)  # order id -> the 201's arrival (wall clock)
    join_latencies: list[float] = field(default_factory=list)
    poll_latencies: list[float] = field(default_factory=list)
    order_latencies: dict[str, list[float]] = field(default_factory=dict)  # by kind of attempt
    payment_latencies: list[float] = field(default_factory=list)
    join_statuses: list[str] = field(default_factory=list)
    poll_statuses: list[str] = field(default_factory=list)
    order_statuses: list[str] = field(default_factory=list)
    payment_statuses: list[str] = field(default_factory=list)
    listing_reads: int = 0
    first_empty_listing: float | None = None
    gave_up: int = 0  # admitted buyers who gave up (patience) with tickets still listed
    page_sold_out: float | None = None  # wall clock: the event page first showed tickets.available == 0
    page_reads: int = 0
    joins_started: float | None = None
    joins_done: float | None = None
    started: float = 0.0  # monotonic, for flash_sale.settle
    ended: float = 0.0
    payments_ended: float = 0.0

    @property
    def on_sale_ts(self) -> float:
        return self.on_sale_at.timestamp()


def _label(reply: client.Reply) -> str:
    try:
        message = str(reply.body["errors"][0]["message"])
    except (TypeError, KeyError, IndexError):
        message = ""
    return f"{reply.status} {message}".strip()


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def poll_delay(estimate: float, size: OnSaleSize) -> float:
    """About half the advertised wait: few polls far back, one every ``poll_floor`` near the front."""
    return min(size.poll_cap, max(size.poll_floor, 0.5 * estimate))


async def prepare(
    system: System,
    size: OnSaleSize,
    *,
    existing: list[User],
    progress: Callable[[str, int], Callable[[], None]],
) -> tuple[User, list[Buyer], list[Buyer]]:
    """A seller, the buyers (the flash sale's when there are enough, signed up otherwise, with the run's cheap
    Argon2 settings like the flash sale's) and the control buyers, who never join."""
    wanted = size.buyers + size.control
    users = list(existing[:wanted])
    async with client.session(16) as http:
        seller = await client.sign_up(http, system.gateway, "onsale-seller")
        if len(users) < wanted:
            users += await client.sign_up_many(
                http,
                system.gateway,
                "onsale-buyer",
                wanted - len(users),
                progress=progress("on-sale: sign up buyers", wanted - len(users)),
            )
    buyers = [Buyer(u) for u in users[: size.buyers]]
    maxed = 0
    for i, buyer in enumerate(buyers):
        buyer.wants = 1 + i % size.max_per_buyer  # 1..maxPerBuyer, 2.5 on average for 4
        buyer.cheats = size.cheat_every > 0 and i % size.cheat_every == size.cheat_every - 1
        if buyer.wants == size.max_per_buyer:
            buyer.beyond = size.beyond_every > 0 and maxed % size.beyond_every == 0
            maxed += 1
    return seller, buyers, [Buyer(u) for u in users[size.buyers :]]


async def create_event(system: System, size: OnSaleSize, seller: User) -> tuple[dict[str, Any], list[str]]:
    """The event (onSaleAt ``lead_seconds`` from now) and its tickets, listed by one call; their ids read back
    from the event's listing."""
    now = datetime.now(UTC).replace(microsecond=0)
    on_sale_at = now + timedelta(seconds=math.ceil(size.lead_seconds))
    body = {
        "name": f"On-sale bench {now:%H%M%S}",
        "venue": "The bench hall",
        "startsAt": (now + timedelta(days=30)).isoformat(),
        "onSaleAt": on_sale_at.isoformat(),
        "maxPerBuyer": size.max_per_buyer,
    }
    base = system.gateway
    async with client.session(8) as http:
        reply = await client.call(http, "POST", base + "/api/events", user=seller, json=body)
        if reply.status != 201:
            raise RuntimeError(f"on-sale: event creation failed: {reply.status} {reply.body}")
        event: dict[str, Any] = reply.body
        if not event.get("waitingRoom"):
            raise RuntimeError(f"on-sale: the event has no waiting room: {event}")
        listed = await client.call(
            http,
            "POST",
            f"{base}/api/events/{event['id']}/tickets",
            user=seller,
            json={"count": size.tickets, "price": 25.0, "title": "On-sale seat"},
        )
        if listed.status != 201 or listed.body.get("created") != size.tickets:
            raise RuntimeError(f"on-sale: listing {size.tickets} tickets failed: {listed.status} {listed.body}")
        ids = await _all_ticket_ids(http, base, event["id"], size.tickets)
    event["onSaleAt"] = event.get("onSaleAt") or body["onSaleAt"]
    return event, ids


async def _all_ticket_ids(http: Any, base: str, event_id: str, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            url = f"{base}/api/tickets?eventId={event_id}&limit=100" + (f"&cursor={cursor}" if cursor else "")
            reply = await client.call(http, "GET", url)
            if reply.status != 200:
                raise RuntimeError(f"on-sale: the event's listing answered {reply.status} {reply.body}")
            ids += [t["id"] for t in reply.body["tickets"]]
            cursor = reply.body.get("next")
            if not cursor:
                break
        if len(set(ids)) >= count or time.monotonic() > deadline:
            return list(dict.fromkeys(ids))
        await asyncio.sleep(0.25)


def queue_settings(system: System) -> dict[str, Any]:
    """The queue settings the run uses (the stack's environment; a remote system: this process's, assumed)."""
    source = system.environ if system.local else os.environ
    return {
        "admit_per_second": float(source.get("QUEUE_ADMIT_PER_SECOND") or QUEUE_DEFAULTS["QUEUE_ADMIT_PER_SECOND"]),
        "admission_seconds": float(source.get("QUEUE_ADMISSION_SECONDS") or QUEUE_DEFAULTS["QUEUE_ADMISSION_SECONDS"]),
        "known": system.local or "QUEUE_ADMISSION_SECONDS" in os.environ,
    }


async def sale(
    system: System,
    size: OnSaleSize,
    seller: User,
    buyers: list[Buyer],
    control: list[Buyer],
    *,
    tick: Callable[[], None],
    step: Callable[[str], None],
) -> OnSaleRecord:
    """The whole sale, from the event's creation to the last payment."""
    event, tickets = await create_event(system, size, seller)
    on_sale_at = _ts(event["onSaleAt"])
    assert on_sale_at is not None
    record = OnSaleRecord(
        event_id=event["id"],
        on_sale_at=on_sale_at,
        tickets=tickets,
        max_per_buyer=int(event.get("maxPerBuyer") or size.max_per_buyer),
        buyers=buyers,
        control=control,
        event=event,
    )
    settings = queue_settings(system)
    rng = random.Random(21)  # noqa: S311 (load generation, not security)
    eid = record.event_id
    ours = set(tickets)
    deadline = record.on_sale_ts + 2 * size.buyers / settings["admit_per_second"] + 60
    spread = max(1.0, size.buyers / 1000)  # the first polls after onSaleAt, spread over this many seconds
    payments: list[asyncio.Task[None]] = []
    pays_next = 0

    async def page(http: http1.Pool, cursor: str | None = None) -> tuple[list[str], str | None]:
        """One page (100) of the event's listing of available tickets, and the cursor of the next."""
        try:
            reply = await http.call(
                "GET", f"/api/tickets?eventId={eid}&limit=100" + (f"&cursor={cursor}" if cursor else "")
            )
        except http1.ERRORS:
            return [], None
        record.listing_reads += 1
        if reply.status != 200:
            return [], None
        found = [t["id"] for t in reply.body["tickets"] if t["id"] in ours and t.get("orderId") is None]
        return found, reply.body.get("next")

    async def listing(http: http1.Pool) -> list[str]:
        return (await page(http))[0]

    async def pay(http: http1.Pool, win: Win) -> None:
        await asyncio.sleep(size.pay_after)
        for _ in range(3):
            try:
                reply = await http.call(
                    "POST", "/api/payments", user=win.buyer, json={"orderId": win.order_id, "token": "tok_visa"}
                )
            except http1.ERRORS as exc:
                record.payment_statuses.append(type(exc).__name__)
                continue  # the same card again: the payments service makes the retry idempotent
            record.payment_latencies.append(reply.seconds)
            record.payment_statuses.append(_label(reply))
            win.payment_statuses.append(reply.status)
            win.paid = reply.status == 201
            if win.paid:
                win.paid_at = datetime.now(UTC)
            return
        win.uncertain = True

    async def order(http: http1.Pool, paying: http1.Pool, buyer: Buyer, kind: str, ticket: str) -> Attempt:
        """One order attempt (a 429 waits and tries again; so does a 403 of an admitted buyer, twice)."""
        nonlocal pays_next
        refused_403 = 0
        while True:
            sent = time.time()
            try:
                reply = await http.call("POST", "/api/orders", user=buyer.user, json={"ticketId": ticket})
            except http1.ERRORS as exc:
                attempt = Attempt(kind, ticket, sent, time.time(), 0, type(exc).__name__)
                buyer.attempts.append(attempt)
                record.order_statuses.append(f"{kind}: {attempt.label}")
                return attempt
            attempt = Attempt(kind, ticket, sent, time.time(), reply.status, _label(reply))
            buyer.attempts.append(attempt)
            record.order_latencies.setdefault(kind, []).append(reply.seconds)
            record.order_statuses.append(f"{kind}: {attempt.label}")
            if reply.status == 429:
                await asyncio.sleep(RETRY_429_SECONDS)
                continue
            if reply.status == 403 and kind == "admitted" and refused_403 < ADMITTED_403_RETRIES:
                refused_403 += 1
                await asyncio.sleep(0.5)
                continue
            if reply.status == 201:
                attempt.order_id = reply.body["id"]
                pays = kind == "admitted" and pays_next % 2 == 0
                if kind == "admitted":
                    pays_next += 1
                win = Win(attempt.order_id, ticket, buyer.user, datetime.fromisoformat(reply.body["expiresAt"]), pays)
                buyer.wins.append(win)
                record.wins.append(win)
                record.created_at[win.order_id] = attempt.received
                if pays:
                    payments.append(asyncio.create_task(pay(paying, win)))
            return attempt

    async def join(http: http1.Pool, buyer: Buyer) -> None:
        for _ in range(3):
            buyer.join_sent = time.time()
            try:
                reply = await http.call("POST", f"/api/queue/{eid}", user=buyer.user)
            except http1.ERRORS as exc:
                record.join_statuses.append(type(exc).__name__)
                continue
            buyer.join_received = time.time()
            record.join_latencies.append(reply.seconds)
            record.join_statuses.append(_label(reply))
            if reply.status in (200, 201):
                buyer.joined = True
                return
            if reply.status == 429:
                await asyncio.sleep(RETRY_429_SECONDS)

    async def wait_for_admission(polls: http1.Pool, refused: http1.Pool, paying: http1.Pool, buyer: Buyer) -> None:
        cheated = False
        await _sleep_until(record.on_sale_ts + rng.uniform(0, spread))
        while time.time() < deadline:
            sent = time.time()
            try:
                reply = await polls.call("GET", f"/api/queue/{eid}", user=buyer.user)
            except http1.ERRORS as exc:
                record.poll_statuses.append(type(exc).__name__)
                await asyncio.sleep(1)
                continue
            received = time.time()
            buyer.polls += 1
            record.poll_latencies.append(reply.seconds)
            place = reply.body if reply.status == 200 and isinstance(reply.body, dict) else {}
            state = place.get("state")
            record.poll_statuses.append(f"{reply.status} {state or _label(reply)}")
            if state in ("admitted", "expired"):
                buyer.state = state
                buyer.admitted_seen = received
                buyer.position = place.get("position")
                buyer.admitted_until = _ts(place.get("admittedUntil"))
                return
            if state != "waiting":
                await asyncio.sleep(1)
                continue
            buyer.waiting_sent = sent
            if place.get("position") is None:  # not drawn yet
                await asyncio.sleep(2 * size.poll_floor * rng.uniform(0.75, 1.25))
                continue
            if buyer.position is None:
                buyer.first_position_seen = received
            buyer.position = place["position"]
            estimate = float(place.get("estimatedWaitSeconds") or 0)
            if buyer.cheats and not cheated and estimate >= CHEAT_MIN_WAIT_SECONDS:
                cheated = True
                seen = await listing(refused)
                await order(refused, paying, buyer, "cheat", rng.choice(seen or tickets))
                continue  # poll at once: a "waiting" after the attempt's answer proves it was not admitted
            await asyncio.sleep(poll_delay(estimate, size) * rng.uniform(0.8, 1.2))

    async def buy(orders: http1.Pool, paying: http1.Pool, buyer: Buyer) -> None:
        seen: list[str] = []
        cursor: str | None = None
        bought = failed = rounds = 0
        while bought < buyer.wants:
            if not seen or failed >= size.refresh_after:
                rounds += 1 if failed else 0
                if rounds > size.patience:
                    record.gave_up += 1
                    return
                # The first page, then the next one after each round of failures (every buyer starts at the top
                # of the list and scrolls down), back to the first after the last.
                seen, following = await page(orders, cursor)
                if not seen and cursor is not None:
                    seen, following = await page(orders)
                failed, cursor = 0, following
                if not seen:
                    record.first_empty_listing = record.first_empty_listing or time.time()
                    return
            attempt = await order(orders, paying, buyer, "admitted", seen.pop(rng.randrange(len(seen))))
            if attempt.status == 201:
                bought, failed, rounds = bought + 1, 0, 0
            elif attempt.status == 400 and "at most" in attempt.label:
                return
            elif attempt.status == 403:
                return  # refused three times: reported
            else:
                failed += 1
        if buyer.beyond and bought == record.max_per_buyer:
            seen = seen or await listing(orders)
            await order(orders, paying, buyer, "beyond", rng.choice(seen or tickets))

    async def buyer_flow(
        polls: http1.Pool, orders: http1.Pool, refused: http1.Pool, paying: http1.Pool, buyer: Buyer
    ) -> None:
        try:
            if buyer.joined:
                await wait_for_admission(polls, refused, paying, buyer)
                if buyer.state == "admitted":
                    await buy(orders, paying, buyer)
        finally:
            tick()

    async def control_flow(refused: http1.Pool, paying: http1.Pool, drawn: asyncio.Event) -> None:
        """Buyers who never joined: once before onSaleAt, once after the draw; each must be refused."""
        early = await listing(refused)
        await asyncio.gather(*(order(refused, paying, b, "early", rng.choice(early or tickets)) for b in control))
        await drawn.wait()
        later = await listing(refused)
        await asyncio.gather(*(order(refused, paying, b, "control", rng.choice(later or tickets)) for b in control))

    async def watch_draw(http: http1.Pool, drawn: asyncio.Event) -> None:
        await _sleep_until(record.on_sale_ts)
        while time.time() < deadline:
            try:
                reply = await http.call("GET", f"/api/queue/{eid}/draw")
            except http1.ERRORS:
                reply = None
            if reply is not None and reply.status == 200 and reply.body.get("seed") is not None:
                record.draw_seen = time.time()
                record.draw_after = reply.body
                break
            await asyncio.sleep(0.25)
        drawn.set()

    async def watch_page(http: http1.Pool, done: asyncio.Event) -> None:
        await _sleep_until(record.on_sale_ts)
        while not done.is_set():
            try:
                reply = await http.call("GET", f"/api/events/{eid}")
            except http1.ERRORS:
                reply = None
            record.page_reads += 1
            if reply is not None and reply.status == 200:
                available = (reply.body.get("tickets") or {}).get("available")
                if available == 0:
                    record.page_sold_out = time.time()
                    return
            await asyncio.sleep(0.25)

    base = system.gateway
    async with (
        http1.Pool(base, size.connections) as polls,
        http1.Pool(base, size.connections) as orders,
        http1.Pool(base, size.connections) as paying,
        # The attempts that must be refused wait ORDER_ADMISSION_WAIT_SECONDS for an admission before their 403:
        # their own connections, so they never hold up the admitted buyers' orders.
        http1.Pool(base, size.control + 16) as refused,
        http1.Pool(base, 4) as watching,
    ):
        reply = await watching.call("GET", f"/api/queue/{eid}/draw")
        record.draw_before = reply.body if reply.status == 200 else None
        step(f"on-sale: {size.buyers} buyers join before onSaleAt ({record.on_sale_at:%H:%M:%S})")
        record.joins_started = time.time()
        await asyncio.gather(*(join(polls, b) for b in buyers))
        record.joins_done = time.time()
        record.started = time.monotonic()
        drawn, done = asyncio.Event(), asyncio.Event()
        watchers = [
            asyncio.create_task(watch_draw(watching, drawn)),
            asyncio.create_task(watch_page(watching, done)),
        ]
        await asyncio.gather(
            control_flow(refused, paying, drawn), *(buyer_flow(polls, orders, refused, paying, b) for b in buyers)
        )
        record.ended = time.monotonic()
        done.set()
        await asyncio.gather(*watchers)
        await asyncio.gather(*payments)
        record.payments_ended = time.monotonic()
        reply = await watching.call("GET", f"/api/events/{eid}")
        if reply.status == 200:
            record.event = reply.body
    return record


async def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# -- verification ----------------------------------------------------------------------------------------------


def unadmitted_orders(
    record: OnSaleRecord,
    *,
    event_orders: list[tuple[str, str, float]] | None = None,
    read_back: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Orders of the event created by a buyer who was not admitted, from every source there is:

    - the answers: a 201 to a buyer who never joined, or to a waiting buyer's attempt when that buyer was still
      answered "waiting" by a poll sent after the 201 arrived (otherwise the admission may have come during the
      attempt: counted as ``ambiguous``);
    - ``event_orders`` (the orders database: order id, user id, created at): a buyer never seen admitted, or an
      order created before the buyer's last "waiting" poll was sent;
    - ``read_back`` (user id -> order ids of the event in their own ``GET /api/orders``) for buyers never
      admitted: any order at all.

    Also the orders of the event before ``onSaleAt``, and those beyond ``maxPerBuyer``."""
    by_user = {b.user.id: b for b in (*record.buyers, *record.control)}
    unadmitted: dict[str, str] = {}  # order id -> how it was found
    ambiguous: set[str] = set()
    before_sale: set[str] = set()
    beyond: set[str] = set()
    for buyer in by_user.values():
        for a in buyer.attempts:
            if a.status != 201 or a.order_id is None:
                continue
            if a.kind == "early" or a.received < record.on_sale_ts:
                before_sale.add(a.order_id)
            if a.kind in ("early", "control"):
                unadmitted[a.order_id] = "answered 201 to a buyer who never joined"
            elif a.kind == "cheat":
                if buyer.waiting_sent is not None and buyer.waiting_sent > a.received:
                    unadmitted[a.order_id] = "answered 201 to a buyer still waiting after it"
                else:
                    ambiguous.add(a.order_id)
            elif a.kind == "beyond":
                active = [w for w in buyer.wins if w.order_id != a.order_id and w.expires_at.timestamp() > a.sent]
                if len(active) >= record.max_per_buyer:
                    beyond.add(a.order_id)
    for order_id, user_id, created in event_orders or ():
        who = by_user.get(user_id)
        if who is None or who.admitted_seen is None:
            unadmitted.setdefault(order_id, "in the orders database, by a buyer never admitted")
        elif who.waiting_sent is not None and created < who.waiting_sent:
            unadmitted.setdefault(order_id, "in the orders database, created before its buyer was last seen waiting")
        if created < record.on_sale_ts:
            before_sale.add(order_id)
    for user_id, order_ids in (read_back or {}).items():
        who = by_user.get(user_id)
        if who is None or who.admitted_seen is None:
            for order_id in order_ids:
                unadmitted.setdefault(order_id, "in the orders of a buyer never admitted (GET /api/orders)")
    if event_orders is not None:  # the database decided those it holds
        ambiguous -= {row[0] for row in event_orders}
    ambiguous -= set(unadmitted)
    return {
        "orders": len(unadmitted),
        "found_by": count_by(unadmitted.values()),
        "examples": sorted(unadmitted)[:10],
        "ambiguous": len(ambiguous),
        "before_on_sale": len(before_sale),
        "beyond_max_per_buyer": len(beyond),
    }


async def _event_orders(system: System, record: OnSaleRecord) -> list[tuple[str, str, float]] | None:
    if "database" not in system.urls or not system.local:  # a remote database's clock may differ from ours
        return None
    conn = await asyncpg.connect(database_dsn(system.urls["database"], "ticketing_orders"))
    try:
        rows = await conn.fetch(
            "SELECT id::text, user_id::text, created_at FROM orders WHERE ticket_id = ANY($1::uuid[])",
            record.tickets,
        )
    finally:
        await conn.close()
    return [(r["id"], r["user_id"], r["created_at"].timestamp()) for r in rows]


async def _drawn_at(system: System, record: OnSaleRecord) -> float | None:
    if "database" not in system.urls or not system.local:
        return None
    conn = await asyncpg.connect(database_dsn(system.urls["database"], "ticketing_queue"))
    try:
        drawn = await conn.fetchval("SELECT drawn_at FROM rooms WHERE event_id = $1::uuid", record.event_id)
    finally:
        await conn.close()
    return None if drawn is None else float(drawn.timestamp())


async def _read_back_orders(system: System, record: OnSaleRecord, buyers: list[Buyer]) -> dict[str, list[str]]:
    ours = set(record.tickets)
    found: dict[str, list[str]] = {}
    async with client.session(8) as http:

        async def one(i: int) -> None:
            buyer = buyers[i]
            reply = await client.call(http, "GET", f"{system.gateway}/api/orders", user=buyer.user)
            if reply.status == 200:
                found[buyer.user.id] = [o["id"] for o in reply.body if o["ticket"]["id"] in ours]

        await client.gather_limited(len(buyers), one, concurrency=8)
    return found


async def measure(
    system: System,
    size: OnSaleSize,
    *,
    existing: list[User],
    order_window: float,
    progress: Callable[[str, int], Callable[[], None]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Prepare, run the sale, let it settle, check everything; the scenario's results."""
    seller, buyers, control = await prepare(system, size, existing=existing, progress=progress)
    charged_before = await flash_sale.stripe_charges(system)
    record = await sale(
        system, size, seller, buyers, control, tick=progress("on-sale: buyers admitted and done", size.buyers), step=say
    )
    sold = SaleRecord(tickets=record.tickets, wins=record.wins, started=record.started, ended=record.ended)
    settle = await flash_sale.settle(system, sold, timeout=order_window + 120)
    orders, tickets = await flash_sale.read_back(system, sold, size.connections)
    charges = await flash_sale.stripe_charges(system)
    kept = refunded = None
    if charges is not None:
        # Charges of earlier scenarios are theirs (checked there): only those made since count here.
        earlier = set(charged_before[0]) | set(charged_before[1]) if charged_before else set()
        kept = {o: n for o, n in charges[0].items() if o not in earlier}
        refunded = {o: n for o, n in charges[1].items() if o not in earlier}
    problems = flash_sale.verify(sold, orders, tickets, kept, refunded)
    checker = settle.get("checker")
    if checker is not None and not checker["ok"]:
        problems += [f"checker: {v['invariant']}: {v['detail']} {v['refs']}" for v in checker["violations"]]
    if not settle["settled"]:
        problems.append("the system did not reach its final state in time")
    never_admitted = [b for b in (*record.control, *record.buyers) if b.admitted_seen is None]
    results = summarise(
        record,
        size,
        settings=queue_settings(system),
        invariant_problems=problems,
        settle=settle,
        event_orders=await _event_orders(system, record),
        read_back=await _read_back_orders(system, record, never_admitted),
        drawn_at=await _drawn_at(system, record),
        algorithm=load_algorithm(),
    )
    results["stripe_checked"] = charges is not None
    return results


def summarise(
    record: OnSaleRecord,
    size: OnSaleSize,
    *,
    settings: Mapping[str, Any],
    invariant_problems: list[str],
    settle: dict[str, Any],
    event_orders: list[tuple[str, str, float]] | None,
    read_back: Mapping[str, list[str]] | None,
    drawn_at: float | None,
    algorithm: DrawAlgorithm,
) -> dict[str, Any]:
    """The scenario's results and its violations (any of them fails the run)."""
    t0 = record.on_sale_ts
    joined = [b for b in record.buyers if b.joined]
    joined_before = [b for b in joined if b.join_received is not None and b.join_received < t0]
    straddling = [b for b in joined if b not in joined_before and b.join_sent is not None and b.join_sent < t0]
    draw = check_draw(
        algorithm,
        record.draw_before,
        record.draw_after,
        {b.user.id: b.position for b in joined},
        [b.user.id for b in joined_before],
        [b.user.id for b in straddling],
    )
    draw["revealed_after_on_sale_s"] = None if record.draw_seen is None else record.draw_seen - t0
    draw["drawn_after_on_sale_s"] = None if drawn_at is None else drawn_at - t0
    admitted = [b for b in joined if b.admitted_seen is not None and b.position is not None]
    order = admission_order(
        Admission(
            b.user.id,
            b.position,
            b.waiting_sent,
            b.admitted_seen,
            None if b.admitted_until is None else b.admitted_until.timestamp(),
        )
        for b in admitted
        if b.position is not None and b.admitted_seen is not None
    )
    at_queue: dict[str, float] = {}
    if settings.get("known"):
        at_queue = {
            b.user.id: b.admitted_until.timestamp() - settings["admission_seconds"]
            for b in admitted
            if b.admitted_until is not None
        }
    waits = {
        "join → admitted (seen by the buyer)": summary(
            [b.admitted_seen - b.join_received for b in admitted if b.admitted_seen and b.join_received]
        ),
        "onSaleAt → admitted (seen by the buyer)": summary([b.admitted_seen - t0 for b in admitted if b.admitted_seen]),
        "join → admitted (at the queue)": summary(
            [at_queue[b.user.id] - b.join_received for b in admitted if b.user.id in at_queue and b.join_received]
        ),
        "onSaleAt → admitted (at the queue)": summary([at - t0 for at in at_queue.values()]),
    }
    without = unadmitted_orders(record, event_orders=event_orders, read_back=read_back)
    paid_tickets = {w.ticket_id for w in record.wins if w.paid}
    held = [
        (record.created_at[w.order_id], w.ticket_id, math.inf if w.paid else w.expires_at.timestamp())
        for w in record.wins
        if w.order_id in record.created_at
    ]
    sold_out = sold_out_at(held, len(record.tickets))
    first_orders: dict[str, float] = {}  # ticket -> its first order's 201
    for created, ticket, _ in sorted(held):
        first_orders.setdefault(ticket, created)
    every_ticket_ordered = max(first_orders.values()) if len(first_orders) == len(record.tickets) else None
    attempts = [a for b in (*record.buyers, *record.control) for a in b.attempts]
    by_kind: dict[str, dict[str, int]] = {}
    for kind in ("early", "control", "cheat", "admitted", "beyond"):
        labels = [a.label for a in attempts if a.kind == kind]
        if labels:
            by_kind[kind] = count_by(labels)
    timeline: dict[int, dict[str, int]] = {}  # whole seconds after onSaleAt -> answers to admitted buyers' orders
    for a in attempts:
        if a.kind == "admitted":
            second = timeline.setdefault(math.floor(a.received - t0), {})
            second[str(a.status)] = second.get(str(a.status), 0) + 1
    admission_times = sorted(at_queue.values()) or sorted(b.admitted_seen for b in admitted if b.admitted_seen)
    span = admission_times[-1] - admission_times[0] if len(admission_times) > 1 else 0.0
    never = len(joined) - len(admitted)

    violations = list(invariant_problems)
    violations += [f"draw: {p}" for p in draw["problems"]]
    if order["violations"]:
        first = order["examples"][0]
        violations.append(
            f"admission order: {order['violations']} buyers admitted before a better position (first: position "
            f"{first['position']}, proven by {first['proof_margin_s'] * 1000:.0f} ms)"
        )
    if order["admitted_until_inversions"]:
        violations.append(f"admission order: {order['admitted_until_inversions']} admittedUntil inversions")
    if order["duplicate_positions"]:
        violations.append(f"admission order: {order['duplicate_positions']} positions given twice")
    if without["orders"]:
        violations.append(f"{without['orders']} orders without admission ({without['found_by']})")
    if without["before_on_sale"]:
        violations.append(f"{without['before_on_sale']} orders before onSaleAt")
    if without["beyond_max_per_buyer"]:
        violations.append(f"{without['beyond_max_per_buyer']} orders beyond maxPerBuyer ({record.max_per_buyer})")
    if never:
        violations.append(f"{never} buyers who joined were never seen admitted")
    if len(joined) < len(record.buyers):
        violations.append(f"{len(record.buyers) - len(joined)} buyers could not join")
    tickets_info = (record.event.get("tickets") or {}) if record.event else {}
    return {
        "size": asdict(size),
        "event_id": record.event_id,
        "on_sale_at": record.on_sale_at.isoformat(),
        "max_per_buyer": record.max_per_buyer,
        "queue_settings": dict(settings),
        "joins": {
            "buyers": len(record.buyers),
            "joined": len(joined),
            "joined_before_on_sale": len(joined_before),
            "statuses": count_by(record.join_statuses),
            "latency_ms": _ms(summary(record.join_latencies)),
            "last_join_before_on_sale_s": None if record.joins_done is None else t0 - record.joins_done,
            "joined_after_on_sale": len(joined) - len(joined_before),
            "seconds": None
            if record.joins_started is None or record.joins_done is None
            else record.joins_done - record.joins_started,
        },
        "draw": draw,
        "admission": {
            "admitted": len(admitted),
            "never_admitted": never,
            "order": order,
            "rate_per_s": (len(admission_times) - 1) / span if span > 0 else None,
            "configured_rate_per_s": settings["admit_per_second"],
        },
        "waits_s": waits,
        "polls": {
            "requests": len(record.poll_latencies),
            "per_buyer": len(record.poll_latencies) / len(joined) if joined else None,
            "latency_ms": _ms(summary(record.poll_latencies)),
            "statuses": count_by(record.poll_statuses),
            "floor_s": size.poll_floor,
            "cap_s": size.poll_cap,
        },
        "sale": {
            "sold_out_after_s": None if sold_out is None else sold_out - t0,
            "event_page_sold_out_after_s": None if record.page_sold_out is None else record.page_sold_out - t0,
            "every_ticket_ordered_after_s": None if every_ticket_ordered is None else every_ticket_ordered - t0,
            "buyers_who_gave_up": record.gave_up,
            "first_empty_listing_after_s": None
            if record.first_empty_listing is None
            else record.first_empty_listing - t0,
            "orders_created": len(record.wins),
            "orders_paid": sum(w.paid for w in record.wins),
            "tickets_paid": len(paid_tickets),
            "tickets_unsold": len(record.tickets) - len(paid_tickets),
            "event_page_at_end": tickets_info,
            "buyers_with_orders": sum(1 for b in record.buyers if b.wins),
            "listing_reads": record.listing_reads,
            "order_latency_ms": _ms(summary(record.order_latencies.get("admitted", []))),
            "latency_ms_by_attempt": {k: _ms(summary(v)) for k, v in record.order_latencies.items()},
            "payment_latency_ms": _ms(summary(record.payment_latencies)),
            "payment_statuses": count_by(record.payment_statuses),
            "attempts": by_kind,
            "answers_by_second": {str(k): timeline[k] for k in sorted(timeline)},
            "duration_s": record.ended - record.started,
        },
        "without_admission": without,
        "settle": settle,
        "invariant_problems": invariant_problems,
        "violations": violations,
        "samples": {
            "position": [b.position for b in admitted],
            "admitted_seen_s": [(b.admitted_seen or t0) - t0 for b in admitted],
            "admitted_at_queue_s": [at_queue[b.user.id] - t0 if b.user.id in at_queue else None for b in admitted],
        },
    }


def _ms(values: dict[str, float]) -> dict[str, float]:
    return {k: v * 1000 if k != "count" else v for k, v in values.items()}
