"""HTTP routes of the tickets service: tickets under ``/api/tickets``, events under ``/api/events``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ticketing_common.app import DatabaseDep
from ticketing_common.auth import RequiredUser
from ticketing_common.errors import FieldError, error_responses
from ticketing_common.schemas import parse_path_id
from ticketing_tickets import service
from ticketing_tickets.domain import search_text
from ticketing_tickets.pagination import Cursor, parse_limit
from ticketing_tickets.routing import ExactJSONRoute
from ticketing_tickets.schemas import (
    EventDetail,
    EventIn,
    EventOut,
    EventPage,
    EventTicketsIn,
    EventUpdate,
    TicketCountsOut,
    TicketIn,
    TicketOut,
    TicketPage,
    TicketsCreated,
    TicketUpdate,
    clean_event_id,
)

router = APIRouter(prefix="/api/tickets", tags=["tickets"], route_class=ExactJSONRoute)
events_router = APIRouter(prefix="/api/events", tags=["events"], route_class=ExactJSONRoute)


@router.post("", status_code=201, responses=error_responses(400, 401, 403, 415))
async def create_ticket(body: TicketIn, user: RequiredUser, db: DatabaseDep) -> TicketOut:
    """Put a ticket on sale, for one of one's own events with ``eventId``."""
    ticket = await service.create_ticket(
        db=db, user_id=user.id, title=body.title, price=body.price, event_id=body.event_id
    )
    return TicketOut.model_validate(ticket)


@router.get("", response_model=TicketPage, responses=error_responses(400))
async def list_tickets(
    db: DatabaseDep,
    limit: str | None = None,
    cursor: str | None = None,
    event_id: Annotated[str | None, Query(alias="eventId")] = None,
) -> Response:
    """Tickets for sale (held by no order), newest first, one page at a time; of one event with ``eventId``."""
    page_size = parse_limit(limit)
    after = Cursor.decode(cursor) if cursor is not None else None
    tickets, following = await service.list_available(
        db=db, limit=page_size, after=after, event_id=_event_id_query(event_id)
    )
    body = TicketPage.body(tickets, following.encode() if following is not None else None)
    return Response(body, media_type="application/json")


@router.get("/{ticket_id}", response_model=TicketOut, responses=error_responses(404))
async def show_ticket(ticket_id: str, request: Request) -> Response:
    """One ticket, including the order holding it; 404 for any id that names no ticket."""
    # The hottest route, mostly answered from memory: the app's state directly, no dependency to resolve.
    state = request.app.state
    body = await service.show_ticket(db=state.db, cache=state.ticket_cache, ticket_id=parse_path_id(ticket_id))
    return Response(body, media_type="application/json")


@router.put("/{ticket_id}", responses=error_responses(400, 401, 403, 404, 409, 415))
async def update_ticket(ticket_id: str, body: TicketUpdate, user: RequiredUser, db: DatabaseDep) -> TicketOut:
    """Change the title and price of one's own unreserved ticket."""
    ticket = await service.update_ticket(
        db=db,
        ticket_id=parse_path_id(ticket_id),
        user_id=user.id,
        title=body.title,
        price=body.price,
        expected_version=body.version,
    )
    return TicketOut.model_validate(ticket)


def _event_id_query(value: str | None) -> uuid.UUID | None:
    """The ``eventId`` filter of the listing; 400 (field ``eventId``) for what is not an id."""
    try:
        return clean_event_id(value)
    except ValueError as exc:
        raise FieldError("eventId", str(exc)) from None


@events_router.post("", status_code=201, responses=error_responses(400, 401, 415))
async def create_event(body: EventIn, user: RequiredUser, db: DatabaseDep) -> EventOut:
    """Create an event (a show tickets are sold for), owned by the signed-in user."""
    event = await service.create_event(
        db=db,
        user_id=user.id,
        name=body.name,
        venue=body.venue,
        starts_at=body.starts_at,
        on_sale_at=body.on_sale_at,
        max_per_buyer=body.max_per_buyer,
    )
    return EventOut.model_validate(event)


@events_router.get("", responses=error_responses(400))
async def list_events(
    db: DatabaseDep, limit: str | None = None, cursor: str | None = None, q: str | None = None
) -> EventPage:
    """Events that have not started, soonest first, one page at a time; with ``q``, those whose name or venue
    contains it (any case)."""
    page_size = parse_limit(limit)
    after = Cursor.decode(cursor) if cursor is not None else None
    events, following = await service.list_upcoming_events(db=db, limit=page_size, after=after, search=search_text(q))
    return EventPage(
        events=[EventOut.model_validate(e) for e in events],
        next=following.encode() if following is not None else None,
    )


@events_router.get("/{event_id}", responses=error_responses(404))
async def show_event(event_id: str, db: DatabaseDep) -> EventDetail:
    """One event and how many of its tickets are available and reserved; 404 for any id that names no event."""
    event, counts = await service.show_event(db=db, event_id=parse_path_id(event_id))
    return EventDetail.model_validate(
        {**EventOut.model_validate(event).model_dump(), "tickets": TicketCountsOut.model_validate(counts)}
    )


@events_router.put("/{event_id}", responses=error_responses(400, 401, 403, 404, 409, 415))
async def update_event(event_id: str, body: EventUpdate, user: RequiredUser, db: DatabaseDep) -> EventOut:
    """Replace one's own event (its waiting room stays as decided at creation)."""
    event = await service.update_event(
        db=db,
        event_id=parse_path_id(event_id),
        user_id=user.id,
        name=body.name,
        venue=body.venue,
        starts_at=body.starts_at,
        on_sale_at=body.on_sale_at,
        max_per_buyer=body.max_per_buyer,
        expected_version=body.version,
    )
    return EventOut.model_validate(event)


@events_router.post("/{event_id}/tickets", status_code=201, responses=error_responses(400, 401, 403, 404, 415))
async def create_event_tickets(
    event_id: str, body: EventTicketsIn, user: RequiredUser, db: DatabaseDep
) -> TicketsCreated:
    """Put up to 5,000 alike tickets of one's own event on sale at once (all or none)."""
    created = await service.create_event_tickets(
        db=db,
        event_id=parse_path_id(event_id),
        user_id=user.id,
        count=body.count,
        price=body.price,
        title=body.title,
    )
    return TicketsCreated(created=created)
