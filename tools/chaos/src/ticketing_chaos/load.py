"""The scripted load, through the gateway like real browsers: sign-ups, tickets, racing orders, payments
(some declined), cancellations and orders left to expire; and on-sales of events through the waiting room (joins
before the sale, an order tried before admission, admission, orders within the event's limit).

Every request is recorded in the :class:`~ticketing_chaos.tally.Tally`. A round that meets a fault (a clean
503, a connection error) is abandoned where it stands: whatever state it leaves must still be consistent.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from ticketing_chaos.tally import OK, Tally

ON_SALE_SHARE = 0.2  # of the rounds
ON_SALE_AFTER_SECONDS = 2.0  # an event's sale opens this long after it is created: buyers join before it
PASSWORD = "chaos monkey password"  # noqa: S105 - the load's throwaway users
TITLES = ("Concert", "Théâtre", "Fußball", "コンサート", "Opera 🎭", "Jazz & Blues", "<b>Gala</b>")


@dataclass
class User:
    email: str
    http: httpx.AsyncClient


@dataclass
class Load:
    """Drives ``workers`` concurrent rounds until ``deadline`` (``time.monotonic()``)."""

    base_url: str
    tally: Tally
    rng: random.Random
    order_window_seconds: float
    timeout: float = 10.0
    max_users: int = 24
    users: list[User] = field(default_factory=list)
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def run(self, *, workers: int, deadline: float) -> None:
        try:
            await asyncio.gather(*(self._worker(deadline) for _ in range(workers)))
        finally:
            await asyncio.gather(*(c.aclose() for c in self._clients), return_exceptions=True)

    async def _worker(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await self.round(deadline)
            except _Abandoned:
                await asyncio.sleep(0.2)

    # -- requests --------------------------------------------------------------------------------------------

    async def request(
        self, user: User | httpx.AsyncClient, method: str, path: str, route: str, **kwargs: Any
    ) -> httpx.Response:
        """One request, recorded; a failure that is not an answer on purpose abandons the round."""
        http = user.http if isinstance(user, User) else user
        try:
            response = await http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.record_error(f"{method} {route}", exc)
            raise _Abandoned() from None
        kind = self.tally.record(f"{method} {route}", response)
        if kind not in (OK, "refused"):
            raise _Abandoned()
        return response

    def _client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
        self._clients.append(client)
        return client

    async def sign_up(self) -> User:
        user = User(email=f"chaos-{uuid.uuid4().hex[:12]}@example.com", http=self._client())
        response = await self.request(
            user, "POST", "/api/users/signup", "/api/users/signup", json={"email": user.email, "password": PASSWORD}
        )
        if response.status_code != 201:
            raise _Abandoned()
        self.users.append(user)
        self.tally.outcome("signed up")
        return user

    async def some_users(self, count: int) -> list[User]:
        """``count`` distinct users, signing new ones up while the pool is small (and now and then after)."""
        while len(self.users) < min(count + 2, self.max_users) or (
            len(self.users) < self.max_users and self.rng.random() < 0.05
        ):
            await self.sign_up()
        return self.rng.sample(self.users, count)

    async def until_not_404(
        self, user: User, method: str, path: str, route: str, *, within: float, **kwargs: Any
    ) -> httpx.Response:
        """Repeat while the answer is 404: another service's copy (of a ticket, of an order) is on its way."""
        give_up = time.monotonic() + within
        while True:
            response = await self.request(user, method, path, route, **kwargs)
            if response.status_code != 404 or time.monotonic() > give_up:
                return response
            await asyncio.sleep(0.1)

    # -- one round ---------------------------------------------------------------------------------------------

    async def round(self, deadline: float) -> None:
        """A ticket's sale, or now and then an event's on-sale through its waiting room."""
        if self.rng.random() < ON_SALE_SHARE:
            await self.on_sale_round()
        else:
            await self.ticket_round()

    async def ticket_round(self) -> None:
        """A seller puts a ticket on sale, buyers race for it, the winner pays, declines, cancels or waits."""
        seller, *buyers = await self.some_users(self.rng.choice((2, 3, 4)))
        if self.rng.random() < 0.1:
            response = await self.request(
                seller,
                "POST",
                "/api/users/signin",
                "/api/users/signin",
                json={"email": seller.email, "password": PASSWORD},
            )
            self.tally.outcome("signed in" if response.status_code == 200 else f"sign-in {response.status_code}")
        price = Decimal(self.rng.randint(100, 20000)) / 100
        created = await self.request(
            seller,
            "POST",
            "/api/tickets",
            "/api/tickets",
            json={"title": self.rng.choice(TITLES), "price": float(price)},
        )
        if created.status_code != 201:
            raise _Abandoned()
        ticket = created.json()
        if self.rng.random() < 0.3:
            updated = await self.request(
                seller,
                "PUT",
                f"/api/tickets/{ticket['id']}",
                "/api/tickets/:id",
                json={"title": ticket["title"] + " (updated)", "price": float(price + 1)},
            )
            self.tally.outcome("ticket updated" if updated.status_code == 200 else f"update {updated.status_code}")

        # The buyers race; the database lets one order be active for the ticket.
        attempts = await asyncio.gather(
            *(
                self.until_not_404(
                    buyer, "POST", "/api/orders", "/api/orders", within=10, json={"ticketId": ticket["id"]}
                )
                for buyer in buyers
            ),
            return_exceptions=True,
        )
        winners = [
            (buyer, a.json())
            for buyer, a in zip(buyers, attempts, strict=True)
            if isinstance(a, httpx.Response) and a.status_code == 201
        ]
        losers = [a for a in attempts if isinstance(a, httpx.Response) and a.status_code == 400]
        self.tally.outcomes["race lost"] += len(losers)
        if not winners:
            raise _Abandoned()
        self.tally.outcome("order placed")
        buyer, order = winners[0]
        await self.settle_order(buyer, order)
        if self.rng.random() < 0.2:
            await self.request(buyer, "GET", "/api/orders", "/api/orders")
            await self.request(seller, "GET", "/api/tickets", "/api/tickets")

    async def on_sale_round(self) -> None:
        """A seller creates an event going on sale in a moment (one ticket per buyer at most) and lists a few
        tickets; buyers join its waiting room, one tries to order before being admitted (refused), and each
        admitted buyer orders one of its tickets and settles the order."""
        seller, *buyers = await self.some_users(self.rng.choice((3, 4)))
        starts = datetime.now(UTC) + timedelta(days=30)
        event = await self.request(
            seller,
            "POST",
            "/api/events",
            "/api/events",
            json={
                "name": self.rng.choice(TITLES),
                "venue": "Chaos Hall",
                "startsAt": starts.isoformat(),
                "onSaleAt": (datetime.now(UTC) + timedelta(seconds=ON_SALE_AFTER_SECONDS)).isoformat(),
                "maxPerBuyer": 1,
            },
        )
        if event.status_code != 201:
            raise _Abandoned()
        event_id = event.json()["id"]
        listed = await self.request(
            seller,
            "POST",
            f"/api/events/{event_id}/tickets",
            "/api/events/:id/tickets",
            json={"count": len(buyers) - 1, "price": 25},
        )
        if listed.status_code != 201:
            raise _Abandoned()
        for buyer in buyers:
            await self.until_not_404(buyer, "POST", f"/api/queue/{event_id}", "/api/queue/:id", within=10)
        tickets = await self.until_listed(seller, event_id, count=len(buyers) - 1)
        early = await self.request(buyers[0], "POST", "/api/orders", "/api/orders", json={"ticketId": tickets[0]["id"]})
        self.tally.outcome(
            "order before admission refused" if early.status_code in (400, 403) else f"early order {early.status_code}"
        )
        admitted = await asyncio.gather(*(self.until_admitted(buyer, event_id) for buyer in buyers))
        for buyer, ticket in zip([b for b, ok in zip(buyers, admitted, strict=True) if ok], tickets, strict=False):
            response = await self.request(buyer, "POST", "/api/orders", "/api/orders", json={"ticketId": ticket["id"]})
            if response.status_code == 201:
                self.tally.outcome("on-sale order placed")
                await self.settle_order(buyer, response.json())
            else:
                self.tally.outcome(f"on-sale order {response.status_code}")

    async def until_listed(self, user: User, event_id: str, *, count: int) -> list[dict[str, Any]]:
        """The event's tickets once its ``count`` listed tickets are all visible."""
        give_up = time.monotonic() + 10
        while True:
            listing = await self.request(user, "GET", "/api/tickets", "/api/tickets", params={"eventId": event_id})
            tickets: list[dict[str, Any]] = listing.json().get("tickets", [])
            if len(tickets) >= count or time.monotonic() > give_up:
                return tickets
            await asyncio.sleep(0.1)

    async def until_admitted(self, buyer: User, event_id: str) -> bool:
        """Poll the buyer's place (as the waiting room page does) until admitted; False if it takes too long."""
        give_up = time.monotonic() + ON_SALE_AFTER_SECONDS + 15
        while time.monotonic() < give_up:
            place = await self.request(buyer, "GET", f"/api/queue/{event_id}", "/api/queue/:id")
            if place.status_code == 200 and place.json()["state"] == "admitted":
                self.tally.outcome("admitted")
                return True
            await asyncio.sleep(0.25)
        self.tally.outcome("not admitted in time")
        return False

    async def settle_order(self, buyer: User, order: dict[str, Any]) -> None:
        path = f"/api/orders/{order['id']}"
        choice = self.rng.random()
        if choice < 0.15:
            self.tally.outcome("left to expire")
            return
        if choice < 0.3:
            response = await self.request(buyer, "DELETE", path, "/api/orders/:id")
            self.tally.outcome("cancelled" if response.status_code == 204 else f"cancel {response.status_code}")
            return
        if choice < 0.5:
            declined = await self.pay(buyer, order, "tok_chargeDeclined")
            self.tally.outcome("declined" if declined.status_code == 402 else f"decline {declined.status_code}")
            if self.rng.random() < 0.5:
                return
        paid = await self.pay(buyer, order, "tok_visa")
        self.tally.outcome("paid" if paid.status_code == 201 else f"payment {paid.status_code}")
        if self.rng.random() < 0.1:  # too late to cancel a paid order: 400
            response = await self.request(buyer, "DELETE", path, "/api/orders/:id")
            self.tally.outcome(f"cancel after payment {response.status_code}")
        if self.rng.random() < 0.3:
            await self.request(buyer, "GET", path, "/api/orders/:id")

    async def pay(self, buyer: User, order: dict[str, Any], token: str) -> httpx.Response:
        return await self.until_not_404(
            buyer,
            "POST",
            "/api/payments",
            "/api/payments",
            within=self.order_window_seconds,
            json={"orderId": order["id"], "token": token},
        )


class _Abandoned(Exception):
    """The round met a fault (or a refusal it cannot go on from); the worker starts another."""
