"""The pages. Thin: each calls the APIs with the visitor's cookie (``api.Api``) and renders a template.

Forms follow Post/Redirect/Get: a successful post answers 303 to the resulting page; a failed one renders the
form again with the API's status and its errors (field errors next to their fields, the others on top).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from ticketing_client.api import Api, ApiResponse, as_uuid
from ticketing_client.config import Settings
from ticketing_client.dependencies import ApiDep, CurrentUserDep, SettingsDep, current_user
from ticketing_client.forms import read_form
from ticketing_client.presenters import (
    format_amount,
    format_remaining,
    order_view,
    price_for_api,
    safe_next,
    split_errors,
)
from ticketing_client.rendering import render
from ticketing_common.errors import ErrorItem, ForbiddenError, NotAuthorizedError

router = APIRouter(include_in_schema=False)

AUTH_FIELDS = ("email", "password")
TICKET_FIELDS = ("title", "price")
PAYMENT_RECEIVED = "received"


def redirect(url: str, set_cookies: list[str] | None = None) -> RedirectResponse:
    """303 See Other to ``url``, relaying the API's cookies (the browser stores them with the redirect)."""
    response = RedirectResponse(url, status_code=303)
    for cookie in set_cookies or []:
        response.headers.append("set-cookie", cookie)
    return response


def relay_retry_after(page: Response, result: ApiResponse | None) -> Response:
    """A form shown again after a refused call tells the browser, too, when to retry (the words are among the
    result's errors)."""
    if result is not None and not result.ok and result.retry_after:
        page.headers["Retry-After"] = result.retry_after
    return page


def to_sign_in(request: Request, back: str | None = None) -> RedirectResponse:
    """Send a signed-out visitor to sign in, then back to ``back`` (a form's page; default: this page)."""
    here = back or request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/signin?next={quote(here, safe='/')}")


# -- home --------------------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request, api: ApiDep, user: CurrentUserDep, settings: SettingsDep, cursor: str | None = None
) -> Response:
    """Tickets for sale, newest first, one page at a time."""
    page = (await api.list_tickets(limit=settings.tickets_per_page, cursor=cursor)).json_or_raise()
    return render(
        request,
        "home.html",
        tickets=page.get("tickets", []) if isinstance(page, dict) else [],
        next_cursor=page.get("next") if isinstance(page, dict) else None,
        first_page=not cursor,
    )


# -- sign up, sign in, sign out ----------------------------------------------------------------------------------


def _auth_page(
    request: Request, mode: str, *, next_url: str, email: str = "", result: ApiResponse | None = None
) -> Response:
    field_errors, errors = split_errors(result.errors, AUTH_FIELDS) if result else ({}, [])
    page = render(
        request,
        "auth.html",
        status_code=result.status if result else 200,
        mode=mode,
        next_url=next_url,
        email=email,
        errors=errors,
        field_errors=field_errors,
    )
    return relay_retry_after(page, result)


async def _submit_auth_form(
    request: Request, api: Api, mode: str, call: Callable[[str, str], Awaitable[ApiResponse]]
) -> Response:
    """Send the posted email and password to the API: on success, back to ``next`` with the API's cookies; else
    the form again with the API's errors."""
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    email = form.get("email", "")
    result = await call(email, form.get("password", ""))
    if result.ok:
        return redirect(next_url, result.set_cookies)
    await current_user(request, api)  # for the header of the form shown again
    return _auth_page(request, mode, next_url=next_url, email=email, result=result)


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request, user: CurrentUserDep, next: str | None = None) -> Response:
    """The sign-up form."""
    return _auth_page(request, "signup", next_url=safe_next(next))


@router.post("/signup", response_class=HTMLResponse)
async def signup(request: Request, api: ApiDep) -> Response:
    """Create an account; the API's session cookie is relayed to the browser."""
    return await _submit_auth_form(request, api, "signup", api.sign_up)


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, user: CurrentUserDep, next: str | None = None) -> Response:
    """The sign-in form."""
    return _auth_page(request, "signin", next_url=safe_next(next))


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, api: ApiDep) -> Response:
    """Sign in; the API's session cookie is relayed to the browser."""
    return await _submit_auth_form(request, api, "signin", api.sign_in)


@router.get("/signout", response_class=HTMLResponse)
async def signout_page(request: Request, user: CurrentUserDep) -> Response:
    """A page with the sign-out button (signing out changes state, so it is a post)."""
    return render(request, "signout.html")


@router.post("/signout")
async def signout(request: Request, api: ApiDep) -> Response:
    """Sign out: the API's expired cookie is relayed to the browser."""
    await read_form(request)
    result = await api.sign_out()
    result.json_or_raise()
    return redirect("/", result.set_cookies)


# -- tickets -----------------------------------------------------------------------------------------------------


def _ticket_form(
    request: Request,
    *,
    ticket: dict[str, Any] | None,
    values: dict[str, str],
    result: ApiResponse | None = None,
) -> Response:
    field_errors, errors = split_errors(result.errors, TICKET_FIELDS) if result else ({}, [])
    page = render(
        request,
        "ticket_form.html",
        status_code=result.status if result else 200,
        ticket=ticket,
        reserved=bool(ticket and ticket.get("orderId")),
        values=values,
        errors=errors,
        field_errors=field_errors,
    )
    return relay_retry_after(page, result)


@router.get("/tickets/new", response_class=HTMLResponse)
async def new_ticket_page(request: Request, user: CurrentUserDep) -> Response:
    """The form to sell a ticket."""
    if user is None:
        return to_sign_in(request)
    return _ticket_form(request, ticket=None, values={"title": "", "price": ""})


@router.post("/tickets/new", response_class=HTMLResponse)
async def create_ticket(request: Request, api: ApiDep, user: CurrentUserDep) -> Response:
    """Put a ticket on sale and show it."""
    if user is None:
        return to_sign_in(request)
    form = await read_form(request)
    values = {"title": form.get("title", ""), "price": form.get("price", "")}
    result = await api.create_ticket(title=values["title"], price=price_for_api(values["price"]))
    if result.status == 401:
        return to_sign_in(request)
    if result.ok:
        return redirect(f"/tickets/{as_uuid(str(result.body['id']))}")
    return _ticket_form(request, ticket=None, values=values, result=result)


def _ticket_page(
    request: Request,
    ticket: dict[str, Any],
    user: dict[str, Any] | None,
    *,
    errors: list[ErrorItem] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "ticket.html",
        status_code=status_code,
        ticket=ticket,
        is_owner=bool(user and str(user.get("id")) == str(ticket.get("userId"))),
        reserved=bool(ticket.get("orderId")),
        errors=[e["message"] for e in errors or []],
    )


@router.get("/tickets/{ticket_id:uuid}", response_class=HTMLResponse)
async def ticket_page(request: Request, ticket_id: uuid.UUID, api: ApiDep, user: CurrentUserDep) -> Response:
    """One ticket, with "Purchase" for a signed-in buyer or "Edit" for its owner."""
    ticket = (await api.get_ticket(ticket_id)).json_or_raise()
    return _ticket_page(request, ticket, user)


@router.post("/tickets/{ticket_id:uuid}/purchase", response_class=HTMLResponse)
async def purchase(
    request: Request, ticket_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """Reserve the ticket with an order and go to the order's page to pay."""
    if user is None:
        return to_sign_in(request, back=f"/tickets/{ticket_id}")
    await read_form(request)
    result = await while_copy_lags(
        lambda: api.create_order(ticket_id), exists=lambda: api.get_ticket(ticket_id), within=settings.copy_wait_seconds
    )
    if result.status == 401:
        return to_sign_in(request, back=f"/tickets/{ticket_id}")
    if result.ok:
        return redirect(f"/orders/{as_uuid(str(result.body['id']))}")
    ticket = (await api.get_ticket(ticket_id)).json_or_raise()
    page = _ticket_page(request, ticket, user, errors=result.errors, status_code=result.status)
    return relay_retry_after(page, result)


async def _own_ticket(api: Api, ticket_id: uuid.UUID, user: dict[str, Any]) -> dict[str, Any]:
    ticket: dict[str, Any] = (await api.get_ticket(ticket_id)).json_or_raise()
    if str(ticket.get("userId")) != str(user.get("id")):
        raise ForbiddenError("You can only edit your own tickets")
    return ticket


@router.get("/tickets/{ticket_id:uuid}/edit", response_class=HTMLResponse)
async def edit_ticket_page(request: Request, ticket_id: uuid.UUID, api: ApiDep, user: CurrentUserDep) -> Response:
    """The owner's edit form, disabled while an order holds the ticket."""
    if user is None:
        return to_sign_in(request)
    ticket = await _own_ticket(api, ticket_id, user)
    values = {"title": str(ticket.get("title", "")), "price": format_amount(ticket.get("price"))}
    return _ticket_form(request, ticket=ticket, values=values)


@router.post("/tickets/{ticket_id:uuid}/edit", response_class=HTMLResponse)
async def update_ticket(request: Request, ticket_id: uuid.UUID, api: ApiDep, user: CurrentUserDep) -> Response:
    """Save the owner's changes; the version the form was loaded with guards against overwriting a newer one."""
    if user is None:
        return to_sign_in(request)
    form = await read_form(request)
    values = {"title": form.get("title", ""), "price": form.get("price", "")}
    version = int(form["version"]) if form.get("version", "").isdigit() else None
    result = await api.update_ticket(
        ticket_id, title=values["title"], price=price_for_api(values["price"]), version=version
    )
    if result.status == 401:
        return to_sign_in(request)
    if result.ok:
        return redirect(f"/tickets/{ticket_id}")
    ticket = await _own_ticket(api, ticket_id, user)
    return _ticket_form(request, ticket=ticket, values=values, result=result)


# -- orders and payment ------------------------------------------------------------------------------------------


def _orders_of(body: Any) -> list[dict[str, Any]]:
    """The orders API's list, whether it answers a bare array or ``{"orders": [...]}``."""
    orders = body.get("orders") if isinstance(body, dict) else body
    return [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(request: Request, api: ApiDep, user: CurrentUserDep) -> Response:
    """My orders, newest first, each with its ticket and status."""
    if user is None:
        return to_sign_in(request)
    orders = _orders_of((await api.list_orders()).json_or_raise())
    now = datetime.now(UTC)
    return render(request, "orders.html", orders=[(order, order_view(order, now=now)) for order in orders])


def _order_context(order: dict[str, Any], settings: Settings, *, payment: str | None) -> dict[str, Any]:
    view = order_view(order, now=datetime.now(UTC), payment_received=payment == PAYMENT_RECEIVED)
    order_id = as_uuid(str(order.get("id")))
    query = f"?payment={PAYMENT_RECEIVED}" if view.state == "confirming" else ""
    return {
        "order": order,
        "ticket": order.get("ticket") or {},
        "view": view,
        "remaining": format_remaining(view.remaining_seconds),
        "remaining_ms": int(view.remaining_seconds * 1000),
        "status_url": f"/orders/{order_id}/status{query}",
        "panel_url": f"/orders/{order_id}/panel{query}",
        "poll_ms": int(settings.order_poll_seconds * 1000),
    }


async def _order_page(
    request: Request,
    api: Api,
    settings: Settings,
    order_id: uuid.UUID,
    *,
    payment: str | None = None,
    result: ApiResponse | None = None,
) -> Response:
    order = (await api.get_order(order_id)).json_or_raise()
    context = _order_context(order, settings, payment=payment)
    errors = [e["message"] for e in result.errors] if result else []
    page = render(request, "order.html", status_code=result.status if result else 200, errors=errors, **context)
    return relay_retry_after(page, result)


@router.get("/orders/{order_id:uuid}", response_class=HTMLResponse)
async def order_page(
    request: Request,
    order_id: uuid.UUID,
    api: ApiDep,
    user: CurrentUserDep,
    settings: SettingsDep,
    payment: str | None = None,
) -> Response:
    """The order: a live countdown and the payment form while it is payable, then "Paid" or "Order expired"."""
    if user is None:
        return to_sign_in(request)
    return await _order_page(request, api, settings, order_id, payment=payment)


@router.get("/orders/{order_id:uuid}/panel", response_class=HTMLResponse)
async def order_panel(
    request: Request, order_id: uuid.UUID, api: ApiDep, settings: SettingsDep, payment: str | None = None
) -> Response:
    """The order page's status panel alone: the page's script swaps it in when the order changes state."""
    order = (await api.get_order(order_id)).json_or_raise()
    return render(request, "_order_panel.html", **_order_context(order, settings, payment=payment))


@router.get("/orders/{order_id:uuid}/status")
async def order_status(order_id: uuid.UUID, api: ApiDep, payment: str | None = None) -> JSONResponse:
    """The order's state as JSON, polled by the order page: {id, status, state, label, remainingSeconds}."""
    result = await api.get_order(order_id)
    if result.status == 401:
        raise NotAuthorizedError()
    order = result.json_or_raise()
    view = order_view(order, now=datetime.now(UTC), payment_received=payment == PAYMENT_RECEIVED)
    return JSONResponse(
        {
            "id": order.get("id"),
            "status": order.get("status"),
            "state": view.state,
            "label": view.label,
            "remainingSeconds": round(view.remaining_seconds, 3),
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/orders/{order_id:uuid}/pay", response_class=HTMLResponse)
async def pay(
    request: Request, order_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """Charge the order with the chosen card token; on success wait briefly for the order to turn complete."""
    if user is None:
        return to_sign_in(request, back=f"/orders/{order_id}")
    form = await read_form(request)
    result = await api.pay(order_id, form.get("token", ""))  # payments waits for its order copy itself
    if result.status == 401:
        return to_sign_in(request, back=f"/orders/{order_id}")
    if not result.ok:
        return await _order_page(request, api, settings, order_id, result=result)
    order_url = f"/orders/{order_id}"
    if await _completed(api, order_id, within=settings.payment_confirm_seconds):
        return redirect(order_url)
    return redirect(f"{order_url}?payment={PAYMENT_RECEIVED}")


async def while_copy_lags(
    call: Callable[[], Awaitable[ApiResponse]], *, exists: Callable[[], Awaitable[ApiResponse]], within: float
) -> ApiResponse:
    """``call``, retried while it answers 404 for something that does exist at its owner.

    The orders service knows a ticket through events: right after a ticket is put on sale its copy may not have
    arrived yet. A 404 created nothing, so retrying is safe; a thing its owner does not know either stays a 404.
    """
    result = await call()
    if result.status != 404 or not (await exists()).ok:
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.05
    while result.status == 404 and loop.time() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
        result = await call()
    return result


async def _completed(api: Api, order_id: uuid.UUID, *, within: float) -> bool:
    """Whether the order turns complete within ``within`` seconds (the charge reaches it as an event)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await api.get_order(order_id)
        if result.ok and isinstance(result.body, dict) and result.body.get("status") == "complete":
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.1)


@router.post("/orders/{order_id:uuid}/cancel", response_class=HTMLResponse)
async def cancel(
    request: Request, order_id: uuid.UUID, api: ApiDep, user: CurrentUserDep, settings: SettingsDep
) -> Response:
    """Cancel the order, releasing the ticket."""
    if user is None:
        return to_sign_in(request, back=f"/orders/{order_id}")
    await read_form(request)
    result = await api.cancel_order(order_id)
    if result.status == 401:
        return to_sign_in(request, back=f"/orders/{order_id}")
    if not result.ok:
        return await _order_page(request, api, settings, order_id, result=result)
    return redirect(f"/orders/{order_id}")
