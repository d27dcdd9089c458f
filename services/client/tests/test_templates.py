"""The templates rendered with given data: escaping, order states, payment modes, the edit lock, accessibility."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from client_testing import accessibility_problems, parse

from ticketing_client.config import Settings
from ticketing_client.presenters import entrant_hash, format_remaining, order_view, place_view
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


# -- events and the waiting room ----------------------------------------------------------------------------------


def _event(**overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": "Jazz night",
        "venue": "Blue Hall",
        "startsAt": "2030-06-01T20:00:00Z",
        "onSaleAt": "2030-05-01T10:00:00Z",
        "maxPerBuyer": 4,
        "waitingRoom": True,
        "userId": str(uuid.uuid4()),
        "version": 0,
        "tickets": {"available": 2, "reserved": 1},
        **overrides,
    }


def _event_page(event: dict[str, Any], *, offer: str, place: Any = None, **extra: Any) -> str:
    context: dict[str, Any] = {
        "user": USER,
        "signed_in": True,
        "event": event,
        "counts": event["tickets"],
        "tickets": [_ticket(eventId=event["id"]), _ticket(eventId=event["id"], title="Balcony")],
        "next_url": None,
        "first_url": None,
        "is_owner": offer == "owner",
        "offer": offer,
        "can_buy": offer in ("buy", "admitted"),
        "on_sale": True,
        "place": place,
        "listed": None,
        "listing": {"count": "", "price": "", "title": ""},
        **extra,
    }
    return _render("event.html", **context)


def _place(state: str, **overrides: Any) -> Any:
    now = datetime.now(UTC)
    until = (now + timedelta(minutes=10)).isoformat() if state != "expired" else now.isoformat()
    return place_view(
        {
            "state": state,
            "position": None if state == "waiting" else 7,
            "ahead": None,
            "estimatedWaitSeconds": None,
            "admittedUntil": None if state == "waiting" else until,
            **overrides,
        },
        now=now,
    )


def _queue_page(place: Any, *, draw: dict[str, Any] | None = None, **extra: Any) -> str:
    event = extra.pop("event", None) or _event()
    mine = entrant_hash(USER["id"])
    entrants = (draw or {}).get("entrants")
    return _render(
        "queue.html",
        user=USER,
        signed_in=True,
        event=event,
        place=place,
        draw=draw,
        entrant_count=len(entrants) if entrants else None,
        my_hash=mine,
        in_draw=bool(entrants and mine in entrants),
        status_url=f"/events/{event['id']}/queue/status",
        panel_url=f"/events/{event['id']}/queue/panel",
        event_url=f"/events/{event['id']}",
        poll_ms=1000,
        **extra,
    )


COMMITMENT = "c" * 64
SEED = "5" * 64


def test_event_names_venues_and_ticket_titles_are_escaped_on_the_events_pages() -> None:
    event = _event(name=SCRIPT_TITLE, venue=SCRIPT_TITLE)
    pages = [
        _render("events.html", q=SCRIPT_TITLE, events=[event], next_url=None, first_url=None),
        _event_page(event, offer="admitted", place=_place("admitted"), tickets=[_ticket(title=SCRIPT_TITLE)]),
        _queue_page(_place("waiting"), event=event),
        _render(
            "event_form.html",
            values={**dict.fromkeys(("name", "venue", "startsAt", "onSaleAt"), SCRIPT_TITLE), "maxPerBuyer": "4"},
        ),
    ]
    for html in pages:
        assert SCRIPT_TITLE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_events_list_shows_each_event_with_its_venue_date_and_waiting_room_and_pages_on() -> None:
    events = [_event(), _event(name="Open air", waitingRoom=False)]
    doc = parse(
        _render("events.html", q="air", events=events, next_url="/events?q=air&cursor=abc", first_url="/events?q=air")
    )
    cards = doc.find_all("li", class_="card")
    assert [c.text for c in cards] == [
        "Jazz night Blue Hall, Sat 1 Jun 2030, 20:00 UTC Waiting room",
        "Open air Blue Hall, Sat 1 Jun 2030, 20:00 UTC",
    ]
    assert cards[0].find("a").attrs["href"] == f"/events/{events[0]['id']}"  # type: ignore[union-attr]
    assert cards[0].find("time").attrs["datetime"] == "2030-06-01T20:00:00Z"  # type: ignore[union-attr]
    assert doc.find("input", name="q").attrs["value"] == "air"  # type: ignore[union-attr]
    assert doc.find("a", rel="next").attrs["href"] == "/events?q=air&cursor=abc"  # type: ignore[union-attr]
    assert doc.find("a", href="/events?q=air").text == "First page"  # type: ignore[union-attr]


def test_a_search_that_finds_nothing_says_so() -> None:
    doc = parse(_render("events.html", q="nothing", events=[], next_url=None, first_url=None))
    assert "No upcoming event matches “nothing”" in doc.find("p", class_="empty").text  # type: ignore[union-attr]


def test_the_event_page_shows_when_where_the_sale_and_the_ticket_counts() -> None:
    doc = parse(_event_page(_event(), offer="join"))
    summary = doc.find("dl")
    assert summary is not None
    assert "Sat 1 Jun 2030, 20:00 UTC" in summary.text
    assert doc.find(id="on-sale").text == "Since Wed 1 May 2030, 10:00 UTC , through a waiting room"  # type: ignore[union-attr]
    assert doc.find(id="ticket-counts").text == "2 available, 1 reserved"  # type: ignore[union-attr]
    assert "At most 4 tickets" in summary.text


def test_a_waiting_room_event_offers_joining_and_no_buy_button_until_admitted() -> None:
    event = _event()
    joining = parse(_event_page(event, offer="join"))
    join = joining.find("form", action=f"/events/{event['id']}/queue")
    assert join is not None
    assert join.attrs["method"] == "post"
    assert join.text == "Join the waiting room"
    assert joining.find("form", action=f"/events/{event['id']}/purchase") is None
    waiting = parse(_event_page(event, offer="waiting", place=_place("waiting")))
    assert waiting.find("a", href=f"/events/{event['id']}/queue").text == "Go to the waiting room"  # type: ignore[union-attr]
    assert waiting.find("form", action=f"/events/{event['id']}/purchase") is None
    expired = parse(_event_page(event, offer="expired", place=_place("expired")))
    assert "Your time to buy from the waiting room has ended." in expired.text
    assert expired.find("form", action=f"/events/{event['id']}/purchase") is None


def test_an_admitted_buyer_gets_a_buy_button_per_ticket_naming_it() -> None:
    event = _event()
    doc = parse(_event_page(event, offer="admitted", place=_place("admitted")))
    assert "It is your turn: you may buy until" in doc.find(id="admitted-message").text  # type: ignore[union-attr]
    forms = doc.find_all("form", action=f"/events/{event['id']}/purchase")
    assert len(forms) == 2
    assert forms[1].find("button").text == "Buy Balcony, $19.90"  # type: ignore[union-attr]
    assert forms[1].find("input", name="ticketId").attrs["type"] == "hidden"  # type: ignore[union-attr]


def test_the_owner_gets_the_listing_form_with_its_errors_and_no_buy_button() -> None:
    event = _event(userId=USER["id"])
    html = _event_page(
        event,
        offer="owner",
        listing={"count": "0", "price": "5", "title": ""},
        field_errors={"count": "Count must be a whole number from 1 to 5000"},
    )
    doc = parse(html)
    form = doc.find("form", action=f"/events/{event['id']}/tickets")
    assert form is not None
    assert [i.attrs["name"] for i in form.find_all("input")] == ["count", "price", "title"]
    count = form.find("input", name="count")
    assert count.attrs["aria-invalid"] == "true"  # type: ignore[union-attr]
    assert doc.find(id="count-error").text == "Error: Count must be a whole number from 1 to 5000"  # type: ignore[union-attr]
    assert doc.find("form", action=f"/events/{event['id']}/purchase") is None
    assert accessibility_problems(html) == []


def test_the_event_form_sends_the_time_zone_offsets_beside_the_times_and_says_utc_without_the_script() -> None:
    values = {"name": "", "venue": "", "startsAt": "2030-06-01T20:00", "onSaleAt": "", "maxPerBuyer": "4"}
    doc = parse(_render("event_form.html", values=values))
    starts = doc.find("input", name="startsAt")
    assert starts is not None
    assert (starts.attrs["type"], starts.attrs["step"], starts.attrs["value"]) == (
        "datetime-local",
        "1",
        "2030-06-01T20:00",
    )
    assert starts.attrs["aria-describedby"] == "zone-hint"
    assert doc.find(id="zone-hint").text == "Times are in UTC."  # type: ignore[union-attr]
    offsets = {i.attrs["name"]: i.attrs["data-offset-for"] for i in doc.find_all("input", type="hidden")}
    assert offsets == {"startsAtOffset": "startsAt", "onSaleAtOffset": "onSaleAt"}
    assert doc.find("input", name="maxPerBuyer").attrs["value"] == "4"  # type: ignore[union-attr]


def test_the_waiting_room_before_the_draw_shows_the_commitment_and_polls() -> None:
    place = _place("waiting")
    doc = parse(_queue_page(place, draw={"commitment": COMMITMENT, "seed": None, "entrants": None}))
    panel = doc.find(id="queue-panel")
    assert panel is not None
    assert (panel.attrs["data-state"], panel.attrs["data-key"], panel.attrs["data-polling"]) == (
        "waiting",
        "waiting:draw",
        "true",
    )
    assert panel.attrs["data-poll-ms"] == "1000"
    assert doc.find(id="queue-status").text == "Waiting for the draw"  # type: ignore[union-attr]
    assert doc.find(id="draw-commitment").text == COMMITMENT  # type: ignore[union-attr]
    assert doc.find(id="draw-seed") is None
    refresh = doc.find("meta", http_equiv="refresh")
    assert refresh is not None
    assert refresh.attrs["content"].endswith("/queue?waiting=1")
    assert refresh.parent is not None
    assert refresh.parent.tag == "noscript"
    assert [s.attrs["src"] for s in doc.find_all("script")] == [
        "/static/live-panel.js",
        "/static/queue.js",
        "/static/local-times.js",
    ]


def test_the_waiting_room_after_the_draw_shows_the_place_ahead_wait_and_the_revealed_seed() -> None:
    place = _place("waiting", position=120, ahead=100, estimatedWaitSeconds=2)
    entrants = sorted([entrant_hash(USER["id"]), "0" * 64])
    doc = parse(_queue_page(place, draw={"commitment": COMMITMENT, "seed": SEED, "entrants": entrants}))
    assert doc.find(id="queue-status").text == "Waiting in line"  # type: ignore[union-attr]
    assert (doc.find(id="queue-position").text, doc.find(id="queue-ahead").text, doc.find(id="queue-wait").text) == (  # type: ignore[union-attr]
        "120",
        "100",
        "less than a minute",
    )
    assert doc.find(id="draw-seed").text == SEED  # type: ignore[union-attr]
    assert (
        f"2 buyers took part. Your entry, SHA-256 of your user id, is {entrant_hash(USER['id'])} : it is in the list."
        in doc.text
    )
    assert doc.find("a", href="/waiting-room#check") is not None


def test_an_admitted_buyer_is_sent_to_buy_and_an_expired_one_is_told_and_no_longer_polls() -> None:
    event = _event()
    admitted = parse(_queue_page(_place("admitted"), event=event))
    assert admitted.find(id="queue-status").text == "Admitted"  # type: ignore[union-attr]
    assert admitted.find("a", href=f"/events/{event['id']}").text in ("Jazz night", "Buy tickets")  # type: ignore[union-attr]
    assert any(a.text == "Buy tickets" for a in admitted.find_all("a", href=f"/events/{event['id']}"))
    assert admitted.find("meta", http_equiv="refresh") is None
    expired = parse(_queue_page(_place("expired"), event=event))
    assert expired.find(id="queue-status").text == "Admission expired"  # type: ignore[union-attr]
    assert expired.find(id="queue-panel").attrs["data-polling"] == "false"  # type: ignore[union-attr]
    assert "Your time to buy ended" in expired.text


def test_an_event_without_a_waiting_room_sends_the_visitor_to_its_page_instead() -> None:
    event = _event(waitingRoom=False)
    doc = parse(_queue_page(None, event=event))
    assert doc.find("form", action=f"/events/{event['id']}/queue") is None
    assert "This event has no waiting room" in doc.text


def test_a_visitor_who_has_not_joined_gets_the_join_button_on_the_waiting_room_page() -> None:
    event = _event()
    doc = parse(_queue_page(None, event=event, draw={"commitment": COMMITMENT, "seed": None, "entrants": None}))
    assert doc.find("form", action=f"/events/{event['id']}/queue").text == "Join the waiting room"  # type: ignore[union-attr]
    assert doc.find(id="queue-panel").attrs["data-polling"] == "false"  # type: ignore[union-attr]


def test_a_ticket_of_an_event_links_to_its_event() -> None:
    event_id = str(uuid.uuid4())
    doc = parse(_render("ticket.html", ticket=_ticket(eventId=event_id), is_owner=False, reserved=False))
    assert doc.find("a", href=f"/events/{event_id}").text == "See the event"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("events.html", {"q": "", "events": [_event()], "next_url": "/events?cursor=c", "first_url": None}),
        (
            "events.html",
            {"q": "x" * 300, "events": [], "next_url": None, "first_url": None, "field_errors": {"q": "Too long"}},
        ),
        ("event_form.html", {"values": dict.fromkeys(("name", "venue", "startsAt", "onSaleAt", "maxPerBuyer"), "")}),
        ("waiting_room.html", {}),
    ],
)
def test_every_events_page_template_is_accessible(name: str, context: dict[str, Any]) -> None:
    assert accessibility_problems(_render(name, **context)) == []


@pytest.mark.parametrize("offer", ["join", "waiting", "admitted", "expired", "buy", "not-on-sale", "sign-in"])
def test_the_event_page_is_accessible_whatever_it_offers(offer: str) -> None:
    place = _place(offer) if offer in ("waiting", "admitted", "expired") else None
    assert accessibility_problems(_event_page(_event(), offer=offer, place=place)) == []


@pytest.mark.parametrize("state", [None, "waiting", "admitted", "expired"])
def test_the_waiting_room_page_is_accessible_in_every_state(state: str | None) -> None:
    place = _place(state) if state else None
    draw = {"commitment": COMMITMENT, "seed": SEED, "entrants": [entrant_hash(USER["id"])]}
    assert accessibility_problems(_queue_page(place, draw=draw)) == []
