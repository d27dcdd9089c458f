"""POST /api/tickets: signed-in users put tickets on sale; money is exact; ticket.created is published once."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from ticketing_common.schemas import INVALID_TEXT_MESSAGE
from ticketing_common.testing import signin

PRICE_MESSAGE = "Price must be greater than 0"


async def test_returns_401_when_not_signed_in(client: httpx.AsyncClient, published) -> None:
    response = await client.post("/api/tickets", json={"title": "Concert", "price": 20})
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert await published("ticket.created") == []


async def test_creates_a_ticket_owned_by_the_signed_in_user(client: httpx.AsyncClient, stored) -> None:
    user = signin(client)
    response = await client.post("/api/tickets", json={"title": "  Concert  ", "price": 19.99})
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "title": "Concert",
        "price": 19.99,
        "userId": str(user.id),
        "orderId": None,
        "version": 0,
        "eventId": None,
    }
    ticket = await stored(body["id"])
    assert ticket is not None
    assert (ticket.title, ticket.price, ticket.user_id, ticket.order_id, ticket.version) == (
        "Concert",
        Decimal("19.99"),
        user.id,
        None,
        0,
    )


async def test_publishes_ticket_created_once_with_the_catalogue_payload(client: httpx.AsyncClient, published) -> None:
    user = signin(client)
    body = (await client.post("/api/tickets", json={"title": "Concert", "price": 19.99})).json()
    [event] = await published("ticket.created")
    assert event.data == {
        "id": body["id"],
        "title": "Concert",
        "price": 19.99,
        "userId": str(user.id),
        "version": 0,
        "eventId": None,
    }
    assert event.headers["ce-source"] == "tickets"
    assert event.headers["ce-type"] == "ticket.created"
    assert await published("ticket.updated") == []


async def test_money_is_stored_as_numeric_and_stays_exact(client: httpx.AsyncClient, app) -> None:
    signin(client)
    prices = {"0.1": 0.1, "0.3": 0.3, "19.99": 19.99, "1000000": 1000000, "1000000.00": 1000000, "100": 1e2}
    ids = {}
    for raw, shown in prices.items():
        response = await client.post(
            "/api/tickets",
            content=f'{{"title": "t", "price": {raw}}}'.encode(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201, raw
        assert response.json()["price"] == shown
        ids[raw] = response.json()["id"]
    pool = app.state.db.pool
    column_type = await pool.fetchval(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'tickets' AND column_name = 'price'"
    )
    total = await pool.fetchval("SELECT sum(price) FROM tickets WHERE title = 't'")
    assert column_type == "numeric"
    assert total == Decimal("2000120.39")  # 0.1 + 0.3 + 19.99 + 1000000 + 1000000 + 100, no float drift


@pytest.mark.parametrize(
    ("raw_price", "message"),
    [
        pytest.param("0", PRICE_MESSAGE, id="zero"),
        pytest.param("-5", PRICE_MESSAGE, id="negative"),
        pytest.param("-0.01", PRICE_MESSAGE, id="negative-cent"),
        pytest.param("null", PRICE_MESSAGE, id="null"),
        pytest.param('"19.99"', PRICE_MESSAGE, id="string"),
        pytest.param('""', PRICE_MESSAGE, id="empty-string"),
        pytest.param("true", PRICE_MESSAGE, id="boolean"),
        pytest.param("[1]", PRICE_MESSAGE, id="list"),
        pytest.param("NaN", PRICE_MESSAGE, id="nan"),
        pytest.param("Infinity", PRICE_MESSAGE, id="infinity"),
        pytest.param("-Infinity", PRICE_MESSAGE, id="minus-infinity"),
        pytest.param("1000000.01", "Price must be at most 1000000", id="above-maximum"),
        pytest.param("1e7", "Price must be at most 1000000", id="exponent-above-maximum"),
        pytest.param("19.999", "Price must have at most two decimals", id="three-decimals"),
        # A float parser would round this to 20.0 and accept it; the API sees what was sent.
        pytest.param("19.999999999999999999", "Price must have at most two decimals", id="beyond-float-precision"),
        pytest.param("1e-9", "Price must have at most two decimals", id="tiny"),
    ],
)
async def test_returns_400_for_an_invalid_price(
    client: httpx.AsyncClient, raw_price: str, message: str, published
) -> None:
    signin(client)
    response = await client.post(
        "/api/tickets",
        content=f'{{"title": "Concert", "price": {raw_price}}}'.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": message, "field": "price"}]}
    assert await published("ticket.created") == []


async def test_returns_400_price_must_be_greater_than_0_when_price_is_missing(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/tickets", json={"title": "Concert"})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": PRICE_MESSAGE, "field": "price"}]}


async def test_an_integer_too_long_to_parse_is_a_400_not_a_crash(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post(
        "/api/tickets",
        content=b'{"title": "Concert", "price": ' + b"9" * 5000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("title", "message"),
    [
        pytest.param("", "Title is required", id="empty"),
        pytest.param("   \t\n ", "Title is required", id="blank"),
        pytest.param(None, "Title is required", id="null"),
        pytest.param(42, "Title is required", id="number"),
        pytest.param("x" * 201, "Title must be at most 200 characters", id="too-long"),
        pytest.param("bad\x00title", INVALID_TEXT_MESSAGE, id="nul"),
        pytest.param("lone \ud800 surrogate", INVALID_TEXT_MESSAGE, id="unpaired-surrogate"),
        pytest.param("esc\x1b[31m", "Title must not contain control characters", id="escape"),
        pytest.param("line\u2028separator", "Title must not contain control characters", id="line-separator"),
        pytest.param("gpj.\u202eexe", "Title must not contain control characters", id="right-to-left-override"),
        pytest.param("\u2067isolate\u2069", "Title must not contain control characters", id="bidi-isolate"),
    ],
)
async def test_returns_400_for_an_invalid_title(
    client: httpx.AsyncClient, title: object, message: str, published
) -> None:
    signin(client)
    # json.dumps escapes an unpaired surrogate as \\ud800 (valid JSON) where httpx's json= cannot encode it.
    body = json.dumps({"title": title, "price": 10})
    response = await client.post("/api/tickets", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": message, "field": "title"}]}
    assert await published("ticket.created") == []


async def test_returns_400_title_is_required_when_title_is_missing(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/tickets", json={"price": 10})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Title is required", "field": "title"}]}


async def test_a_title_in_a_right_to_left_script_with_its_marks_is_accepted(client: httpx.AsyncClient) -> None:
    # Direction marks (U+200F) and joiners only hint at display; the overrides refused above reorder it.
    signin(client)
    title = "עברית‏ RTL 👨‍👩‍👧"
    response = await client.post("/api/tickets", json={"title": title, "price": 10})
    assert response.status_code == 201
    assert response.json()["title"] == title


async def test_a_title_of_200_characters_after_trimming_is_accepted(client: httpx.AsyncClient) -> None:
    signin(client)
    title = "é" * 200
    response = await client.post("/api/tickets", json={"title": f"  {title}  ", "price": 10})
    assert response.status_code == 201
    assert response.json()["title"] == title


async def test_reports_every_invalid_field_at_once(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/tickets", json={})
    assert response.status_code == 400
    assert sorted(response.json()["errors"], key=lambda e: e["field"]) == [
        {"message": PRICE_MESSAGE, "field": "price"},
        {"message": "Title is required", "field": "title"},
    ]


async def test_the_owner_cannot_be_chosen_by_the_client(client: httpx.AsyncClient) -> None:
    user = signin(client)
    response = await client.post(
        "/api/tickets", json={"title": "Concert", "price": 10, "userId": "00000000-0000-0000-0000-000000000001"}
    )
    assert response.status_code == 201
    assert response.json()["userId"] == str(user.id)


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post(
        "/api/tickets", content=b'{"title": "x", "price": 1', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Request body is not valid JSON"}]}


async def test_a_signed_out_request_is_401_even_with_an_invalid_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/tickets", json={"title": "", "price": -1})
    assert response.status_code == 401
