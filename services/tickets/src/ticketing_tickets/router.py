"""HTTP routes of the tickets service, under ``/api/tickets``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ticketing_common.app import DatabaseDep
from ticketing_common.auth import RequiredUser
from ticketing_common.errors import error_responses
from ticketing_common.schemas import parse_path_id
from ticketing_tickets import service
from ticketing_tickets.pagination import Cursor, parse_limit
from ticketing_tickets.routing import ExactJSONRoute
from ticketing_tickets.schemas import TicketIn, TicketOut, TicketPage, TicketUpdate

router = APIRouter(prefix="/api/tickets", tags=["tickets"], route_class=ExactJSONRoute)


@router.post("", status_code=201, responses=error_responses(400, 401, 415))
async def create_ticket(body: TicketIn, user: RequiredUser, db: DatabaseDep) -> TicketOut:
    """Put a ticket on sale."""
    ticket = await service.create_ticket(db=db, user_id=user.id, title=body.title, price=body.price)
    return TicketOut.model_validate(ticket)


@router.get("", responses=error_responses(400))
async def list_tickets(db: DatabaseDep, limit: str | None = None, cursor: str | None = None) -> TicketPage:
    """Tickets for sale (held by no order), newest first, one page at a time."""
    page_size = parse_limit(limit)
    after = Cursor.decode(cursor) if cursor is not None else None
    tickets, following = await service.list_available(db=db, limit=page_size, after=after)
    return TicketPage(
        tickets=[TicketOut.model_validate(t) for t in tickets],
        next=following.encode() if following is not None else None,
    )


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
