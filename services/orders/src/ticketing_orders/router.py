"""HTTP routes of the orders service, under ``/api/orders``: thin, the use cases live in ``service.py``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ticketing_common.app import DatabaseDep
from ticketing_common.auth import RequiredUser
from ticketing_common.errors import error_responses
from ticketing_common.schemas import parse_path_id
from ticketing_orders import service
from ticketing_orders.dependencies import OrderAttemptsDep, SaleWaitsDep, SettingsDep
from ticketing_orders.schemas import OrderIn, OrderOut

router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.post("", status_code=201, response_model=OrderOut, responses=error_responses(400, 401, 403, 404, 409, 429))
async def create_order(
    body: OrderIn,
    user: RequiredUser,
    db: DatabaseDep,
    settings: SettingsDep,
    waits: SaleWaitsDep,
    attempts: OrderAttemptsDep,
) -> OrderOut:
    """Reserve a ticket for the signed-in user."""
    attempts.check(user.id)
    order = await service.create_order(
        db=db,
        waits=waits,
        user_id=user.id,
        ticket_id=body.ticket_id,
        expiration_seconds=settings.order_expiration_seconds,
        wait_seconds=settings.order_admission_wait_seconds,
    )
    return OrderOut.model_validate(order)


@router.get("", response_model=list[OrderOut], responses=error_responses(401))
async def list_orders(user: RequiredUser, db: DatabaseDep) -> list[OrderOut]:
    """The signed-in user's orders, newest first."""
    orders = await service.list_orders(db=db, user_id=user.id)
    return [OrderOut.model_validate(order) for order in orders]


@router.get("/{order_id}", response_model=OrderOut, responses=error_responses(401, 404))
async def show_order(order_id: str, user: RequiredUser, db: DatabaseDep) -> OrderOut:
    """One of the signed-in user's orders."""
    order = await service.show_order(db=db, user_id=user.id, order_id=parse_path_id(order_id))
    return OrderOut.model_validate(order)


@router.delete(
    "/{order_id}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Cancelled (no body)"}, **error_responses(400, 401, 404, 409)},
)
async def cancel_order(order_id: str, user: RequiredUser, db: DatabaseDep) -> Response:
    """Cancel one of the signed-in user's orders."""
    await service.cancel_order(db=db, user_id=user.id, order_id=parse_path_id(order_id))
    return Response(status_code=204)
