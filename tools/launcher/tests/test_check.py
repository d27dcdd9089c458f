"""``ticketing check`` finds every broken invariant: each one is crafted directly in real databases migrated with
every service's migrations (and a real JetStream), and a consistent data set reports nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from ticketing_auth.config import Settings as AuthSettings
from ticketing_auth.main import MIGRATIONS_DIR as AUTH_MIGRATIONS
from ticketing_common import testing
from ticketing_common.testing import prepare_database, settings_for, truncate_all
from ticketing_expiration.config import Settings as ExpirationSettings
from ticketing_expiration.main import MIGRATIONS_DIR as EXPIRATION_MIGRATIONS
from ticketing_launcher.__main__ import main as ticketing
from ticketing_launcher.check import Report, check, database_dsn
from ticketing_orders.config import Settings as OrdersSettings
from ticketing_orders.main import MIGRATIONS_DIR as ORDERS_MIGRATIONS
from ticketing_payments.config import Settings as PaymentsSettings
from ticketing_payments.main import MIGRATIONS_DIR as PAYMENTS_MIGRATIONS
from ticketing_queue.config import Settings as QueueSettings
from ticketing_queue.main import MIGRATIONS_DIR as QUEUE_MIGRATIONS
from ticketing_tickets.config import Settings as TicketsSettings
from ticketing_tickets.main import MIGRATIONS_DIR as TICKETS_MIGRATIONS

SUFFIX = "_check"
SERVICES: dict[str, tuple[Any, Path]] = {
    "auth": (AuthSettings, AUTH_MIGRATIONS),
    "tickets": (TicketsSettings, TICKETS_MIGRATIONS),
    "orders": (OrdersSettings, ORDERS_MIGRATIONS),
    "expiration": (ExpirationSettings, EXPIRATION_MIGRATIONS),
    "payments": (PaymentsSettings, PAYMENTS_MIGRATIONS),
    "queue": (QueueSettings, QUEUE_MIGRATIONS),
}
DATABASES = {svc: f"ticketing_{svc}{SUFFIX}" for svc in SERVICES}


@dataclass
class World:
    """Writes what the services would have written, straight into their databases."""

    infra: testing.TestInfra
    db: dict[str, asyncpg.Connection]
    stream: str = field(default_factory=lambda: f"CHECK_{uuid.uuid4().hex[:8]}")

    async def check(self, *, nats: bool = False, now: datetime | None = None) -> Report:
        return await check(
            database_url=self.infra.database_url,
            nats_url=self.infra.nats_url if nats else None,
            databases=DATABASES,
            stream=self.stream,
            now=now,
        )

    async def user(self) -> uuid.UUID:
        user_id = uuid.uuid4()
        email = f"{user_id.hex[:8]}@example.com"
        await self.db["auth"].execute(
            "INSERT INTO users (id, email, password_hash, version) VALUES ($1, $2, 'argon2-hash', 0)", user_id, email
        )
        await self.db["payments"].execute("INSERT INTO users (id, email, version) VALUES ($1, $2, 0)", user_id, email)
        return user_id

    async def ticket(
        self,
        seller: uuid.UUID,
        *,
        version: int = 0,
        order_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        ticket_id = uuid.uuid4()
        await self.db["tickets"].execute(
            "INSERT INTO tickets (id, title, price, user_id, order_id, version, event_id) "
            "VALUES ($1, 'Concert', 20, $2, $3, $4, $5)",
            ticket_id,
            seller,
            order_id,
            version,
            event_id,
        )
        await self.db["orders"].execute(
            "INSERT INTO tickets (id, title, price, user_id, version, event_id) VALUES ($1, 'Concert', 20, $2, $3, $4)",
            ticket_id,
            seller,
            version,
            event_id,
        )
        return ticket_id

    async def event(self, seller: uuid.UUID, *, max_per_buyer: int = 4, waiting_room: bool = True) -> uuid.UUID:
        """An event with its copies in orders and in the queue (its room)."""
        event_id, on_sale_at = uuid.uuid4(), datetime.now(UTC) - timedelta(minutes=1)
        await self.db["tickets"].execute(
            "INSERT INTO events (id, name, venue, starts_at, on_sale_at, max_per_buyer, waiting_room, user_id, version) "
            "VALUES ($1, 'Show', 'Hall', $2, $3, $4, $5, $6, 0)",
            event_id,
            on_sale_at + timedelta(days=30),
            on_sale_at,
            max_per_buyer,
            waiting_room,
            seller,
        )
        await self.db["orders"].execute(
            "INSERT INTO events (id, on_sale_at, max_per_buyer, waiting_room, version) VALUES ($1, $2, $3, $4, 0)",
            event_id,
            on_sale_at,
            max_per_buyer,
            waiting_room,
        )
        await self.db["queue"].execute(
            "INSERT INTO rooms (event_id, on_sale_at, waiting_room, version, seed, last_position) "
            "VALUES ($1, $2, $3, 0, $4, 1000)",
            event_id,
            on_sale_at,
            waiting_room,
            bytes(32),
        )
        return event_id

    async def entrant(self, event_id: uuid.UUID, buyer: uuid.UUID, *, position: int, admitted: bool) -> None:
        await self.db["queue"].execute(
            "INSERT INTO entrants (event_id, user_id, position, admitted_until) VALUES ($1, $2, $3, $4)",
            event_id,
            buyer,
            position,
            datetime.now(UTC) + timedelta(minutes=10) if admitted else None,
        )

    async def order(
        self,
        buyer: uuid.UUID,
        ticket_id: uuid.UUID,
        *,
        status: str,
        version: int,
        copy_version: int | None = None,
        copy_status: str | None = None,
        expires_in: timedelta = timedelta(minutes=15),
    ) -> uuid.UUID:
        """An order in the orders service and its copy in payments (at the version of its last event)."""
        order_id = uuid.uuid4()
        expires_at = datetime.now(UTC) + expires_in
        await self.db["orders"].execute(
            "INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id) VALUES ($1, $2, $3, $4, $5, $6)",
            order_id,
            buyer,
            status,
            expires_at,
            version,
            ticket_id,
        )
        await self.db["payments"].execute(
            "INSERT INTO orders (id, user_id, status, price, expires_at, version) VALUES ($1, $2, $3, 20, $4, $5)",
            order_id,
            buyer,
            copy_status or status,
            expires_at,
            copy_version if copy_version is not None else version,
        )
        return order_id

    async def payment(self, order_id: uuid.UUID, *, refunded: bool = False, refund_reason: str | None = None) -> None:
        payment_id, stripe_id = uuid.uuid4(), f"pi_{uuid.uuid4().hex}"
        await self.db["payments"].execute(
            "INSERT INTO payments (id, order_id, stripe_id, amount, currency, refund_id, refunded_at) "
            "VALUES ($1, $2, $3, 2000, 'usd', $4, $5)",
            payment_id,
            order_id,
            stripe_id,
            "re_1" if refunded else None,
            datetime.now(UTC) if refunded else None,
        )
        await self.db["orders"].execute(
            "INSERT INTO charges (id, order_id, stripe_id, amount, currency, refund_reason) "
            "VALUES ($1, $2, $3, 2000, 'usd', $4)",
            payment_id,
            order_id,
            stripe_id,
            refund_reason,
        )

    async def sold_ticket(self) -> tuple[uuid.UUID, uuid.UUID]:
        """A ticket bought and paid: held by a complete order with one payment; every copy up to date."""
        seller, buyer = await self.user(), await self.user()
        ticket_id = await self.ticket(seller)
        # Completing an order (on charge.created) bumps its version without an event: the copy stays one behind.
        order_id = await self.order(buyer, ticket_id, status="complete", version=2, copy_version=1)
        await self.hold(ticket_id, order_id, version=1)
        await self.db["orders"].execute("UPDATE orders SET version = 2 WHERE id = $1", order_id)
        await self.payment(order_id)
        return ticket_id, order_id

    async def hold(self, ticket_id: uuid.UUID, order_id: uuid.UUID | None, *, version: int) -> None:
        await self.db["tickets"].execute(
            "UPDATE tickets SET order_id = $2, version = $3 WHERE id = $1", ticket_id, order_id, version
        )
        await self.db["orders"].execute("UPDATE tickets SET version = $2 WHERE id = $1", ticket_id, version)

    async def cancelled_order(self) -> tuple[uuid.UUID, uuid.UUID]:
        """A ticket that was reserved, then freed when its order was cancelled (held v1, freed v2)."""
        seller, buyer = await self.user(), await self.user()
        ticket_id = await self.ticket(seller, version=2)
        order_id = await self.order(buyer, ticket_id, status="cancelled", version=1)
        return ticket_id, order_id

    async def reserved_ticket(self) -> tuple[uuid.UUID, uuid.UUID]:
        seller, buyer = await self.user(), await self.user()
        ticket_id = await self.ticket(seller)
        order_id = await self.order(buyer, ticket_id, status="created", version=0)
        await self.hold(ticket_id, order_id, version=1)
        return ticket_id, order_id


@pytest.fixture
async def world(infra: testing.TestInfra) -> AsyncIterator[World]:
    connections: dict[str, asyncpg.Connection] = {}
    try:
        for svc, (settings_cls, migrations) in SERVICES.items():
            settings = settings_for(settings_cls, infra, database_name=DATABASES[svc])
            await prepare_database(settings, migrations)
            await truncate_all(settings)
            connections[svc] = await asyncpg.connect(database_dsn(infra.database_url, DATABASES[svc]))
        yield World(infra, connections)
    finally:
        for conn in connections.values():
            await conn.close()


def invariants(report: Report) -> list[str]:
    return sorted(v.invariant for v in report.violations)


async def test_a_consistent_data_set_reports_nothing(world: World, js: JetStreamContext) -> None:
    await world.sold_ticket()
    await world.cancelled_order()
    await world.reserved_ticket()
    _, refunded = await world.cancelled_order()  # cancelled before it heard of its charge: refunded
    await world.payment(refunded, refunded=True, refund_reason="order cancelled")
    await world.ticket(await world.user())  # on sale
    await world.db["orders"].execute(
        "INSERT INTO outbox (event_id, subject, payload, headers, sent_at) VALUES ($1, 'order.created', '{}', '{}', now())",
        uuid.uuid4(),
    )
    await js.add_stream(StreamConfig(name=world.stream, subjects=[f"{world.stream.lower()}.>"]))

    report = await world.check(nats=True)

    assert report.ok, report.render()
    assert report.violations == []
    assert report.counts["orders"] == 4
    assert report.counts["payments"] == 2
    assert "consistent: no invariant is broken" in report.render()


async def test_a_ticket_held_by_a_cancelled_order_is_reported(world: World) -> None:
    ticket_id, order_id = await world.cancelled_order()
    await world.hold(ticket_id, order_id, version=2)

    report = await world.check()

    assert invariants(report) == ["ticket-held-by-inactive-order"]
    assert report.violations[0].refs == {"ticket": str(ticket_id), "order": str(order_id)}


async def test_a_ticket_held_by_an_order_the_orders_service_never_had_is_reported(world: World) -> None:
    ticket_id = await world.ticket(await world.user())
    await world.hold(ticket_id, uuid.uuid4(), version=0)

    assert invariants(await world.check()) == ["ticket-held-by-inactive-order"]


async def test_an_active_order_whose_ticket_is_not_held_by_it_is_reported(world: World) -> None:
    ticket_id, order_id = await world.reserved_ticket()
    await world.db["tickets"].execute("UPDATE tickets SET order_id = NULL WHERE id = $1", ticket_id)

    report = await world.check()

    assert invariants(report) == ["active-order-not-holding-ticket"]
    assert report.violations[0].refs["order"] == str(order_id)


async def test_two_active_orders_for_one_ticket_are_reported(world: World) -> None:
    ticket_id, _ = await world.reserved_ticket()
    orders = world.db["orders"]
    # The partial unique index makes this impossible through the service: lift it for the test.
    definition = await orders.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_orders_active_ticket'")
    await orders.execute("DROP INDEX uq_orders_active_ticket")
    try:
        await world.order(await world.user(), ticket_id, status="created", version=0)

        report = await world.check()
    finally:
        await orders.execute("TRUNCATE orders CASCADE")
        await orders.execute(definition)

    assert "double-booking" in invariants(report)
    [double] = [v for v in report.violations if v.invariant == "double-booking"]
    assert double.refs == {"ticket": str(ticket_id)}


async def test_a_complete_order_without_a_payment_is_reported(world: World) -> None:
    _, order_id = await world.sold_ticket()
    await world.db["payments"].execute("DELETE FROM payments WHERE order_id = $1", order_id)

    report = await world.check()

    assert invariants(report) == ["complete-order-payments"]
    assert report.violations[0].detail == "complete order with 0 payments"


async def test_a_complete_order_whose_payment_was_refunded_is_reported(world: World) -> None:
    _, order_id = await world.sold_ticket()
    await world.db["payments"].execute("UPDATE payments SET refunded_at = now() WHERE order_id = $1", order_id)

    assert invariants(await world.check()) == ["complete-order-payments", "complete-order-refunded"]


async def test_a_payment_kept_for_a_cancelled_order_is_reported_with_its_refund_flag(world: World) -> None:
    _, flagged = await world.cancelled_order()
    await world.payment(flagged, refund_reason="order cancelled")
    _, unflagged = await world.cancelled_order()
    await world.payment(unflagged)

    report = await world.check()

    assert invariants(report) == ["payment-for-incomplete-order", "payment-for-incomplete-order"]
    flags = {v.refs["order"]: v.refs["refund_flagged"] for v in report.violations}
    assert flags == {str(flagged): "True", str(unflagged): "False"}


async def test_a_payment_for_an_order_the_orders_service_never_had_is_reported(world: World) -> None:
    buyer = await world.user()
    order_id = uuid.uuid4()
    await world.db["payments"].execute(
        "INSERT INTO orders (id, user_id, status, price, expires_at, version) VALUES ($1, $2, 'complete', 20, now(), 0)",
        order_id,
        buyer,
    )
    await world.db["payments"].execute(
        "INSERT INTO payments (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, 'pi_x', 2000, 'usd')",
        uuid.uuid4(),
        order_id,
    )

    report = await world.check()

    assert invariants(report) == ["payment-for-incomplete-order"]
    assert report.violations[0].detail == "payment kept for a unknown order"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("UPDATE tickets SET version = 0", "replica-behind"),  # orders' ticket copy missed ticket.updated
        ("DELETE FROM tickets", "replica-missing"),
        ("UPDATE tickets SET title = 'Other'", "replica-differs"),
    ],
)
async def test_a_ticket_copy_not_at_its_source_is_reported(world: World, change: str, expected: str) -> None:
    await world.reserved_ticket()
    await world.db["orders"].execute("SET session_replication_role = replica")  # the orders' foreign key
    try:
        await world.db["orders"].execute(change)
    finally:
        await world.db["orders"].execute("SET session_replication_role = DEFAULT")

    report = await world.check()

    assert expected in invariants(report)
    assert any(v.detail.startswith("orders.tickets") for v in report.violations if v.invariant == expected)


async def test_an_order_copy_behind_or_at_another_status_is_reported(world: World) -> None:
    _, behind = await world.cancelled_order()
    await world.db["payments"].execute("UPDATE orders SET version = 0, status = 'created' WHERE id = $1", behind)
    _, differs = await world.sold_ticket()
    await world.db["payments"].execute("UPDATE orders SET status = 'created' WHERE id = $1", differs)

    report = await world.check()

    assert invariants(report) == ["replica-behind", "replica-differs"]
    assert {v.refs["id"] for v in report.violations} == {str(behind), str(differs)}


async def test_a_user_without_an_email_copy_in_payments_is_reported(world: World) -> None:
    user_id = await world.user()
    await world.db["payments"].execute("DELETE FROM users WHERE id = $1", user_id)

    report = await world.check()

    assert invariants(report) == ["replica-missing"]
    assert report.violations[0].detail == "payments.users has no copy"


async def test_an_unpaid_order_long_past_its_expiry_is_reported(world: World) -> None:
    _, order_id = await world.reserved_ticket()
    await world.db["orders"].execute(
        "UPDATE orders SET expires_at = now() - interval '5 minutes' WHERE id = $1", order_id
    )
    await world.db["payments"].execute(
        "UPDATE orders SET expires_at = now() - interval '5 minutes' WHERE id = $1", order_id
    )

    report = await world.check()

    assert invariants(report) == ["order-stuck"]
    # Within the grace period the expiry may still be on its way.
    assert (await world.check(now=datetime.now(UTC) - timedelta(minutes=4, seconds=50))).ok


@pytest.mark.parametrize("svc", ["auth", "tickets", "orders", "expiration", "payments"])
async def test_an_outbox_row_never_sent_is_reported(world: World, svc: str) -> None:
    await world.db[svc].execute(
        "INSERT INTO outbox (event_id, subject, payload, headers) VALUES ($1, 'x.y', '{}', '{}')", uuid.uuid4()
    )

    report = await world.check()

    assert invariants(report) == ["outbox-unsent"]
    assert report.violations[0].refs == {"service": svc}


async def test_a_parked_message_is_reported(world: World) -> None:
    event_id = str(uuid.uuid4())
    await world.db["orders"].execute(
        "INSERT INTO parked_messages (consumer, subject, event_id, data, headers, error, deliveries) "
        "VALUES ('orders-charge-created', 'charge.created', $1, '{}', '{}', 'UnknownOrderError()', 10)",
        event_id,
    )

    report = await world.check()

    assert invariants(report) == ["parked-message"]
    assert report.violations[0].refs == {"service": "orders", "event_id": event_id}
    assert "charge.created parked by orders-charge-created" in report.violations[0].detail


async def test_a_consumer_with_work_outstanding_is_reported(world: World, js: JetStreamContext) -> None:
    subject = f"{world.stream.lower()}.event"
    await js.add_stream(StreamConfig(name=world.stream, subjects=[f"{world.stream.lower()}.>"]))
    await js.pull_subscribe(subject, durable="slow-consumer", stream=world.stream)
    await js.publish(subject, b"{}", stream=world.stream)
    await js.publish(subject, b"{}", stream=world.stream)

    report = await world.check(nats=True)

    assert invariants(report) == ["consumer-behind"]
    assert report.violations[0].refs == {"consumer": "slow-consumer"}
    assert report.violations[0].detail == "2 pending, 0 unacknowledged"


async def test_a_missing_stream_is_reported(world: World) -> None:
    report = await world.check(nats=True)

    assert invariants(report) == ["stream-missing"]


@pytest.fixture
async def world_with_parked(world: World) -> World:
    await world.sold_ticket()
    await world.db["orders"].execute(
        "INSERT INTO parked_messages (consumer, subject, event_id, data, headers, error, deliveries) "
        "VALUES ('orders-charge-created', 'charge.created', 'e1', '{}', '{}', 'UnknownOrderError()', 10)"
    )
    return world


@pytest.fixture
async def world_consistent(world: World) -> World:
    await world.sold_ticket()
    return world


def test_the_command_exits_1_and_names_what_is_broken(
    world_with_parked: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check", "--database-url", world_with_parked.infra.database_url, "--database-suffix", SUFFIX]

    with pytest.raises(SystemExit) as exited:
        ticketing([*args, "--state-dir", str(tmp_path)])

    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "BROKEN parked-message: charge.created parked by orders-charge-created" in out


def test_the_command_exits_0_on_a_consistent_system_and_prints_json_on_request(
    world_consistent: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check", "--database-url", world_consistent.infra.database_url, "--database-suffix", SUFFIX, "--json"]

    with pytest.raises(SystemExit) as exited:
        ticketing([*args, "--state-dir", str(tmp_path)])

    assert exited.value.code == 0
    assert '"ok": true' in capsys.readouterr().out


def test_the_command_documents_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ticketing(["check", "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--database-url", "--nats-url", "--database-suffix", "--settle", "--json"):
        assert option in out


async def test_a_consistent_sale_through_a_waiting_room_reports_nothing(world: World) -> None:
    seller, first, second = await world.user(), await world.user(), await world.user()
    event_id = await world.event(seller, max_per_buyer=1)
    await world.entrant(event_id, first, position=1, admitted=True)
    await world.entrant(event_id, second, position=2, admitted=False)
    ticket_id = await world.ticket(seller, event_id=event_id)
    order_id = await world.order(first, ticket_id, status="created", version=0)
    await world.hold(ticket_id, order_id, version=1)

    report = await world.check()

    assert report.ok, report.render()


async def test_an_order_by_a_buyer_never_admitted_is_reported(world: World) -> None:
    seller, buyer = await world.user(), await world.user()
    event_id = await world.event(seller)
    await world.entrant(event_id, buyer, position=1, admitted=False)
    ticket_id = await world.ticket(seller, event_id=event_id)
    order_id = await world.order(buyer, ticket_id, status="created", version=0)
    await world.hold(ticket_id, order_id, version=1)

    assert invariants(await world.check()) == ["order-without-admission"]


async def test_a_buyer_holding_more_than_the_events_limit_is_reported(world: World) -> None:
    seller, buyer = await world.user(), await world.user()
    event_id = await world.event(seller, max_per_buyer=1, waiting_room=False)
    for _ in range(2):
        ticket_id = await world.ticket(seller, event_id=event_id)
        order_id = await world.order(buyer, ticket_id, status="created", version=0)
        await world.hold(ticket_id, order_id, version=1)

    assert invariants(await world.check()) == ["above-limit-per-buyer"]


async def test_a_later_position_admitted_before_an_earlier_one_is_reported(world: World) -> None:
    seller = await world.user()
    event_id = await world.event(seller)
    await world.entrant(event_id, await world.user(), position=1, admitted=False)
    await world.entrant(event_id, await world.user(), position=2, admitted=True)

    assert invariants(await world.check()) == ["admitted-out-of-order"]


async def test_an_event_copy_behind_its_source_is_reported(world: World) -> None:
    event_id = await world.event(await world.user())
    await world.db["tickets"].execute("UPDATE events SET version = 1, max_per_buyer = 2 WHERE id = $1", event_id)
    await world.db["queue"].execute("UPDATE rooms SET version = 1 WHERE event_id = $1", event_id)

    report = await world.check()

    assert [(v.invariant, v.detail) for v in report.violations] == [
        ("replica-behind", "orders.events at version 0, source at 1")
    ]
