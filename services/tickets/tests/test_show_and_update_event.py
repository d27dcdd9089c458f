"""GET and PUT /api/events/:id: anyone reads an event with the counts of its tickets; only its owner replaces it,
each change one new version and one event.updated; the waiting room stays as it was decided at creation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.testing import signin, wait_until

MALFORMED_IDS = ["abc", "123", "not-a-uuid", "00000000-0000-0000-0000-00000000000", "%20", "' OR 1=1 --"]


def in_days(days: float, **later: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days, **later)).isoformat()


def replacement(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Opera",
        "venue": "Opera House",
        "startsAt": "2099-09-01T19:00:00Z",
        "onSaleAt": "2099-08-01T09:00:00Z",
        "maxPerBuyer": 6,
        **fields,
    }


async def _stored(app: FastAPI, event_id: str) -> dict[str, Any]:
    row = await app.state.db.pool.fetchrow("SELECT * FROM events WHERE id = $1", uuid.UUID(event_id))
    return dict(row)


# -- GET -----------------------------------------------------------------------------------------------------------


async def test_shows_an_event_with_no_tickets_yet_to_anyone(client: httpx.AsyncClient, make_event) -> None:
    signin(client)
    event = await make_event("Jazz", "Blue Note")
    client.cookies.clear()
    response = await client.get(f"/api/events/{event['id']}")
    assert response.status_code == 200
    assert response.json() == {**event, "tickets": {"available": 0, "reserved": 0}}


async def test_counts_the_events_tickets_available_and_reserved_paid_or_not(
    client: httpx.AsyncClient, make_event, orders
) -> None:
    signin(client)
    event = await make_event()
    other = await make_event("Other")
    assert (await client.post(f"/api/events/{event['id']}/tickets", json={"count": 4, "price": 10})).status_code == 201
    single = await client.post("/api/tickets", json={"title": "Single", "price": 5, "eventId": event["id"]})
    assert single.status_code == 201
    await client.post(f"/api/events/{other['id']}/tickets", json={"count": 2, "price": 10})
    await client.post("/api/tickets", json={"title": "No event", "price": 5})
    listed = (await client.get("/api/tickets", params={"eventId": event["id"]})).json()["tickets"]
    [bulk, *_] = [t["id"] for t in listed if t["id"] != single.json()["id"]]

    await orders.created(single.json()["id"])  # it may be paid later: still reserved here
    order_id, _ = await orders.created(bulk)

    async def counts(expected: dict[str, int]) -> bool:
        return (await client.get(f"/api/events/{event['id']}")).json()["tickets"] == expected

    await wait_until(lambda: counts({"available": 3, "reserved": 2}))
    await orders.cancelled(bulk, order_id)  # freed: available again
    await wait_until(lambda: counts({"available": 4, "reserved": 1}))
    assert (await client.get(f"/api/events/{other['id']}")).json()["tickets"] == {"available": 2, "reserved": 0}


async def test_shows_an_event_that_has_started(client: httpx.AsyncClient, make_event, app: FastAPI) -> None:
    signin(client)
    event = await make_event()
    await app.state.db.pool.execute(
        "UPDATE events SET starts_at = now() - interval '1 hour', on_sale_at = now() - interval '2 hours'"
    )
    response = await client.get(f"/api/events/{event['id']}")
    assert response.status_code == 200
    assert response.json()["id"] == event["id"]


async def test_returns_404_for_an_unknown_event(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/events/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


@pytest.mark.parametrize("event_id", MALFORMED_IDS)
async def test_returns_404_for_a_malformed_id_as_tickets_do(client: httpx.AsyncClient, event_id: str) -> None:
    response = await client.get(f"/api/events/{event_id}")
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


# -- PUT -----------------------------------------------------------------------------------------------------------


async def test_update_returns_401_when_not_signed_in(client: httpx.AsyncClient, make_event, app: FastAPI) -> None:
    signin(client)
    event = await make_event("Jazz")
    client.cookies.clear()
    response = await client.put(f"/api/events/{event['id']}", json=replacement())
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert (await _stored(app, event["id"]))["name"] == "Jazz"


async def test_update_returns_401_before_looking_at_the_body(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/api/events/{uuid.uuid4()}", json={"name": ""})
    assert response.status_code == 401


async def test_update_returns_404_for_an_unknown_event(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.put(f"/api/events/{uuid.uuid4()}", json=replacement())
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


@pytest.mark.parametrize("event_id", MALFORMED_IDS)
async def test_update_returns_404_for_a_malformed_id(client: httpx.AsyncClient, event_id: str) -> None:
    signin(client)
    response = await client.put(f"/api/events/{event_id}", json=replacement())
    assert response.status_code == 404


async def test_update_returns_403_when_not_the_owner(
    client: httpx.AsyncClient, make_event, app: FastAPI, published
) -> None:
    signin(client)
    event = await make_event("Jazz")
    signin(client)  # somebody else
    response = await client.put(f"/api/events/{event['id']}", json=replacement())
    assert response.status_code == 403
    assert response.json() == {"errors": [{"message": "Forbidden"}]}
    stored = await _stored(app, event["id"])
    assert (stored["name"], stored["version"]) == ("Jazz", 0)
    assert await published("event.updated") == []


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        pytest.param({"name": " "}, {"message": "Name is required", "field": "name"}, id="blank-name"),
        pytest.param({"name": None}, {"message": "Name is required", "field": "name"}, id="null-name"),
        pytest.param({"venue": "v" * 201}, {"message": "Venue must be at most 200 characters", "field": "venue"}),
        pytest.param(
            {"startsAt": "2099-09-01T19:00:00"},
            {"message": "Start time must be a date and time with a UTC offset (ISO 8601)", "field": "startsAt"},
            id="naive-start",
        ),
        pytest.param(
            {"startsAt": "2001-01-01T00:00:00Z", "onSaleAt": None},
            {"message": "Start time must be in the future", "field": "startsAt"},
            id="past-start",
        ),
        pytest.param(
            {"onSaleAt": "2099-09-01T19:00:01Z"},
            {"message": "Sale start must not be after the start time", "field": "onSaleAt"},
            id="sale-after-start",
        ),
        pytest.param(
            {"onSaleAt": "2099-08-01"},
            {"message": "Sale start must be a date and time with a UTC offset (ISO 8601)", "field": "onSaleAt"},
            id="naive-sale",
        ),
        pytest.param(
            {"maxPerBuyer": 101},
            {"message": "Max per buyer must be a whole number from 1 to 100", "field": "maxPerBuyer"},
            id="max-per-buyer-101",
        ),
        pytest.param({"version": -1}, {"message": "Version must be a whole number of 0 or more", "field": "version"}),
        pytest.param({"version": "0"}, {"message": "Version must be a whole number of 0 or more", "field": "version"}),
    ],
)
async def test_update_returns_400_for_each_invalid_field(
    client: httpx.AsyncClient, make_event, app: FastAPI, fields: dict[str, Any], error: dict[str, str]
) -> None:
    signin(client)
    event = await make_event()
    response = await client.put(f"/api/events/{event['id']}", json=replacement(**fields))
    assert response.status_code == 400
    assert response.json() == {"errors": [error]}
    assert (await _stored(app, event["id"]))["version"] == 0


async def test_update_returns_400_for_a_missing_start_before_404(client: httpx.AsyncClient) -> None:
    signin(client)
    body = replacement()
    del body["startsAt"]
    response = await client.put(f"/api/events/{uuid.uuid4()}", json=body)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"message": "Start time must be a date and time with a UTC offset (ISO 8601)", "field": "startsAt"}
    ]


async def test_update_replaces_every_field_bumps_the_version_and_publishes_event_updated(
    client: httpx.AsyncClient, make_event, published
) -> None:
    user = signin(client)
    event = await make_event("Jazz", "Blue Note")
    response = await client.put(
        f"/api/events/{event['id']}",
        json=replacement(name=" Opera ", startsAt="2099-09-01T21:00:00+02:00", onSaleAt="2099-08-01T11:00:00+02:00"),
    )
    assert response.status_code == 200
    expected = {
        "id": event["id"],
        "name": "Opera",
        "venue": "Opera House",
        "startsAt": "2099-09-01T19:00:00Z",
        "onSaleAt": "2099-08-01T09:00:00Z",
        "maxPerBuyer": 6,
        "waitingRoom": False,  # decided at creation (the sale opened then); a later onSaleAt does not change it
        "userId": str(user.id),
        "version": 1,
    }
    assert response.json() == expected
    assert (await client.get(f"/api/events/{event['id']}")).json() == {
        **expected,
        "tickets": {"available": 0, "reserved": 0},
    }
    [updated] = await published("event.updated")
    assert updated.data == expected
    assert updated.headers["ce-type"] == "event.updated"
    assert len(await published("event.created")) == 1


async def test_a_waiting_room_stays_open_when_the_sale_is_moved_to_the_past(
    client: httpx.AsyncClient, make_event, published
) -> None:
    signin(client)
    event = await make_event(onSaleAt=in_days(1))
    assert event["waitingRoom"] is True
    response = await client.put(f"/api/events/{event['id']}", json=replacement(onSaleAt=in_days(-1)))
    assert response.json()["waitingRoom"] is True
    [updated] = await published("event.updated")
    assert updated.data["waitingRoom"] is True


async def test_an_update_is_a_full_replacement_omitted_optional_fields_take_their_defaults(
    client: httpx.AsyncClient, make_event
) -> None:
    signin(client)
    event = await make_event(onSaleAt=in_days(1), maxPerBuyer=2)
    before = datetime.now(UTC)
    body = replacement()
    del body["onSaleAt"], body["maxPerBuyer"]
    updated = (await client.put(f"/api/events/{event['id']}", json=body)).json()
    assert updated["maxPerBuyer"] == 4
    assert before <= datetime.fromisoformat(updated["onSaleAt"]) <= datetime.now(UTC)  # the sale opens now
    assert updated["waitingRoom"] is True  # as decided at creation


async def test_update_with_the_current_version_applies(client: httpx.AsyncClient, make_event) -> None:
    signin(client)
    event = await make_event()
    first = await client.put(f"/api/events/{event['id']}", json=replacement(version=0))
    second = await client.put(f"/api/events/{event['id']}", json=replacement(name="Again", version=1))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["version"] == 2


@pytest.mark.parametrize("version", [0, 5])
async def test_update_returns_409_for_a_version_that_is_not_the_current_one(
    client: httpx.AsyncClient, make_event, app: FastAPI, published, version: int
) -> None:
    signin(client)
    event = await make_event("Jazz")
    assert (await client.put(f"/api/events/{event['id']}", json=replacement(name="First"))).status_code == 200
    stale = await client.put(f"/api/events/{event['id']}", json=replacement(name="Stale", version=version))
    assert stale.status_code == 409
    assert stale.json() == {"errors": [{"message": "Event was modified, reload and try again"}]}
    stored = await _stored(app, event["id"])
    assert (stored["name"], stored["version"]) == ("First", 1)
    assert [e.data["name"] for e in await published("event.updated")] == ["First"]


async def test_concurrent_updates_make_one_chain_of_versions_each_published_once(
    client: httpx.AsyncClient, make_event, published
) -> None:
    signin(client)
    event = await make_event()
    responses = await asyncio.gather(
        *(client.put(f"/api/events/{event['id']}", json=replacement(name=f"Edit {i}")) for i in range(10))
    )
    assert sorted(r.json()["version"] for r in responses) == list(range(1, 11))
    versions = sorted(e.data["version"] for e in await published("event.updated"))
    assert versions == list(range(1, 11))
