"""HTTP routes of the queue service, under ``/api/queue``: thin, the use cases live in ``service.py``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ticketing_common.app import DatabaseDep
from ticketing_common.auth import RequiredUser
from ticketing_common.errors import error_responses
from ticketing_common.schemas import parse_path_id
from ticketing_queue import service
from ticketing_queue.dependencies import RevealedDrawsDep, SettingsDep
from ticketing_queue.schemas import DrawOut, PlaceOut

router = APIRouter(prefix="/api/queue", tags=["queue"])


@router.post(
    "/{event_id}",
    status_code=201,
    response_model=PlaceOut,
    responses={200: {"model": PlaceOut, "description": "Joined before: the place"}, **error_responses(401, 404, 429)},
)
async def join_queue(
    event_id: str, user: RequiredUser, db: DatabaseDep, settings: SettingsDep, response: Response
) -> PlaceOut:
    """Join the event's waiting room (201), or see the place of an earlier join (200)."""
    joined = await service.join(db=db, settings=settings, user_id=user.id, event_id=parse_path_id(event_id))
    if not joined.new:
        response.status_code = 200
    return PlaceOut.model_validate(joined.place)


@router.get("/{event_id}", response_model=PlaceOut, responses=error_responses(401, 404))
async def show_place(event_id: str, user: RequiredUser, db: DatabaseDep, settings: SettingsDep) -> PlaceOut:
    """The signed-in user's place in the event's waiting room."""
    place = await service.show_place(db=db, settings=settings, user_id=user.id, event_id=parse_path_id(event_id))
    return PlaceOut.model_validate(place)


@router.get("/{event_id}/draw", response_model=DrawOut, responses=error_responses(404))
async def show_draw(event_id: str, db: DatabaseDep, revealed: RevealedDrawsDep) -> DrawOut:
    """The event's draw, for anyone to check: the commitment, then the seed and the entrants."""
    draw = await service.show_draw(db=db, revealed=revealed, event_id=parse_path_id(event_id))
    return DrawOut.model_validate(draw)
