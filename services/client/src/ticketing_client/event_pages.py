"""The events' pages: the list with its search, an event with its tickets, creating an event, listing tickets for
it, and its waiting room. Thin, like ``router``: read the form, call the APIs, render or redirect (Post/Redirect/Get,
field errors next to their fields)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from ticketing_client.api import Api, ApiResponse, as_uuid
from ticketing_client.config import Settings
from ticketing_client.dependencies import ApiDep, CurrentUserDep, SettingsDep
from ticketing_client.forms import read_form
from ticketing_client.presenters import (
    PlaceView,
    entrant_hash,
    event_offer,
    moment_for_api,
    on_sale,
    place_view,
    price_for_api,
    split_errors,
    whole_number_for_api,
)
from ticketing_client.rendering import render
from ticketing_client.router import redirect, relay_retry_after, to_sign_in, while_copy_lags
from ticketing_common.errors import NotAuthorizedError

router = APIRouter(include_in_schema=False)

EVENT_FIELDS = ("name", "venue", "startsAt", "onSaleAt", "maxPerBuyer")
LISTING_FIELDS = ("count", "price", "title")
BUYING_OFFERS = ("buy", "admitted")


def _owns(user: dict[str, Any] | None, thing: dict[str, Any]) -> bool:
    return bool(user and str(user.get("id")) == str(thing.get("userId")))


def _list_of(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


# -- the list ----------------------------------------------------------------------------------------------------


def _events_url(q: str | None, cursor: str | None = None) -> str:
    query = {key: value for key, value in (("q", q), ("cursor", cursor)) if value}
    return "/events" + (f"?{urlencode(query)}" if query else "")


@router.get("/events", response_class=HTMLResponse)
async def events_page(
    request: Request,
    api: ApiDep,
    user: CurrentUserDep,
    settings: SettingsDep,
    q: str | None = None,
    cursor: str | None = None,
) -> Response:
    """Upcoming events, soonest first, one page at a time; ``q`` searches their names and venues."""
    q = (q or "").strip() or None
    result = await api.list_events(limit=settings.events_per_page, cursor=cursor, q=q)
    if result.status == 400:  # the search (or a forged cursor) refused: the search form says why
        field_errors, errors = split_errors(result.errors, ("q",))
        page = render(
            request,
            "events.html",
            status_code=400,
            q=q or "",
            events=[],
            next_url=None,
            first_url=None,
            errors=errors,
            field_errors=field_errors,
        )
        return relay_retry_after(page, result)
    body = result.json_or_raise()
    following = body.get("next") if isinstance(body, dict) else None
    return render(
        request,
        "events.html",
        q=q or "",
        events=_list_of(body, "events"),
        next_url=_events_url(q, following) if isinstance(following, str) and following else None,
        first_url=_events_url(q) if cursor else None,
    )


# -- creating an event -------------------------------------------------------------------------------------------


def _event_form(request: Request, *, values: dict[str, str], result: ApiResponse | None = None) -> Response:
    field_errors, errors = split_errors(result.errors, EVENT_FIELDS) if result else ({}, [])
    page = render(
        request,
        "event_form.html",
        status_code=result.status if result else 200,
        values=values,
        errors=errors,
        field_errors=field_errors,
    )
    return relay_retry_after(page, result)


@router.get("/events/new", response_class=HTMLResponse)
async def new_event_page(request: Request, user: CurrentUserDep) -> Response:
    """The form to create an event."""
    if user is None:
        return to_sign_in(request)
    return _event_form(request, values={**dict.fromkeys(EVENT_FIELDS, ""), "maxPerBuyer": "4"})


@router.post("/events/new", response_class=HTMLResponse)
async def create_event(request: Request, api: ApiDep, user: CurrentUserDep) -> Response:
    """Create the event and show it. The times come from ``datetime-local`` inputs, read in the visitor's time
    zone when the page's script sent its offset, else in UTC (as the form then says)."""
    if user is None:
        return to_sign_in(request)
    form = await read_form(request)
    values = {name: form.get(name, "") for name in EVENT_FIELDS}
    body: dict[str, Any] = {
        "name": values["name"],
        "venue": values["venue"],
        "startsAt": moment_for_api(values["startsAt"], form.get("startsAtOffset")),
    }
    on_sale_at = moment_for_api(values["onSaleAt"], form.get("onSaleAtOffset"))
    if on_sale_at is not None:
        body["onSaleAt"] = on_sale_at
    max_per_buyer = whole_number_for_api(values["maxPerBuyer"])
    if max_per_buyer is not None:
        body["maxPerBuyer"] = max_per_buyer
    result = await api.create_event(body)
    if result.status == 401:
        return to_sign_in(request)
    if result.ok:
        return redirect(f"/events/{as_uuid(str(result.body['id']))}")
    return _event_form(request, values=values, result=result)


# -- an event ----------------------------------------------------------------------------------------------------


async def _place(api: Api, event_id: uuid.UUID) -> PlaceView | None:
    """The visitor's place in the event's waiting room; None when they have not joined it (or are signed out)."""
    result = await api.get_place(event_id)
    if result.status in (401, 404):
        return None
    return place_view(result.json_or_raise(), now=datetime.now(UTC))


async def _nothing() -> None:
    return None


async def _event_page(
    request: Request,
    api: Api,
    settings: Settings,
    user: dict[str, Any] | None,
    event_id: uuid.UUID,
    *,
    cursor: str | None = None,
    listed: int | None = None,
    result: ApiResponse | None = None,
    listing: dict[str, str] | None = None,
) -> Response:
    """The event page; after a failed post, with its status and errors (those of the listing form by field)."""
    event = (await api.get_event(event_id)).json_or_raise()
    is_owner = _owns(user, event)
    wants_place = user is not None and not is_owner and bool(event.get("waitingRoom"))
    tickets_result, place = await asyncio.gather(
        api.list_event_tickets(event_id, limit=settings.tickets_per_page, cursor=cursor),
        _place(api, event_id) if wants_place else _nothing(),
    )
    tickets_page = tickets_result.json_or_raise()
    following = tickets_page.get("next") if isinstance(tickets_page, dict) else None
    now = datetime.now(UTC)
    offer = event_offer(event, place=place, signed_in=user is not None, is_owner=is_owner, now=now)
    fields = LISTING_FIELDS if listing is not None else ()
    field_errors, errors = split_errors(result.errors, fields) if result else ({}, [])
    page = render(
        request,
        "event.html",
        status_code=result.status if result else 200,
        event=event,
        counts=event.get("tickets") if isinstance(event.get("tickets"), dict) else {},
        tickets=_list_of(tickets_page, "tickets"),
        next_url=f"/events/{event_id}?{urlencode({'cursor': following})}" if following else None,
        first_url=f"/events/{event_id}" if cursor else None,
        is_owner=is_owner,
        offer=offer,
        can_buy=offer in BUYING_OFFERS,
        on_sale=on_sale(event, now=now),
        place=place,
        listed=listed,
        listing=listing or {"count": "", "price": "", "title": ""},
        errors=errors,
        field_errors=field_errors,
    )
    return relay_retry_after(page, result)


@router.get("/events/{event_id:uuid}", response_class=HTMLResponse)
async def event_page(
    request: Request,
    event_id: uuid.UUID,
    api: ApiDep,
    user: CurrentUserDep,
    settings: SettingsDep,
    cursor: str | None = None,
    listed: str | None = None,
) -> Response:
    """The event: when and where, its sale, its tickets with "Buy" (or the waiting room first), and for its
    owner the form to list tickets (``listed``: how many it just listed, for the notice)."""
    count = int(listed) if listed and listed.isascii() and listed.isdigit() and len(listed) < 6 else None
    return await _event_page(request, api, settings, user, event_id, cursor=cursor, listed=count)


@router.post("/events/{event_id:uuid}/tickets", response_class=HTMLResponse)
async def list_tickets(
    request: Request, event_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """The owner puts ``count`` alike tickets of the event on sale at once (the title defaults to the event's
    name)."""
    back = f"/events/{event_id}"
    if user is None:
        return to_sign_in(request, back=back)
    form = await read_form(request)
    listing = {name: form.get(name, "") for name in LISTING_FIELDS}
    result = await api.create_event_tickets(
        event_id,
        count=whole_number_for_api(listing["count"]),
        price=price_for_api(listing["price"]),
        title=listing["title"] if listing["title"].strip() else None,
    )
    if result.status == 401:
        return to_sign_in(request, back=back)
    if result.ok:
        created = result.body.get("created") if isinstance(result.body, dict) else None
        return redirect(f"{back}?listed={created}" if isinstance(created, int) else back)
    return await _event_page(request, api, settings, user, event_id, result=result, listing=listing)


@router.post("/events/{event_id:uuid}/purchase", response_class=HTMLResponse)
async def purchase(
    request: Request, event_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """ "Buy" on the event page: order the chosen ticket (``ticketId``) and go to the order to pay; a refusal (not
    on sale yet, the waiting room first, the limit per buyer, too many attempts) shows the event page again."""
    back = f"/events/{event_id}"
    if user is None:
        return to_sign_in(request, back=back)
    form = await read_form(request)
    ticket_id = as_uuid(form.get("ticketId", ""))
    result = await while_copy_lags(
        lambda: api.create_order(ticket_id), exists=lambda: api.get_ticket(ticket_id), within=settings.copy_wait_seconds
    )
    if result.status == 401:
        return to_sign_in(request, back=back)
    if result.ok:
        return redirect(f"/orders/{as_uuid(str(result.body['id']))}")
    return await _event_page(request, api, settings, user, event_id, result=result)


# -- the waiting room --------------------------------------------------------------------------------------------


@router.post("/events/{event_id:uuid}/queue", response_class=HTMLResponse)
async def join_queue(
    request: Request, event_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """Join the event's waiting room (joining twice is harmless) and go to it."""
    back = f"/events/{event_id}"
    if user is None:
        return to_sign_in(request, back=back)
    await read_form(request)
    result = await api.join_queue(event_id)
    if result.status == 401:
        return to_sign_in(request, back=back)
    if result.ok:
        return redirect(f"/events/{event_id}/queue")
    return await _event_page(request, api, settings, user, event_id, result=result)


async def _queue_context(api: Api, settings: Settings, user: dict[str, Any], event_id: uuid.UUID) -> dict[str, Any]:
    """What the waiting room page and its panel show: the event, the visitor's place and the draw."""
    event_result, place, draw_result = await asyncio.gather(
        api.get_event(event_id), _place(api, event_id), api.get_draw(event_id)
    )
    event = event_result.json_or_raise()
    draw = draw_result.body if draw_result.ok and isinstance(draw_result.body, dict) else None
    entrants = draw.get("entrants") if draw else None
    mine = entrant_hash(str(user.get("id", "")))
    return {
        "event": event,
        "place": place,
        "draw": draw,
        "entrant_count": len(entrants) if isinstance(entrants, list) else None,
        "my_hash": mine,
        "in_draw": isinstance(entrants, list) and mine in entrants,
        "status_url": f"/events/{event_id}/queue/status",
        "panel_url": f"/events/{event_id}/queue/panel",
        "event_url": f"/events/{event_id}",
        "poll_ms": int(settings.queue_poll_seconds * 1000),
    }


@router.get("/events/{event_id:uuid}/queue", response_class=HTMLResponse)
async def queue_page(
    request: Request,
    event_id: uuid.UUID,
    api: ApiDep,
    user: CurrentUserDep,
    settings: SettingsDep,
    waiting: str | None = None,
) -> Response:
    """The waiting room: the visitor's state, place, how many are ahead and the estimated wait, kept current by
    ``queue.js`` (or a refresh without JavaScript), and the draw. ``waiting`` marks the refresh of a visitor who
    was waiting: admitted now, they are moved on to the event page to buy."""
    if user is None:
        return to_sign_in(request)
    context = await _queue_context(api, settings, user, event_id)
    place: PlaceView | None = context["place"]
    if waiting and place is not None and place.admitted:
        return redirect(context["event_url"])
    return render(request, "queue.html", **context)


@router.get("/events/{event_id:uuid}/queue/panel", response_class=HTMLResponse)
async def queue_panel(
    request: Request, event_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """The waiting room page's panel alone: the page's script swaps it in when the state changes."""
    if user is None:
        raise NotAuthorizedError()
    return render(request, "_queue_panel.html", **await _queue_context(api, settings, user, event_id))


@router.get("/events/{event_id:uuid}/queue/status")
async def queue_status(event_id: uuid.UUID, api: ApiDep) -> JSONResponse:
    """The visitor's place as JSON, polled by the waiting room page: {state, key, label, position, ahead,
    estimatedWaitSeconds, estimatedWait, admittedUntil}; 404 when they have not joined."""
    result = await api.get_place(event_id)
    if result.status == 401:
        raise NotAuthorizedError()
    view = place_view(result.json_or_raise(), now=datetime.now(UTC))
    return JSONResponse(
        {
            "state": view.state,
            "key": view.key,
            "label": view.label,
            "position": view.position,
            "ahead": view.ahead,
            "estimatedWaitSeconds": view.wait_seconds,
            "estimatedWait": view.wait,
            "admittedUntil": view.admitted_until,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/waiting-room", response_class=HTMLResponse)
async def waiting_room_help(request: Request, user: CurrentUserDep) -> Response:
    """How the waiting room and its draw work, and how anyone can check a draw."""
    return render(request, "waiting_room.html")
