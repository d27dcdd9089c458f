"""Nobody acts as someone else: every route against {signed out, another user, the owner}, forged and stale
tokens, sign-out, and the sign-in rate limit under concurrent attempts. All through the gateway."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest

from ticketing_chaos.hostile import (
    PASSWORD,
    SESSION_KEY,
    SIGNIN_MAX_FAILURES,
    SIGNIN_MAX_FAILURES_PER_ADDRESS,
    STRIPE_KEY,
    System,
)
from ticketing_common.keys import SigningKey

pytestmark = pytest.mark.e2e


def _until_not_404(send: Callable[[], httpx.Response], timeout: float = 15) -> httpx.Response:
    """Another service's copy (of a ticket, of an order) arrives within milliseconds; wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        response = send()
        if response.status_code != 404 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert set(body) == {"errors"}, body
    errors: list[dict[str, Any]] = body["errors"]
    return errors


def test_every_route_answers_signed_out_another_user_and_the_owner_as_expected(system: System) -> None:
    seller, seller_user = system.user()
    buyer, buyer_user = system.user()
    other, _ = system.user()
    anonymous = system.client()
    ticket = seller.post("/api/tickets", json={"title": "Matrix", "price": 10}).json()
    paid_ticket = seller.post("/api/tickets", json={"title": "Paid", "price": 12}).json()
    cancel_ticket = seller.post("/api/tickets", json={"title": "Cancelled", "price": 14}).json()
    order = _until_not_404(lambda: buyer.post("/api/orders", json={"ticketId": paid_ticket["id"]})).json()
    to_cancel = _until_not_404(lambda: buyer.post("/api/orders", json={"ticketId": cancel_ticket["id"]})).json()
    # The payments service has its copy once a declined card gets 402 (a decline stores nothing).
    declined = _until_not_404(
        lambda: buyer.post("/api/payments", json={"orderId": order["id"], "token": "tok_chargeDeclined"})
    )
    assert declined.status_code == 402

    def statuses(method: str, path: str, body: Any = None) -> tuple[int, int, int]:
        """(signed out, another user, the owner) — the owner being the seller or the buyer, per resource."""
        owner = buyer if "/orders" in path or "/payments" in path else seller
        return tuple(  # type: ignore[return-value]
            client.request(method, path, json=body).status_code for client in (anonymous, other, owner)
        )

    title_change = {"title": "Changed", "price": 11}
    assert statuses("PUT", f"/api/tickets/{ticket['id']}", title_change) == (401, 403, 200)
    assert statuses("GET", f"/api/tickets/{ticket['id']}") == (200, 200, 200)
    assert statuses("GET", "/api/tickets") == (200, 200, 200)
    assert statuses("GET", f"/api/orders/{order['id']}") == (401, 404, 200)
    assert statuses("POST", "/api/payments", {"orderId": order["id"], "token": "tok_visa"}) == (401, 404, 201)
    assert statuses("DELETE", f"/api/orders/{to_cancel['id']}") == (401, 404, 204)
    assert statuses("DELETE", f"/api/orders/{order['id']}") == (401, 404, 400)  # paid: too late to cancel

    # Routes without an owner: signed out vs signed in.
    assert anonymous.post("/api/tickets", json={"title": "x", "price": 1}).status_code == 401
    assert other.post("/api/tickets", json={"title": "x", "price": 1}).status_code == 201
    assert anonymous.get("/api/orders").status_code == 401
    assert [o["id"] for o in other.get("/api/orders").json()] == []  # nobody else's orders
    assert {o["id"] for o in buyer.get("/api/orders").json()} == {order["id"], to_cancel["id"]}
    assert anonymous.post("/api/orders", json={"ticketId": ticket["id"]}).status_code == 401
    assert seller.post("/api/orders", json={"ticketId": ticket["id"]}).status_code == 400  # one's own ticket
    assert anonymous.get("/api/users/currentuser").json() == {"currentUser": None}
    assert other.get("/api/users/currentuser").json()["currentUser"]["id"] != seller_user["id"]
    assert buyer.get("/api/users/currentuser").json()["currentUser"]["id"] == buyer_user["id"]
    change = {"currentPassword": PASSWORD, "email": f"new-{uuid.uuid4().hex[:8]}@example.com"}
    assert anonymous.put("/api/users/currentuser", json=change).status_code == 401
    assert system.remember(other.put("/api/users/currentuser", json=change)).status_code == 200
    # The seller's ticket kept the seller's change only.
    assert anonymous.get(f"/api/tickets/{ticket['id']}").json()["title"] == "Changed"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user: dict[str, str], **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    session = {"sid": str(uuid.uuid4()), "jti": str(uuid.uuid4())}
    return {"id": user["id"], "email": user["email"], "iat": now, "exp": now + 3600, **session, **overrides}


def _eddsa(claims: dict[str, Any], key: SigningKey = SESSION_KEY) -> str:
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def _hs256(claims: dict[str, Any], secret: str | bytes) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": SESSION_KEY.kid})


def test_forged_stale_and_foreign_tokens_are_all_rejected(system: System) -> None:
    _, user = system.user()
    genuine = _eddsa(_claims(user))
    public_x = SESSION_KEY.private_jwk()["x"]
    header, payload, signature = genuine.split(".")
    someone_else = _claims(user, id=str(uuid.uuid4()), email="admin@example.com")
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}.",
        "alg none, no dot": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}",
        "another Ed25519 key": _eddsa(_claims(user), SigningKey.generate()),
        "another key under the real kid": jwt.encode(
            _claims(user), SigningKey.generate().private_key, algorithm="EdDSA", headers={"kid": SESSION_KEY.kid}
        ),
        "HS256 with the public key": _hs256(_claims(user), public_x.encode()),
        "HS256 with the raw public key": _hs256(_claims(user), base64.urlsafe_b64decode(public_x + "=")),
        "expired": _eddsa(_claims(user, iat=1, exp=2)),
        "tampered payload": f"{header}.{_b64(someone_else)}.{signature}",
        # Not the last characters: an Ed25519 signature's last byte is nearly always small, and may already be 0.
        "tampered signature": f"{header}.{payload}.{signature[:10]}{'B' if signature[10] == 'A' else 'A'}{signature[11:]}",
        "another service's key": _hs256(_claims(user), STRIPE_KEY),
        "no expiry": _eddsa({k: v for k, v in _claims(user).items() if k != "exp"}),
        "no session id": _eddsa({k: v for k, v in _claims(user).items() if k != "sid"}),
        "garbage": "not.a.token",
        "empty": "",
    }
    with system.client() as client:
        client.cookies.set("session", genuine)
        assert client.get("/api/orders").status_code == 200  # the control: a genuine token works
        for name, token in forged.items():
            client.cookies.set("session", token)
            orders = client.get("/api/orders")
            assert orders.status_code == 401, name
            assert _errors(orders) == [{"message": "Not authorized"}], name
            assert client.post("/api/tickets", json={"title": "x", "price": 1}).status_code == 401, name
            assert client.get("/api/users/currentuser").json() == {"currentUser": None}, name


def test_signout_clears_the_cookie(system: System) -> None:
    client, _ = system.user()

    response = client.post("/api/users/signout")

    assert response.status_code == 200
    [cookie] = [h for h in response.headers.get_list("set-cookie") if h.startswith("session=")]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert cookie.startswith(('session="";', "session=;"))
    assert "max-age" in attributes
    assert attributes["max-age"].strip().lower() == "max-age=0"
    assert "httponly" in attributes
    assert "session" not in client.cookies
    assert client.get("/api/users/currentuser").json() == {"currentUser": None}
    assert client.get("/api/orders").status_code == 401


def _signin(client: httpx.Client, email: str, password: str, **headers: str) -> httpx.Response:
    return client.post("/api/users/signin", json={"email": email, "password": password}, headers=headers)


def test_the_sign_in_rate_limit_holds_under_concurrent_attempts_without_locking_the_owner_out(system: System) -> None:
    # The stranger connects from 127.0.0.2, the owner from 127.0.0.1: two client addresses through the gateway.
    owner, user = system.user()
    attempts = 4 * SIGNIN_MAX_FAILURES

    def wrong(turn: int) -> int:
        with system.client("127.0.0.2") as stranger:
            # A made-up X-Forwarded-For from a client is replaced by the gateway: it cannot spread the attempts.
            return _signin(
                stranger, user["email"], "wrong password", **{"X-Forwarded-For": f"192.0.2.{turn}"}
            ).status_code

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        answers = list(pool.map(wrong, range(attempts)))

    assert set(answers) <= {400, 429}, answers
    assert answers.count(400) <= SIGNIN_MAX_FAILURES, answers
    assert answers.count(429) >= attempts - SIGNIN_MAX_FAILURES
    with system.client("127.0.0.2") as stranger:
        locked = _signin(stranger, user["email"], PASSWORD)
        assert locked.status_code == 429  # even the right password waits, from that address, until the window passes
        assert int(locked.headers["retry-after"]) >= 1
        assert _errors(locked)[0]["message"]
    owner.cookies.clear()
    assert system.remember(_signin(owner, user["email"], PASSWORD)).status_code == 200
    assert owner.get("/api/users/currentuser").json()["currentUser"]["email"] == user["email"]


def test_a_spray_across_many_emails_from_one_client_gets_429_for_that_client_only(system: System) -> None:
    owner, user = system.user()
    with system.client("127.0.0.3") as sprayer:
        for n in range(SIGNIN_MAX_FAILURES_PER_ADDRESS):
            email = f"spray-{n}-{uuid.uuid4().hex[:6]}@example.com"
            assert _signin(sprayer, email, "wrong password").status_code == 400

        throttled = _signin(sprayer, f"spray-{uuid.uuid4().hex[:6]}@example.com", "wrong password")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        assert _signin(sprayer, user["email"], PASSWORD).status_code == 429
    owner.cookies.clear()
    assert system.remember(_signin(owner, user["email"], PASSWORD)).status_code == 200


def test_a_stranger_failing_sign_ins_on_the_web_pages_does_not_lock_the_owner_out_of_them(system: System) -> None:
    # The pages call auth with the visitor's address: the stranger's failures count for 127.0.0.4 alone, not for
    # the web client that every visitor signs in through.
    _, user = system.user()
    form = {"email": user["email"], "password": "wrong password"}

    def page_sign_in(source: str, password: str) -> httpx.Response:
        with system.client(source) as browser:
            origin = str(browser.base_url).rstrip("/")
            return browser.post("/signin", data={**form, "password": password}, headers={"Origin": origin})

    answers = [page_sign_in("127.0.0.4", "wrong password").status_code for _ in range(SIGNIN_MAX_FAILURES + 1)]

    assert answers[:SIGNIN_MAX_FAILURES] == [400] * SIGNIN_MAX_FAILURES, answers
    assert answers[-1] == 429
    assert page_sign_in("127.0.0.4", PASSWORD).status_code == 429
    owner = page_sign_in("127.0.0.5", PASSWORD)
    assert owner.status_code == 303, owner.text
    assert "session=" in owner.headers["set-cookie"]
