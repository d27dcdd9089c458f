"""POST /api/events: signed-in users create events (the shows tickets are for). Every rule of a field is a 400
naming that field; the waiting room is decided once, at creation; event.created is published once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.schemas import INVALID_TEXT_MESSAGE
from ticketing_common.testing import signin

STARTS_AT_FORMAT = "Start time must be a date and time with a UTC offset (ISO 8601)"
ON_SALE_AT_FORMAT = "Sale start must be a date and time with a UTC offset (ISO 8601)"
MAX_PER_BUYER = "Max per buyer must be a whole number from 1 to 100"


def in_days(days: float, **later: float) -> str:
    """A moment ``days`` (and ``later`` hours, seconds...) from now, as a client sends it: ISO 8601 with an offset."""
    return (datetime.now(UTC) + timedelta(days=days, **later)).isoformat()


def a_body(**fields: Any) -> dict[str, Any]:
    return {"name": "Concert", "venue": "Arena", "startsAt": in_days(7), **fields}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _no_event_was_created(app: FastAPI, published) -> None:
    assert await app.state.db.pool.fetchval("SELECT count(*) FROM events") == 0
    assert await published("event.created") == []


async def test_returns_401_when_not_signed_in(client: httpx.AsyncClient, app: FastAPI, published) -> None:
    response = await client.post("/api/events", json=a_body())
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}
    await _no_event_was_created(app, published)


async def test_a_signed_out_request_is_401_even_with_an_invalid_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events", json={"name": "", "startsAt": "yesterday"})
    assert response.status_code == 401


async def test_creates_an_event_owned_by_the_signed_in_user_with_its_times_in_utc(client: httpx.AsyncClient) -> None:
    user = signin(client)
    response = await client.post(
        "/api/events",
        json={
            "name": "  Jazz Night  ",
            "venue": "  Blue Note ",
            "startsAt": "2099-06-01T21:30:00+02:00",
            "onSaleAt": "2099-05-01T10:00:00.250-04:00",
            "maxPerBuyer": 2,
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "name": "Jazz Night",
        "venue": "Blue Note",
        "startsAt": "2099-06-01T19:30:00Z",
        "onSaleAt": "2099-05-01T14:00:00.250000Z",
        "maxPerBuyer": 2,
        "waitingRoom": True,
        "userId": str(user.id),
        "version": 0,
    }


async def test_without_on_sale_at_the_sale_opens_now_with_four_per_buyer_and_no_waiting_room(
    client: httpx.AsyncClient,
) -> None:
    signin(client)
    before = datetime.now(UTC)
    body = (await client.post("/api/events", json=a_body())).json()
    after = datetime.now(UTC)
    assert before <= moment(body["onSaleAt"]) <= after
    assert (body["maxPerBuyer"], body["waitingRoom"]) == (4, False)


async def test_null_optional_fields_take_their_defaults(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/events", json=a_body(onSaleAt=None, maxPerBuyer=None))
    assert response.status_code == 201
    assert (response.json()["maxPerBuyer"], response.json()["waitingRoom"]) == (4, False)


async def test_a_sale_that_opens_later_than_the_creation_goes_through_the_waiting_room(
    client: httpx.AsyncClient,
) -> None:
    signin(client)
    soon = (await client.post("/api/events", json=a_body(onSaleAt=in_days(0, seconds=5)))).json()
    assert soon["waitingRoom"] is True


async def test_a_sale_that_opened_already_has_no_waiting_room(client: httpx.AsyncClient) -> None:
    signin(client)
    body = (await client.post("/api/events", json=a_body(onSaleAt=in_days(-1)))).json()
    assert body["waitingRoom"] is False
    assert moment(body["onSaleAt"]) < datetime.now(UTC)


async def test_the_sale_may_open_at_the_very_start(client: httpx.AsyncClient) -> None:
    signin(client)
    starts = in_days(3)
    response = await client.post("/api/events", json=a_body(startsAt=starts, onSaleAt=starts))
    assert response.status_code == 201
    assert moment(response.json()["onSaleAt"]) == moment(response.json()["startsAt"]) == moment(starts)


@pytest.mark.parametrize("limit", [1, 100])
async def test_max_per_buyer_may_be_anything_from_1_to_100(client: httpx.AsyncClient, limit: int) -> None:
    signin(client)
    response = await client.post("/api/events", json=a_body(maxPerBuyer=limit))
    assert response.status_code == 201
    assert response.json()["maxPerBuyer"] == limit


async def test_a_name_and_a_venue_of_200_characters_after_trimming_are_accepted(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/events", json=a_body(name=f" {'é' * 200} ", venue=f"{'v' * 200}  "))
    assert response.status_code == 201
    assert (response.json()["name"], response.json()["venue"]) == ("é" * 200, "v" * 200)


async def test_publishes_event_created_once_with_the_catalogue_payload(
    client: httpx.AsyncClient, published, app: FastAPI
) -> None:
    user = signin(client)
    body = (
        await client.post("/api/events", json=a_body(startsAt="2099-01-01T20:00:00Z", onSaleAt="2098-12-01T09:00:00Z"))
    ).json()
    [event] = await published("event.created")
    assert event.data == {
        "id": body["id"],
        "name": "Concert",
        "venue": "Arena",
        "startsAt": "2099-01-01T20:00:00Z",
        "onSaleAt": "2098-12-01T09:00:00Z",
        "maxPerBuyer": 4,
        "waitingRoom": True,
        "userId": str(user.id),
        "version": 0,
    }
    assert (event.headers["ce-type"], event.headers["ce-source"]) == ("event.created", "tickets")
    assert await published("event.updated") == []
    row = await app.state.db.pool.fetchrow("SELECT waiting_room, version FROM events")
    assert (row["waiting_room"], row["version"]) == (True, 0)


async def test_the_owner_cannot_be_chosen_nor_the_waiting_room_forced_by_the_client(
    client: httpx.AsyncClient,
) -> None:
    user = signin(client)
    response = await client.post(
        "/api/events",
        json=a_body(userId="00000000-0000-0000-0000-000000000001", waitingRoom=True, version=7),
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["userId"], body["waitingRoom"], body["version"]) == (str(user.id), False, 0)


# -- each rule of each field ---------------------------------------------------------------------------------------

TEXT_CASES = [
    pytest.param(None, "{} is required", id="missing"),
    pytest.param("", "{} is required", id="empty"),
    pytest.param("  \t\n", "{} is required", id="blank"),
    pytest.param(42, "{} is required", id="number"),
    pytest.param("x" * 201, "{} must be at most 200 characters", id="too-long"),
    pytest.param("bad\x00text", INVALID_TEXT_MESSAGE, id="nul"),
    pytest.param("esc\x1b[31m", "{} must not contain control characters", id="escape"),
    pytest.param("gpj.\u202eexe", "{} must not contain control characters", id="right-to-left-override"),
]


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    # json.dumps, not httpx's json=: the same bytes whatever the value (an unpaired surrogate included).
    return await client.post("/api/events", content=json.dumps(body), headers={"content-type": "application/json"})


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


@pytest.mark.parametrize(("name", "message"), TEXT_CASES)
async def test_returns_400_when_the_name_is_invalid(
    client: httpx.AsyncClient, app: FastAPI, published, name: object, message: str
) -> None:
    signin(client)
    response = await _post(client, _without_none(a_body(name=name)))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": message.format("Name"), "field": "name"}]}
    await _no_event_was_created(app, published)


@pytest.mark.parametrize(("venue", "message"), TEXT_CASES)
async def test_returns_400_when_the_venue_is_invalid(
    client: httpx.AsyncClient, app: FastAPI, published, venue: object, message: str
) -> None:
    signin(client)
    response = await _post(client, _without_none(a_body(venue=venue)))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": message.format("Venue"), "field": "venue"}]}
    await _no_event_was_created(app, published)


MALFORMED_MOMENTS = [
    pytest.param("2099-06-01T20:00:00", id="naive-no-offset"),
    pytest.param("2099-06-01", id="date-only"),
    pytest.param("next friday", id="words"),
    pytest.param("", id="empty"),
    pytest.param("2099-13-01T20:00:00Z", id="no-such-month"),
    pytest.param(4102444800, id="unix-seconds"),
    pytest.param(True, id="boolean"),
    pytest.param("9999-12-31T23:59:59-23:59", id="beyond-what-utc-holds"),
]


@pytest.mark.parametrize("starts_at", [None, *MALFORMED_MOMENTS])
async def test_returns_400_when_starts_at_is_missing_or_not_a_date_and_time_with_an_offset(
    client: httpx.AsyncClient, app: FastAPI, published, starts_at: object
) -> None:
    signin(client)
    response = await _post(client, _without_none(a_body(startsAt=starts_at)))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": STARTS_AT_FORMAT, "field": "startsAt"}]}
    await _no_event_was_created(app, published)


@pytest.mark.parametrize("starts_at", [in_days(-1), in_days(0, seconds=-1), "2000-01-01T00:00:00Z"])
async def test_returns_400_when_starts_at_is_not_in_the_future(
    client: httpx.AsyncClient, app: FastAPI, published, starts_at: str
) -> None:
    signin(client)
    response = await _post(client, a_body(startsAt=starts_at))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Start time must be in the future", "field": "startsAt"}]}
    await _no_event_was_created(app, published)


@pytest.mark.parametrize("on_sale_at", MALFORMED_MOMENTS)
async def test_returns_400_when_on_sale_at_is_not_a_date_and_time_with_an_offset(
    client: httpx.AsyncClient, app: FastAPI, published, on_sale_at: object
) -> None:
    signin(client)
    response = await _post(client, a_body(onSaleAt=on_sale_at))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": ON_SALE_AT_FORMAT, "field": "onSaleAt"}]}
    await _no_event_was_created(app, published)


async def test_returns_400_when_on_sale_at_is_after_starts_at(
    client: httpx.AsyncClient, app: FastAPI, published
) -> None:
    signin(client)
    starts = datetime.now(UTC) + timedelta(days=7)
    response = await _post(
        client, a_body(startsAt=starts.isoformat(), onSaleAt=(starts + timedelta(microseconds=1)).isoformat())
    )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": "Sale start must not be after the start time", "field": "onSaleAt"}]
    }
    await _no_event_was_created(app, published)


@pytest.mark.parametrize("limit", [0, 101, -1, 4.5, 4.0, "4", True, [4]])
async def test_returns_400_when_max_per_buyer_is_not_a_whole_number_from_1_to_100(
    client: httpx.AsyncClient, app: FastAPI, published, limit: object
) -> None:
    signin(client)
    response = await _post(client, a_body(maxPerBuyer=limit))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": MAX_PER_BUYER, "field": "maxPerBuyer"}]}
    await _no_event_was_created(app, published)


async def test_returns_400_for_every_invalid_field_at_once(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post(
        "/api/events", json={"venue": " ", "startsAt": "2099-06-01T20:00:00", "onSaleAt": "soon", "maxPerBuyer": 0}
    )
    assert response.status_code == 400
    assert sorted(response.json()["errors"], key=lambda e: e["field"]) == [
        {"message": MAX_PER_BUYER, "field": "maxPerBuyer"},
        {"message": "Name is required", "field": "name"},
        {"message": ON_SALE_AT_FORMAT, "field": "onSaleAt"},
        {"message": STARTS_AT_FORMAT, "field": "startsAt"},
        {"message": "Venue is required", "field": "venue"},
    ]


async def test_returns_400_when_the_body_is_not_an_object(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/events", json=["Concert"])
    assert response.status_code == 400
