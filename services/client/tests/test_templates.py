"""The templates rendered with given data: escaping, order states, payment modes, the edit lock, accessibility."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from client_testing import accessibility_problems, parse

from ticketing_client.config import Settings
from ticketing_client.presenters import format_remaining, order_view
from ticketing_client.rendering import STRIPE_JS, content_security_policy, create_environment, render_template

SCRIPT_TITLE = "<script>alert(1)</script>"
USER = {"id": str(uuid.uuid4()), "email": "me@example.com"}


def _settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def _render(name: str, settings: Settings | None = None, **context: Any) -> str:
    return render_template(create_environment(settings or _settings()), name, **context)


def _ticket(**overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "title": "Concert",
        "price": 19.9,
        "userId": str(uuid.uuid4()),
        "orderId": None,
        "version": 0,
        **overrides,
    }


def _order(status: str, expires_in: float) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "expiresAt": expires.isoformat(),
        "userId": USER["id"],
        "version": 0,
        "ticket": {"id": str(uuid.uuid4()), "title": "Concert", "price": 25.5, "version": 1},
    }


def _order_page(order: dict[str, Any], settings: Settings | None = None, **extra: Any) -> str:
    view = order_view(order, now=datetime.now(UTC))
    return _render(
        "order.html",
        settings,
        user=USER,
        signed_in=True,
        order=order,
        ticket=order["ticket"],
        view=view,
        remaining=format_remaining(view.remaining_seconds),
        remaining_ms=int(view.remaining_seconds * 1000),
        status_url=f"/orders/{order['id']}/status",
        panel_url=f"/orders/{order['id']}/panel",
        poll_ms=2000,
        **extra,
    )


def test_titles_are_html_escaped_everywhere_they_appear() -> None:
    ticket = _ticket(title=SCRIPT_TITLE)
    pages = [
        _render("home.html", tickets=[ticket], next_cursor=None, first_page=True),
        _render("ticket.html", ticket=ticket, is_owner=False, reserved=False),
        _render("ticket_form.html", ticket=ticket, reserved=False, values={"title": SCRIPT_TITLE, "price": "1.00"}),
        _render(
            "orders.html",
            orders=[({"id": "x", "ticket": ticket}, order_view({"status": "complete"}, now=datetime.now(UTC)))],
        ),
        _render("error.html", heading="Oops", messages=[SCRIPT_TITLE]),
    ]
    for html in pages:
        assert SCRIPT_TITLE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_header_offers_events_sign_up_and_sign_in_to_visitors() -> None:
    nav = parse(_render("home.html", tickets=[], next_cursor=None, first_page=True)).find("nav")
    assert nav is not None
    assert [a.text for a in nav.find_all("a")] == ["Events", "Sign up", "Sign in"]


def test_the_header_offers_events_a_new_event_selling_orders_and_sign_out_when_signed_in() -> None:
    doc = parse(_render("home.html", user=USER, signed_in=True, tickets=[], next_cursor=None, first_page=True))
    nav = doc.find("nav")
    assert nav is not None
    assert [a.text for a in nav.find_all("a")] == ["Events", "New event", "Sell a ticket", "My orders"]
    sign_out = nav.find("form", action="/signout")
    assert sign_out is not None
    assert sign_out.attrs["method"] == "post"
    assert sign_out.text == "Sign out"


def test_home_lists_each_ticket_with_its_price_and_a_link_to_the_next_page() -> None:
    tickets = [_ticket(title="A", price=10), _ticket(title="B", price=0.29)]
    doc = parse(_render("home.html", tickets=tickets, next_cursor="abc+/=", first_page=True))
    cards = doc.find_all("li", class_="card")
    assert [c.text for c in cards] == ["A $10.00", "B $0.29"]
    assert cards[0].find("a").attrs["href"] == f"/tickets/{tickets[0]['id']}"  # type: ignore[union-attr]
    next_link = doc.find("a", rel="next")
    assert next_link is not None
    assert next_link.attrs["href"] == "/?cursor=abc%2B/%3D"
    assert doc.find("a", href="/") is not None  # the brand; no "First page" on the first page
    assert "First page" not in doc.text


def test_the_owner_of_a_reserved_ticket_sees_a_disabled_edit_button_and_why() -> None:
    ticket = _ticket(orderId=str(uuid.uuid4()), userId=USER["id"])
    doc = parse(_render("ticket.html", user=USER, signed_in=True, ticket=ticket, is_owner=True, reserved=True))
    edit = next(b for b in doc.find_all("button") if b.text == "Edit")
    assert "disabled" in edit.attrs
    message = doc.find(id="reserved-message")
    assert message is not None
    assert message.text == "This ticket is reserved and cannot be edited"
    assert edit.attrs["aria-describedby"] == "reserved-message"
    assert "Purchase" not in doc.text


def test_the_owner_of_a_free_ticket_gets_an_edit_link_and_no_purchase_button() -> None:
    ticket = _ticket(userId=USER["id"])
    doc = parse(_render("ticket.html", user=USER, signed_in=True, ticket=ticket, is_owner=True, reserved=False))
    assert doc.find("a", href=f"/tickets/{ticket['id']}/edit") is not None
    assert "Purchase" not in doc.text


def test_a_buyer_sees_purchase_only_while_the_ticket_is_free() -> None:
    free = parse(_render("ticket.html", user=USER, signed_in=True, ticket=_ticket(), is_owner=False, reserved=False))
    assert any(b.text == "Purchase" for b in free.find_all("button"))
    held = _ticket(orderId=str(uuid.uuid4()))
    reserved = parse(_render("ticket.html", user=USER, signed_in=True, ticket=held, is_owner=False, reserved=True))
    assert not any(b.text == "Purchase" for b in reserved.find_all("button"))
    assert "reserved" in reserved.text


def test_the_edit_form_is_disabled_while_reserved() -> None:
    ticket = _ticket(orderId=str(uuid.uuid4()), version=3)
    doc = parse(
        _render("ticket_form.html", ticket=ticket, reserved=True, values={"title": "Concert", "price": "19.90"})
    )
    fieldset = doc.find("fieldset")
    assert fieldset is not None
    assert "disabled" in fieldset.attrs
    assert "This ticket is reserved and cannot be edited" in doc.text
    version = doc.find("input", name="version")
    assert version is not None
    assert version.attrs["value"] == "3"


def test_field_errors_are_tied_to_their_inputs() -> None:
    html = _render(
        "auth.html",
        mode="signup",
        next_url="/",
        email="nope",
        errors=["Something else"],
        field_errors={"email": "Email must be valid"},
    )
    doc = parse(html)
    email = doc.find("input", name="email")
    assert email is not None
    assert email.attrs["aria-invalid"] == "true"
    assert "email-error" in email.attrs["aria-describedby"].split()
    assert doc.find(id="email-error").text == "Error: Email must be valid"  # type: ignore[union-attr]
    assert doc.find(role="alert").text == "Something else"  # type: ignore[union-attr]
    assert email.attrs["value"] == "nope"


def test_a_payable_order_in_local_mode_offers_the_two_test_cards_and_a_countdown() -> None:
    order = _order("created", 120)
    doc = parse(_order_page(order))
    buttons = {b.text: b.attrs.get("value") for b in doc.find_all("button", name="token")}
    assert buttons == {
        "Pay with test card (succeeds)": "tok_visa",
        "Pay with test card (declined)": "tok_chargeDeclined",
    }
    countdown = doc.find(id="countdown")
    assert countdown is not None
    assert 118_000 <= int(countdown.attrs["data-remaining-ms"]) <= 120_000
    assert countdown.text in ("2:00", "1:59")
    assert doc.find(id="order-status").text == "Awaiting payment"  # type: ignore[union-attr]
    assert not [s for s in doc.find_all("script") if s.attrs.get("src", "").startswith("http")]


def test_with_a_real_stripe_key_the_order_page_uses_stripe_elements() -> None:
    settings = _settings(stripe_publishable_key="pk_test_123", stripe_api_base="")
    doc = parse(_order_page(_order("created", 120), settings))
    assert doc.find(id="card-element") is not None
    assert doc.find("form", id="stripe-form").attrs["data-publishable-key"] == "pk_test_123"  # type: ignore[union-attr]
    assert doc.find_all("script")[0].attrs["src"] == STRIPE_JS
    assert not doc.find_all("button", name="token")
    assert "https://js.stripe.com" in content_security_policy(settings)


def test_the_stripe_stand_in_keeps_the_test_cards_even_with_a_publishable_key() -> None:
    settings = _settings(stripe_publishable_key="pk_test_123", stripe_api_base="http://127.0.0.1:9999")
    doc = parse(_order_page(_order("created", 120), settings))
    assert doc.find(id="card-element") is None
    assert len(doc.find_all("button", name="token")) == 2
    assert "stripe.com" not in content_security_policy(settings)


@pytest.mark.parametrize(
    ("status", "expires_in", "label"),
    [("complete", 60, "Paid"), ("cancelled", -1, "Order expired"), ("cancelled", 60, "Order cancelled")],
)
def test_finished_orders_show_their_outcome_and_no_payment_form(status: str, expires_in: float, label: str) -> None:
    doc = parse(_order_page(_order(status, expires_in)))
    assert doc.find(id="order-status").text == label  # type: ignore[union-attr]
    assert doc.find("form", class_="pay-form") is None
    assert doc.find(id="countdown") is None
    panel = doc.find(id="order-panel")
    assert panel is not None
    assert panel.attrs["data-final"] == "true"


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("home.html", {"tickets": [_ticket()], "next_cursor": "c", "first_page": False}),
        ("auth.html", {"mode": "signup", "next_url": "/", "email": ""}),
        ("auth.html", {"mode": "signin", "next_url": "/", "email": "", "field_errors": {"password": "Required"}}),
        ("signout.html", {}),
        ("ticket.html", {"ticket": _ticket(), "is_owner": False, "reserved": False, "signed_in": True}),
        ("ticket_form.html", {"ticket": None, "reserved": False, "values": {"title": "", "price": ""}}),
        ("orders.html", {"orders": []}),
        ("error.html", {"heading": "Page not found", "messages": ["Not Found"]}),
    ],
)
def test_every_page_template_is_accessible(name: str, context: dict[str, Any]) -> None:
    assert accessibility_problems(_render(name, **context)) == []


def test_order_pages_are_accessible_in_both_payment_modes() -> None:
    assert accessibility_problems(_order_page(_order("created", 120))) == []
    stripe = _settings(stripe_publishable_key="pk_test_123")
    problems = accessibility_problems(_order_page(_order("created", 120), stripe))
    assert problems == [f"external resource {STRIPE_JS}"]  # the one allowed external script, in real Stripe mode
