"""GET /api/events: events that have not started, soonest first, page by page with an opaque keyset cursor;
``q`` finds those whose name or venue contains it, in any case, its wildcards taken literally."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.schemas import INVALID_TEXT_MESSAGE
from ticketing_common.testing import signin
from ticketing_tickets import queries

Stored = Callable[..., Awaitable[queries.EventRow]]


@pytest.fixture
def stored_event(app: FastAPI) -> Stored:
    """An event written straight to the table, at any start time (the API refuses one in the past)."""

    async def store(
        name: str = "Concert", venue: str = "Arena", *, starts_in: timedelta = timedelta(days=7), **fields: Any
    ) -> queries.EventRow:
        starts_at = fields.pop("starts_at", datetime.now(UTC) + starts_in)
        return await queries.insert_event(
            app.state.db.pool,
            event_id=fields.pop("event_id", uuid.uuid4()),
            name=name,
            venue=venue,
            starts_at=starts_at,
            on_sale_at=starts_at - timedelta(days=30),
            max_per_buyer=4,
            waiting_room=False,
            user_id=uuid.uuid4(),
            created_at=datetime.now(UTC),
        )

    return store


async def _all_pages(client: httpx.AsyncClient, limit: int, **params: str) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {"limit": str(limit), **params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/events", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["events"])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


def _ids(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [event["id"] for page in pages for event in page]


async def test_is_empty_when_no_event_is_coming(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/events")
    assert response.status_code == 200
    assert response.json() == {"events": [], "next": None}


async def test_lists_upcoming_events_soonest_first_to_anyone(client: httpx.AsyncClient, make_event) -> None:
    user = signin(client)
    later = await make_event("Later", "Hall", startsAt="2099-03-01T20:00:00Z")
    sooner = await make_event("Sooner", "Club", startsAt="2099-02-01T20:00:00+01:00", maxPerBuyer=2)
    client.cookies.clear()
    response = await client.get("/api/events")
    assert response.status_code == 200
    assert response.json() == {
        "events": [
            {
                "id": sooner["id"],
                "name": "Sooner",
                "venue": "Club",
                "startsAt": "2099-02-01T19:00:00Z",
                "onSaleAt": sooner["onSaleAt"],
                "maxPerBuyer": 2,
                "waitingRoom": False,
                "userId": str(user.id),
                "version": 0,
            },
            later,
        ],
        "next": None,
    }


async def test_events_that_have_started_are_not_listed(client: httpx.AsyncClient, stored_event: Stored) -> None:
    await stored_event("Yesterday", starts_in=timedelta(days=-1))
    await stored_event("A second ago", starts_in=timedelta(seconds=-1))
    coming = await stored_event("Tomorrow", starts_in=timedelta(days=1))
    listed = (await client.get("/api/events")).json()["events"]
    assert [event["id"] for event in listed] == [str(coming.id)]


async def test_pages_through_every_upcoming_event_once_in_order(
    client: httpx.AsyncClient, stored_event: Stored
) -> None:
    events = [await stored_event(f"E{i}", starts_in=timedelta(days=10 - i)) for i in range(8)]
    pages = await _all_pages(client, limit=3)
    assert [len(page) for page in pages] == [3, 3, 2]
    assert _ids(pages) == [str(event.id) for event in reversed(events)]


async def test_the_last_full_page_has_no_next_cursor(client: httpx.AsyncClient, stored_event: Stored) -> None:
    for i in range(4):
        await stored_event(f"E{i}", starts_in=timedelta(days=i + 1))
    assert [len(page) for page in await _all_pages(client, limit=2)] == [2, 2]


async def test_events_starting_at_the_same_moment_are_ordered_by_id_and_none_is_lost(
    client: httpx.AsyncClient, stored_event: Stored
) -> None:
    moment = datetime.now(UTC) + timedelta(days=3)
    ids = [uuid.uuid4() for _ in range(7)]
    for event_id in ids:
        await stored_event("Same time", starts_at=moment, event_id=event_id)
    assert _ids(await _all_pages(client, limit=2)) == [str(i) for i in sorted(ids)]


async def test_default_page_size_is_50(client: httpx.AsyncClient, stored_event: Stored) -> None:
    for i in range(51):
        await stored_event(f"E{i}", starts_in=timedelta(days=1, minutes=i))
    body = (await client.get("/api/events")).json()
    assert len(body["events"]) == 50
    rest = (await client.get("/api/events", params={"cursor": body["next"]})).json()
    assert (len(rest["events"]), rest["next"]) == (1, None)


async def test_an_event_created_between_two_pages_shows_where_it_starts(
    client: httpx.AsyncClient, stored_event: Stored
) -> None:
    events = [await stored_event(f"E{i}", starts_in=timedelta(days=i + 1)) for i in range(4)]
    first = (await client.get("/api/events", params={"limit": "2"})).json()
    assert [e["id"] for e in first["events"]] == [str(events[0].id), str(events[1].id)]
    earlier = await stored_event("Earlier", starts_in=timedelta(hours=1))  # before the cursor: a new first page's
    between = await stored_event("Between", starts_in=timedelta(days=2, hours=12))
    second = (await client.get("/api/events", params={"limit": "3", "cursor": first["next"]})).json()
    assert [e["id"] for e in second["events"]] == [str(between.id), str(events[2].id), str(events[3].id)]
    assert str(earlier.id) not in [e["id"] for e in second["events"]]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "", "1.5"])
async def test_returns_400_when_the_limit_is_not_a_whole_number_from_1_to_100(
    client: httpx.AsyncClient, limit: str
) -> None:
    response = await client.get("/api/events", params={"limit": limit})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Limit must be a whole number from 1 to 100", "field": "limit"}]}


@pytest.mark.parametrize("cursor", ["garbage", "", "MjAyNC0wMS0wMVQwMDowMDowMA"])
async def test_returns_400_when_the_cursor_was_not_handed_out(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/api/events", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Invalid cursor", "field": "cursor"}]}


# -- search --------------------------------------------------------------------------------------------------------


async def test_q_finds_events_by_name_or_venue_in_any_case(client: httpx.AsyncClient, stored_event: Stored) -> None:
    by_name = await stored_event("Late JAZZ night", "Arena", starts_in=timedelta(days=1))
    by_venue = await stored_event("Quartet", "The jazz Café", starts_in=timedelta(days=2))
    await stored_event("Opera", "Opera House", starts_in=timedelta(days=3))
    listed = (await client.get("/api/events", params={"q": "Jazz"})).json()
    assert [e["id"] for e in listed["events"]] == [str(by_name.id), str(by_venue.id)]
    assert listed["next"] is None


async def test_q_is_trimmed_and_a_blank_q_searches_nothing_out(client: httpx.AsyncClient, stored_event: Stored) -> None:
    jazz = await stored_event("Jazz", starts_in=timedelta(days=1))
    opera = await stored_event("Opera", starts_in=timedelta(days=2))
    assert [e["id"] for e in (await client.get("/api/events", params={"q": "  jazz "})).json()["events"]] == [
        str(jazz.id)
    ]
    assert [e["id"] for e in (await client.get("/api/events", params={"q": "  "})).json()["events"]] == [
        str(jazz.id),
        str(opera.id),
    ]


@pytest.mark.parametrize(
    ("q", "matching", "not_matching"),
    [
        pytest.param("100%", "100% Rock", "1000 Rock", id="percent"),
        pytest.param("a_b", "Club a_b", "Club axb", id="underscore"),
        pytest.param("back\\slash", "A back\\slash show", "A backslash show", id="backslash"),
        pytest.param("%", "50% off", "Half off", id="percent-alone"),
    ],
)
async def test_wildcards_in_q_are_matched_literally(
    client: httpx.AsyncClient, stored_event: Stored, q: str, matching: str, not_matching: str
) -> None:
    found = await stored_event(matching, starts_in=timedelta(days=1))
    await stored_event(not_matching, starts_in=timedelta(days=2))
    listed = (await client.get("/api/events", params={"q": q})).json()["events"]
    assert [e["id"] for e in listed] == [str(found.id)]


async def test_a_search_pages_like_the_listing_and_skips_started_events(
    client: httpx.AsyncClient, stored_event: Stored
) -> None:
    await stored_event("Rock past", starts_in=timedelta(hours=-1))
    rock = [await stored_event(f"Rock {i}", starts_in=timedelta(days=i + 1)) for i in range(5)]
    for i in range(5):
        await stored_event(f"Folk {i}", starts_in=timedelta(days=i + 1, hours=1))
    pages = await _all_pages(client, limit=2, q="rock")
    assert [len(page) for page in pages] == [2, 2, 1]
    assert _ids(pages) == [str(event.id) for event in rock]


async def test_a_search_stays_right_past_the_moment_postgresql_may_reuse_a_plan(
    client: httpx.AsyncClient, stored_event: Stored
) -> None:
    # A prepared statement may switch to a generic plan after five executions; answers must not change with it.
    rare = await stored_event("Zither recital", starts_in=timedelta(days=2))
    for i in range(30):
        await stored_event(f"Show {i}", starts_in=timedelta(days=1, minutes=i))
    for _ in range(8):
        assert len((await client.get("/api/events", params={"q": "show", "limit": "5"})).json()["events"]) == 5
    listed = (await client.get("/api/events", params={"q": "zither"})).json()["events"]
    assert [e["id"] for e in listed] == [str(rare.id)]


async def test_returns_400_when_q_is_longer_than_any_name_or_venue(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/events", params={"q": "x" * 201})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Search must be at most 200 characters", "field": "q"}]}
    assert (await client.get("/api/events", params={"q": "x" * 200})).status_code == 200


async def test_returns_400_when_q_holds_a_nul(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/events?q=ja%00zz")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": INVALID_TEXT_MESSAGE, "field": "q"}]}
