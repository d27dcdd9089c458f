"""Every page, through the gateway, against the whole system as ``make up`` runs it (no JavaScript: what a
browser without it, or a crawler, gets). The flows with a real browser are in ``test_browser``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from client_testing import (
    EVENTS_PER_PAGE,
    ORDER_EXPIRATION_SECONDS,
    PASSWORD,
    TICKETS_PER_PAGE,
    Element,
    System,
    Visitor,
    accessibility_problems,
    parse,
)

pytestmark = pytest.mark.e2e

Visitors = Callable[[], Visitor]
SCRIPT_TITLE = "<script>alert(1)</script>"


def _doc(response: httpx.Response) -> Element:
    assert response.headers["content-type"].startswith("text/html"), response.text
    return parse(response.text)


def _nav_links(doc: Element) -> list[str]:
    nav = doc.find("nav")
    assert nav is not None
    return [a.text for a in nav.find_all("a")] + [b.text for b in nav.find_all("button")]


def _field_error(doc: Element, name: str) -> str | None:
    error = doc.find(id=f"{name}-error")
    return error.text.removeprefix("Error: ") if error else None


def _alert(doc: Element) -> str:
    alert = doc.find(role="alert")
    return alert.text if alert else ""


def _title(suffix: str = "") -> str:
    return f"Show {uuid.uuid4().hex[:8]}{suffix}"


def _wait(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _listed(visitor: Visitor) -> list[tuple[str, str]]:
    """Every ticket on the home page (its link and title), following "Next page" to the end."""
    tickets: list[tuple[str, str]] = []
    path: str | None = "/"
    while path:
        doc = _doc(visitor.get(path))
        tickets += [
            (link.attrs["href"], link.find("span", class_="card__title").text)  # type: ignore[union-attr]
            for link in doc.find_all("a", class_="card__link")
        ]
        link = doc.find("a", rel="next")
        path = link.attrs["href"] if link else None
    return tickets


def _listed_titles(visitor: Visitor) -> list[str]:
    """Every title on the home page, following "Next page" to the end."""
    return [title for _, title in _listed(visitor)]


# -- the gateway serves the client ---------------------------------------------------------------------------------


def test_the_gateway_serves_the_client_at_the_root_and_reports_it_ready(system: System) -> None:
    home = httpx.get(system.url + "/", headers={"Accept": "text/html"})
    assert home.status_code == 200
    assert _doc(home).find("h1").text == "Tickets for sale"  # type: ignore[union-attr]
    health = httpx.get(system.url + "/healthz").json()
    assert health["services"]["client"] is True
    assert httpx.get(system.client_url + "/readyz").json() == {"status": "ready"}


def test_api_paths_no_service_owns_still_answer_the_shared_json_404(system: System) -> None:
    response = httpx.get(system.url + "/api/nowhere", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


def test_the_stylesheet_and_scripts_come_from_the_client_itself(system: System) -> None:
    for path in (
        "/static/app.css",
        "/static/live-panel.js",
        "/static/order.js",
        "/static/queue.js",
        "/static/local-times.js",
    ):
        assert httpx.get(system.url + path).status_code == 200


# -- signing up, in and out -----------------------------------------------------------------------------------------


def test_signing_up_sets_the_session_cookie_and_the_header_switches_to_the_signed_in_links(visitors: Visitors) -> None:
    visitor = visitors()
    assert _nav_links(_doc(visitor.get("/"))) == ["Events", "Sign up", "Sign in"]
    response = visitor.sign_up()
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("session=")
    assert "httponly" in cookie.lower()
    home = _doc(visitor.get("/"))
    assert _nav_links(home) == ["Events", "New event", "Sell a ticket", "My orders", "Sign out"]
    assert visitor.email in home.text


def test_one_visitors_session_never_reaches_another(visitors: Visitors) -> None:
    """The client's one pooled HTTP client serves everyone; it must not remember anybody's cookie."""
    first, second = visitors(), visitors()
    first.sign_up()
    _doc(first.get("/"))
    page = _doc(second.get("/"))
    assert _nav_links(page) == ["Events", "Sign up", "Sign in"]
    assert first.email not in page.text


def test_sign_up_shows_the_apis_field_errors_next_to_their_fields(visitors: Visitors) -> None:
    response = visitors().post("/signup", {"email": "not-an-email", "password": "short", "next": "/"})
    assert response.status_code == 400
    doc = _doc(response)
    assert _field_error(doc, "email") == "Email must be valid"
    assert _field_error(doc, "password") == "Password must be between 8 and 128 characters"
    assert doc.find("input", name="email").attrs["value"] == "not-an-email"  # type: ignore[union-attr]
    assert doc.find("input", name="password").attrs["value"] == ""  # type: ignore[union-attr]
    assert "short" not in response.text
    assert "set-cookie" not in response.headers


def test_sign_up_with_an_email_in_use_says_so(visitors: Visitors) -> None:
    first = visitors()
    first.sign_up()
    response = visitors().post("/signup", {"email": first.email or "", "password": PASSWORD})
    assert response.status_code == 400
    doc = _doc(response)
    assert "Email in use" in (_field_error(doc, "email") or _alert(doc))


def test_sign_in_with_a_wrong_password_shows_invalid_credentials_above_the_form(visitors: Visitors) -> None:
    account = visitors()
    account.sign_up()
    response = visitors().post("/signin", {"email": account.email or "", "password": "wrong password"})
    assert response.status_code == 400
    assert _alert(_doc(response)) == "Invalid credentials"


def test_sign_in_returns_to_the_page_that_asked_for_it_and_never_off_site(visitors: Visitors) -> None:
    account = visitors()
    account.sign_up()
    visitor = visitors()
    asked = visitor.get("/tickets/new")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/signin?next=/tickets/new"
    form = _doc(visitor.get(asked.headers["location"]))
    assert form.find("input", name="next").attrs["value"] == "/tickets/new"  # type: ignore[union-attr]
    signed_in = visitor.post("/signin", {"email": account.email or "", "password": PASSWORD, "next": "/tickets/new"})
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/tickets/new"
    assert visitor.get("/tickets/new").status_code == 200
    elsewhere = visitors().post(
        "/signin", {"email": account.email or "", "password": PASSWORD, "next": "//evil.example"}
    )
    assert elsewhere.headers["location"] == "/"


def test_a_cross_site_post_is_refused_even_when_it_names_its_own_site_as_the_forwarded_host(
    visitors: Visitors,
) -> None:
    visitor = visitors()
    visitor.sign_up()
    forged = {"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    response = visitor.http.post("/signout", headers=forged)
    assert response.status_code == 403
    assert visitor.get("/orders").status_code == 200  # still signed in


def test_a_post_without_origin_is_accepted_with_a_referer_from_this_site(visitors: Visitors) -> None:
    visitor = visitors()
    visitor.sign_up()
    response = visitor.http.post("/signout", headers={"Referer": str(visitor.http.base_url).rstrip("/") + "/signout"})
    assert response.status_code == 303
    assert visitor.get("/orders").headers["location"] == "/signin?next=/orders"


def test_signing_out_clears_the_cookie(visitors: Visitors) -> None:
    visitor = visitors()
    visitor.sign_up()
    assert _doc(visitor.get("/signout")).find("h1").text == "Sign out"  # type: ignore[union-attr]
    response = visitor.post("/signout")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert response.headers["set-cookie"].startswith("session=")
    assert _nav_links(_doc(visitor.get("/"))) == ["Events", "Sign up", "Sign in"]


# -- selling and editing --------------------------------------------------------------------------------------------


def test_selling_a_ticket_shows_its_page_with_the_price_to_two_decimals(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    title = _title()
    ticket_id = seller.sell(title, "25.5")
    doc = _doc(seller.get(f"/tickets/{ticket_id}"))
    assert doc.find("h1").text == title  # type: ignore[union-attr]
    assert "$25.50" in doc.find("p", class_="ticket__price").text  # type: ignore[union-attr]
    assert title in _listed_titles(seller)


def test_the_home_page_pages_through_every_ticket_for_sale_newest_first(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    titles = [_title(f" #{n}") for n in range(TICKETS_PER_PAGE + 1)]
    for title in titles:
        seller.sell(title, "5")
    first = _doc(seller.get("/"))
    cards = [span.text for span in first.find_all("span", class_="card__title")]
    assert cards == list(reversed(titles))[:TICKETS_PER_PAGE]  # nothing was sold since: these are the newest
    next_link = first.find("a", rel="next")
    assert next_link is not None
    assert "First page" not in first.text
    second = _doc(seller.get(next_link.attrs["href"]))
    assert second.find_all("span", class_="card__title")[0].text == titles[0]
    assert second.find("a", href="/") is not None
    assert "First page" in second.text
    listed = _listed(seller)
    links = [link for link, _ in listed]
    assert len(links) == len(set(links))  # no ticket twice across pages (titles may repeat: an event's tickets)
    assert set(titles) <= {title for _, title in listed}


def test_the_sell_form_shows_title_and_price_errors_next_to_their_fields(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    response = seller.post("/tickets/new", {"title": "  ", "price": "-3"})
    assert response.status_code == 400
    doc = _doc(response)
    assert _field_error(doc, "title") == "Title is required"
    assert _field_error(doc, "price") == "Price must be greater than 0"
    assert doc.find("input", name="price").attrs["value"] == "-3"  # type: ignore[union-attr]


def test_titles_are_shown_escaped_never_run(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    ticket_id = seller.sell(SCRIPT_TITLE, "1")
    for path in (f"/tickets/{ticket_id}", f"/tickets/{ticket_id}/edit", "/"):
        html = seller.get(path).text
        assert SCRIPT_TITLE not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in seller.get(f"/tickets/{ticket_id}").text


def test_a_ticket_page_offers_purchase_to_buyers_edit_to_its_owner_and_sign_in_to_visitors(visitors: Visitors) -> None:
    seller, buyer, anonymous = visitors(), visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    ticket_id = seller.sell(_title(), "10")
    buyer_view = _doc(buyer.get(f"/tickets/{ticket_id}"))
    assert [b.text for b in buyer_view.find_all("main")[0].find_all("button")] == ["Purchase"]
    owner_view = _doc(seller.get(f"/tickets/{ticket_id}"))
    assert owner_view.find("a", href=f"/tickets/{ticket_id}/edit") is not None
    assert "Purchase" not in owner_view.find("main").text  # type: ignore[union-attr]
    visitor_view = _doc(anonymous.get(f"/tickets/{ticket_id}"))
    assert visitor_view.find("a", href=f"/signin?next=/tickets/{ticket_id}") is not None
    assert "Purchase" not in visitor_view.find("main").text  # type: ignore[union-attr]


def test_the_owner_edits_the_ticket(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    ticket_id = seller.sell(_title(), "10")
    form = _doc(seller.get(f"/tickets/{ticket_id}/edit"))
    assert form.find("input", name="price").attrs["value"] == "10.00"  # type: ignore[union-attr]
    version = form.find("input", name="version").attrs["value"]  # type: ignore[union-attr]
    response = seller.post(f"/tickets/{ticket_id}/edit", {"title": "Renamed show", "price": "12.3", "version": version})
    assert response.status_code == 303, response.text
    page = _doc(seller.get(f"/tickets/{ticket_id}"))
    assert page.find("h1").text == "Renamed show"  # type: ignore[union-attr]
    assert "$12.30" in page.text


def test_a_stale_edit_form_does_not_overwrite_a_newer_change(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    ticket_id = seller.sell(_title(), "10")
    stale = seller.post(f"/tickets/{ticket_id}/edit", {"title": "First change", "price": "11", "version": "0"})
    assert stale.status_code == 303
    response = seller.post(f"/tickets/{ticket_id}/edit", {"title": "Second change", "price": "12", "version": "0"})
    assert response.status_code >= 400
    assert _alert(_doc(response))
    assert _doc(seller.get(f"/tickets/{ticket_id}")).find("h1").text == "First change"  # type: ignore[union-attr]


def test_only_the_owner_can_open_the_edit_form(visitors: Visitors) -> None:
    seller, other = visitors(), visitors()
    seller.sign_up()
    other.sign_up()
    ticket_id = seller.sell(_title(), "10")
    response = other.get(f"/tickets/{ticket_id}/edit")
    assert response.status_code == 403
    assert "You can only edit your own tickets" in _alert(_doc(response))


def test_unknown_tickets_and_orders_are_a_404_page(visitors: Visitors) -> None:
    visitor = visitors()
    visitor.sign_up()
    for path in (f"/tickets/{uuid.uuid4()}", f"/orders/{uuid.uuid4()}", "/tickets/not-an-id"):
        response = visitor.get(path)
        assert response.status_code == 404, path
        assert _doc(response).find("h1").text == "Page not found"  # type: ignore[union-attr]


# -- buying -------------------------------------------------------------------------------------------------------


def test_purchase_leads_to_the_order_page_with_a_countdown_and_the_test_cards(visitors: Visitors) -> None:
    seller, buyer = visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    ticket_id = seller.sell(_title(), "19.99")
    order_id = buyer.purchase(ticket_id)
    doc = _doc(buyer.get(f"/orders/{order_id}"))
    assert doc.find(id="order-status").text == "Awaiting payment"  # type: ignore[union-attr]
    countdown = doc.find(id="countdown")
    assert countdown is not None
    assert 0 < int(countdown.attrs["data-remaining-ms"]) <= ORDER_EXPIRATION_SECONDS * 1000
    cards = {b.text: b.attrs["value"] for b in doc.find_all("button", name="token")}
    assert cards == {"Pay with test card (succeeds)": "tok_visa", "Pay with test card (declined)": "tok_chargeDeclined"}
    assert "$19.99" in doc.find("dl").text  # type: ignore[union-attr]


def test_the_owner_of_a_reserved_ticket_cannot_edit_it_and_is_told_why(visitors: Visitors) -> None:
    seller, buyer = visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    ticket_id = seller.sell(_title(), "10")
    buyer.purchase(ticket_id)

    def locked() -> bool:
        return "This ticket is reserved and cannot be edited" in seller.get(f"/tickets/{ticket_id}").text

    _wait(locked)  # the order reaches the tickets service as an event
    page = _doc(seller.get(f"/tickets/{ticket_id}"))
    edit = next(b for b in page.find_all("button") if b.text == "Edit")
    assert "disabled" in edit.attrs
    form = _doc(seller.get(f"/tickets/{ticket_id}/edit"))
    assert "disabled" in form.find("fieldset").attrs  # type: ignore[union-attr]
    forced = seller.post(f"/tickets/{ticket_id}/edit", {"title": "Changed", "price": "11"})
    assert forced.status_code == 400
    assert _alert(_doc(forced)) == "Cannot edit a reserved ticket"


def test_buying_a_ticket_nobody_sells_is_a_404_page(visitors: Visitors) -> None:
    buyer = visitors()
    buyer.sign_up()
    response = buyer.post(f"/tickets/{uuid.uuid4()}/purchase")
    assert response.status_code == 404
    assert _doc(response).find("h1").text == "Page not found"  # type: ignore[union-attr]


def test_buying_your_own_ticket_shows_the_apis_reason(visitors: Visitors) -> None:
    seller = visitors()
    seller.sign_up()
    ticket_id = seller.sell(_title(), "10")
    response = seller.post(f"/tickets/{ticket_id}/purchase")
    assert response.status_code == 400
    assert _alert(_doc(response)) == "You cannot buy your own ticket"


def test_a_reserved_ticket_cannot_be_bought_twice(visitors: Visitors) -> None:
    seller, first, second = visitors(), visitors(), visitors()
    for visitor in (seller, first, second):
        visitor.sign_up()
    ticket_id = seller.sell(_title(), "10")
    first.purchase(ticket_id)
    response = second.post(f"/tickets/{ticket_id}/purchase")
    assert response.status_code == 400
    assert _alert(_doc(response)) == "Ticket is already reserved"


def test_paying_with_the_succeeding_card_shows_paid(visitors: Visitors) -> None:
    seller, buyer = visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    order_id = buyer.purchase(seller.sell(_title(), "19.99"))
    response = buyer.post(f"/orders/{order_id}/pay", {"token": "tok_visa"})
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"/orders/{order_id}")
    _wait(lambda: _doc(buyer.get(f"/orders/{order_id}")).find(id="order-status").text == "Paid")  # type: ignore[union-attr]
    doc = _doc(buyer.get(f"/orders/{order_id}"))
    assert doc.find("form", class_="pay-form") is None
    assert doc.find(id="countdown") is None


def test_a_declined_card_shows_the_error_and_the_order_stays_payable(visitors: Visitors) -> None:
    seller, buyer = visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    order_id = buyer.purchase(seller.sell(_title(), "5"))
    response = buyer.post(f"/orders/{order_id}/pay", {"token": "tok_chargeDeclined"})
    assert response.status_code == 402
    doc = _doc(response)
    assert _alert(doc) == "Your card was declined."
    assert doc.find(id="order-status").text == "Awaiting payment"  # type: ignore[union-attr]
    assert len(doc.find_all("button", name="token")) == 2
    assert buyer.post(f"/orders/{order_id}/pay", {"token": "tok_visa"}).status_code == 303


def test_cancelling_an_order_shows_order_cancelled_and_frees_the_ticket(visitors: Visitors) -> None:
    seller, buyer = visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    title = _title()
    ticket_id = seller.sell(title, "7")
    order_id = buyer.purchase(ticket_id)
    response = buyer.post(f"/orders/{order_id}/cancel")
    assert response.status_code == 303
    assert _doc(buyer.get(f"/orders/{order_id}")).find(id="order-status").text == "Order cancelled"  # type: ignore[union-attr]
    _wait(lambda: "Purchase" in buyer.get(f"/tickets/{ticket_id}").text)


def test_my_orders_lists_each_order_with_its_status_and_ticket(visitors: Visitors) -> None:
    seller, buyer = visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    paid_title, open_title = _title(" paid"), _title(" open")
    paid = buyer.purchase(seller.sell(paid_title, "3"))
    buyer.post(f"/orders/{paid}/pay", {"token": "tok_visa"})
    buyer.purchase(seller.sell(open_title, "4"))

    def listed() -> dict[str, str]:
        doc = _doc(buyer.get("/orders"))
        return {
            card.find("span", class_="card__title").text: card.find("span", class_="badge").text  # type: ignore[union-attr]
            for card in doc.find_all("li", class_="card")
        }

    _wait(lambda: listed().get(paid_title) == "Paid")
    assert listed() == {paid_title: "Paid", open_title: "Awaiting payment"}
    assert "$3.00" in buyer.get("/orders").text


def test_the_order_status_for_the_pages_script_is_json_and_private(visitors: Visitors) -> None:
    seller, buyer, stranger = visitors(), visitors(), visitors()
    for visitor in (seller, buyer, stranger):
        visitor.sign_up()
    order_id = buyer.purchase(seller.sell(_title(), "8"))
    status = buyer.get(f"/orders/{order_id}/status").json()
    assert status["id"] == order_id
    assert (status["status"], status["state"], status["label"]) == ("created", "pending", "Awaiting payment")
    assert 0 < status["remainingSeconds"] <= ORDER_EXPIRATION_SECONDS
    assert stranger.get(f"/orders/{order_id}/status").status_code == 404
    panel = _doc(buyer.get(f"/orders/{order_id}/panel")).find(id="order-panel")
    assert panel is not None
    assert panel.attrs["data-state"] == "pending"


# -- every page -----------------------------------------------------------------------------------------------------


def test_every_page_has_a_language_one_h1_landmarks_and_a_label_for_every_input(visitors: Visitors) -> None:
    seller, buyer, anonymous = visitors(), visitors(), visitors()
    seller.sign_up()
    buyer.sign_up()
    ticket_id = seller.sell(_title(), "9.5")
    order_id = buyer.purchase(seller.sell(_title(), "9.5"))
    event_id = seller.create_event(_title(), on_sale_in=timedelta(days=1))
    seller.list_tickets(event_id, 2, "9.5")
    joined = visitors()
    joined.sign_up()
    assert joined.post(f"/events/{event_id}/queue").status_code == 303
    pages = {
        "home (signed out)": anonymous.get("/"),
        "sign up": anonymous.get("/signup"),
        "sign in": anonymous.get("/signin"),
        "sign up with errors": anonymous.post("/signup", {"email": "x", "password": "y"}),
        "home (signed in)": buyer.get("/"),
        "sign out": buyer.get("/signout"),
        "sell": seller.get("/tickets/new"),
        "sell with errors": seller.post("/tickets/new", {"title": "", "price": ""}),
        "ticket (buyer)": buyer.get(f"/tickets/{ticket_id}"),
        "ticket (owner)": seller.get(f"/tickets/{ticket_id}"),
        "edit": seller.get(f"/tickets/{ticket_id}/edit"),
        "my orders": buyer.get("/orders"),
        "order": buyer.get(f"/orders/{order_id}"),
        "not found": buyer.get(f"/tickets/{uuid.uuid4()}"),
        "events": anonymous.get("/events"),
        "events search": anonymous.get("/events", params={"q": "show"}),
        "new event": seller.get("/events/new"),
        "new event with errors": seller.post("/events/new", {"name": "", "venue": "", "startsAt": ""}),
        "event (owner)": seller.get(f"/events/{event_id}"),
        "event (buyer, to join)": buyer.get(f"/events/{event_id}"),
        "event (signed out)": anonymous.get(f"/events/{event_id}"),
        "waiting room (not joined)": buyer.get(f"/events/{event_id}/queue"),
        "waiting room": joined.get(f"/events/{event_id}/queue"),
        "how the waiting room works": anonymous.get("/waiting-room"),
    }
    for name, response in pages.items():
        assert response.status_code < 500, name
        assert accessibility_problems(response.text) == [], name


# -- events ---------------------------------------------------------------------------------------------------------


def _event_titles(visitor: Visitor, path: str) -> tuple[list[str], Element]:
    doc = _doc(visitor.get(path))
    return [span.text for span in doc.find_all("span", class_="card__title")], doc


def _sale(doc: Element) -> str:
    section = doc.find("section", class_="sale")
    assert section is not None
    return section.text


def _counts(visitor: Visitor, event_id: str) -> str:
    return _doc(visitor.get(f"/events/{event_id}")).find(id="ticket-counts").text  # type: ignore[union-attr]


def _buy_buttons(doc: Element, event_id: str) -> list[str]:
    """The ids of the tickets the page offers "Buy" for."""
    return [
        form.find("input", name="ticketId").attrs["value"]  # type: ignore[union-attr]
        for form in doc.find_all("form", action=f"/events/{event_id}/purchase")
    ]


def test_creating_an_event_shows_its_page_and_it_is_listed_and_found_by_name_or_venue(visitors: Visitors) -> None:
    owner = visitors()
    owner.sign_up()
    word = uuid.uuid4().hex[:10]
    event_id = owner.create_event(f"Gala {word}", venue=f"Opera {word[::-1]}", max_per_buyer=2)
    doc = _doc(owner.get(f"/events/{event_id}"))
    assert doc.find("h1").text == f"Gala {word}"  # type: ignore[union-attr]
    summary = doc.find("dl").text  # type: ignore[union-attr]
    assert f"Venue Opera {word[::-1]}" in summary
    assert "At most 2 tickets" in summary
    assert doc.find(id="on-sale").text.startswith("Since ")  # type: ignore[union-attr]
    assert "waiting room" not in doc.find(id="on-sale").text  # type: ignore[union-attr]
    assert doc.find(id="ticket-counts").text == "0 available, 0 reserved"  # type: ignore[union-attr]
    assert "This is your event." in _sale(doc)
    assert _event_titles(owner, f"/events?q={word.upper()}")[0] == [f"Gala {word}"]  # any case
    assert _event_titles(owner, f"/events?q={word[::-1]}")[0] == [f"Gala {word}"]  # the venue
    found, empty = _event_titles(visitors(), f"/events?q=nothing-{word}")
    assert found == []
    assert f"No upcoming event matches “nothing-{word}”" in empty.text


def test_the_events_list_pages_through_the_matches_soonest_first(visitors: Visitors) -> None:
    owner = visitors()
    owner.sign_up()
    word = uuid.uuid4().hex[:10]
    names = [f"Tour {word} #{n}" for n in range(EVENTS_PER_PAGE + 1)]
    for days, name in reversed(list(enumerate(names, start=1))):  # created latest first: the list is by date
        owner.create_event(name, starts_in=timedelta(days=days))
    first, doc = _event_titles(owner, f"/events?q={word}")
    assert first == names[:EVENTS_PER_PAGE]
    assert "First page" not in doc.text
    next_link = doc.find("a", rel="next")
    assert next_link is not None
    assert next_link.attrs["href"].startswith(f"/events?q={word}&cursor=")
    second, doc = _event_titles(owner, next_link.attrs["href"])
    assert second == names[EVENTS_PER_PAGE:]
    assert doc.find("a", rel="next") is None
    assert doc.find("a", href=f"/events?q={word}").text == "First page"  # type: ignore[union-attr]


def test_the_events_list_is_linked_from_every_page_and_a_bad_search_is_told_at_the_search_box(
    visitors: Visitors,
) -> None:
    visitor = visitors()
    assert "Events" in _nav_links(_doc(visitor.get("/")))
    assert _doc(visitor.get("/")).find("a", href="/events") is not None
    response = visitor.get("/events", params={"q": "x" * 201})
    assert response.status_code == 400
    assert _field_error(_doc(response), "q") == "Search must be at most 200 characters"


def test_the_event_form_shows_the_apis_errors_next_to_their_fields(visitors: Visitors) -> None:
    owner = visitors()
    owner.sign_up()
    response = owner.post(
        "/events/new",
        {"name": " ", "venue": "", "startsAt": "2000-01-01T20:00", "onSaleAt": "whenever", "maxPerBuyer": "0"},
    )
    assert response.status_code == 400
    doc = _doc(response)
    assert _field_error(doc, "name") == "Name is required"
    assert _field_error(doc, "venue") == "Venue is required"
    assert _field_error(doc, "startsAt") == "Start time must be in the future"
    assert _field_error(doc, "onSaleAt") == "Sale start must be a date and time with a UTC offset (ISO 8601)"
    assert _field_error(doc, "maxPerBuyer") == "Max per buyer must be a whole number from 1 to 100"
    assert doc.find("input", name="startsAt").attrs["value"] == "2000-01-01T20:00"  # type: ignore[union-attr]
    assert doc.find("input", name="onSaleAt").attrs["value"] == "whenever"  # type: ignore[union-attr]


def test_a_time_is_read_in_the_time_zone_the_pages_script_names(visitors: Visitors) -> None:
    owner = visitors()
    owner.sign_up()
    year = datetime.now(UTC).year + 1
    response = owner.post(
        "/events/new",
        {"name": "Midsummer", "venue": "Park", "startsAt": f"{year}-06-21T22:30", "startsAtOffset": "+02:00"},
    )
    assert response.status_code == 303, response.text
    doc = _doc(owner.get(response.headers["location"]))
    starts = doc.find("time")
    assert starts is not None
    assert starts.attrs["datetime"] == f"{year}-06-21T20:30:00Z"
    assert starts.text.endswith("20:30 UTC")


def test_signed_out_visitors_are_asked_to_sign_in_to_create_or_buy(visitors: Visitors) -> None:
    owner, anonymous = visitors(), visitors()
    owner.sign_up()
    event_id = owner.create_event(_title())
    assert anonymous.get("/events/new").headers["location"] == "/signin?next=/events/new"
    doc = _doc(anonymous.get(f"/events/{event_id}"))
    assert doc.find("a", href=f"/signin?next=/events/{event_id}") is not None
    assert "New event" not in _nav_links(doc)
    assert anonymous.post(f"/events/{event_id}/queue").headers["location"] == f"/signin?next=/events/{event_id}"


def test_unknown_events_are_a_404_page(visitors: Visitors) -> None:
    visitor = visitors()
    visitor.sign_up()
    for path in (f"/events/{uuid.uuid4()}", f"/events/{uuid.uuid4()}/queue", "/events/not-an-id"):
        response = visitor.get(path)
        assert response.status_code == 404, path
        assert _doc(response).find("h1").text == "Page not found"  # type: ignore[union-attr]


def test_the_owner_lists_tickets_and_the_event_shows_them_with_the_count_and_more_pages(visitors: Visitors) -> None:
    owner, other = visitors(), visitors()
    owner.sign_up()
    other.sign_up()
    name = _title()
    event_id = owner.create_event(name)
    refused = owner.post(f"/events/{event_id}/tickets", {"count": "5001", "price": "0", "title": ""})
    assert refused.status_code == 400
    doc = _doc(refused)
    assert _field_error(doc, "count") == "Count must be a whole number from 1 to 5000"
    assert _field_error(doc, "price") == "Price must be greater than 0"
    assert doc.find("input", name="count").attrs["value"] == "5001"  # type: ignore[union-attr]
    owner.list_tickets(event_id, TICKETS_PER_PAGE + 1, "12.5")
    owner.list_tickets(event_id, 1, "99", title="Front row")
    page = _doc(owner.get(f"/events/{event_id}?listed={TICKETS_PER_PAGE + 1}"))
    assert page.find(role="status").text == f"{TICKETS_PER_PAGE + 1} tickets put on sale."  # type: ignore[union-attr]
    assert page.find(id="ticket-counts").text == f"{TICKETS_PER_PAGE + 2} available, 0 reserved"  # type: ignore[union-attr]
    titles = [span.text for span in page.find_all("span", class_="card__title")]
    assert titles[0] == "Front row"  # newest first
    assert titles[1:] == [name] * (TICKETS_PER_PAGE - 1)  # the title defaults to the event's name
    more = page.find("a", rel="next")
    assert more is not None
    rest = _doc(owner.get(more.attrs["href"]))
    assert len(rest.find_all("span", class_="card__title")) == 2
    not_owner = other.post(f"/events/{event_id}/tickets", {"count": "1", "price": "1"})
    assert not_owner.status_code == 403
    assert _doc(other.get(f"/events/{event_id}")).find("form", action=f"/events/{event_id}/tickets") is None


def test_without_a_waiting_room_a_buyer_buys_from_the_event_page_up_to_the_limit(visitors: Visitors) -> None:
    owner, buyer = visitors(), visitors()
    owner.sign_up()
    buyer.sign_up()
    event_id = owner.create_event(_title(), max_per_buyer=1)
    owner.list_tickets(event_id, 3, "20")
    doc = _doc(buyer.get(f"/events/{event_id}"))
    assert "Pick a ticket below." in _sale(doc)
    tickets = _buy_buttons(doc, event_id)
    assert len(tickets) == 3
    bought = buyer.post(f"/events/{event_id}/purchase", {"ticketId": tickets[0]})
    assert bought.status_code == 303, bought.text
    order = _doc(buyer.get(bought.headers["location"]))
    assert order.find(id="order-status").text == "Awaiting payment"  # type: ignore[union-attr]
    assert "$20.00" in order.find("dl").text  # type: ignore[union-attr]
    second = buyer.post(f"/events/{event_id}/purchase", {"ticketId": tickets[1]})
    assert second.status_code == 400
    assert _alert(_doc(second)) == "You may buy at most 1 ticket of this event"
    _wait(lambda: _counts(buyer, event_id) == "2 available, 1 reserved")  # the order reaches tickets as an event
    assert _doc(buyer.get(f"/tickets/{tickets[0]}")).find("a", href=f"/events/{event_id}") is not None


def test_a_waiting_room_admits_a_buyer_who_joined_before_the_sale_and_they_buy(visitors: Visitors) -> None:
    owner, buyer, latecomer = visitors(), visitors(), visitors()
    for visitor in (owner, buyer, latecomer):
        visitor.sign_up()
    event_id = owner.create_event(_title(), on_sale_in=timedelta(seconds=4))
    joined = buyer.post(f"/events/{event_id}/queue")  # first: the draw is in a few seconds
    assert joined.status_code == 303
    assert joined.headers["location"] == f"/events/{event_id}/queue"
    room = _doc(buyer.get(joined.headers["location"]))
    assert room.find(id="queue-status").text == "Waiting for the draw"  # type: ignore[union-attr]
    commitment = room.find(id="draw-commitment").text  # type: ignore[union-attr]
    assert len(commitment) == 64
    assert room.find(id="draw-seed") is None
    assert buyer.get(f"/events/{event_id}/queue?waiting=1").status_code == 200  # still waiting: stays
    assert buyer.post(f"/events/{event_id}/queue").status_code == 303  # joining twice is harmless
    owner.list_tickets(event_id, 2, "30")

    _wait(lambda: buyer.get(f"/events/{event_id}/queue/status").json()["state"] == "admitted", timeout=20)
    status = buyer.get(f"/events/{event_id}/queue/status").json()
    assert (status["label"], status["position"], status["key"]) == ("Admitted", 1, "admitted:drawn")
    moved_on = buyer.get(f"/events/{event_id}/queue?waiting=1")  # the refresh without JavaScript moves them on
    assert moved_on.status_code == 303
    assert moved_on.headers["location"] == f"/events/{event_id}"
    room = _doc(buyer.get(f"/events/{event_id}/queue"))
    assert room.find(id="draw-commitment").text == commitment  # type: ignore[union-attr]
    assert len(room.find(id="draw-seed").text) == 64  # type: ignore[union-attr]
    assert "1 buyer took part" in room.text
    assert "it is in the list" in room.text

    admitted = _doc(buyer.get(f"/events/{event_id}"))
    assert "It is your turn: you may buy until" in _sale(admitted)
    tickets = _buy_buttons(admitted, event_id)
    assert len(tickets) == 2
    bought = buyer.post(f"/events/{event_id}/purchase", {"ticketId": tickets[0]})
    assert bought.status_code == 303, bought.text
    assert bought.headers["location"].startswith("/orders/")

    # Someone who did not join cannot buy; after the draw, joining lets them in at once (nobody is waiting).
    late = _doc(latecomer.get(f"/events/{event_id}"))
    assert _buy_buttons(late, event_id) == []
    assert "join the line" in _sale(late)
    refused = latecomer.post(f"/events/{event_id}/purchase", {"ticketId": tickets[1]})
    assert refused.status_code == 403
    assert _alert(_doc(refused)) == "Join the waiting room first"
    assert latecomer.post(f"/events/{event_id}/queue").status_code == 303
    _wait(lambda: latecomer.get(f"/events/{event_id}/queue/status").json()["state"] == "admitted")
    assert "it is not in the list" in _doc(latecomer.get(f"/events/{event_id}/queue")).text


def test_before_the_sale_a_waiting_room_event_lists_its_tickets_without_buy_and_offers_to_join(
    visitors: Visitors,
) -> None:
    owner, visitor = visitors(), visitors()
    owner.sign_up()
    visitor.sign_up()
    event_id = owner.create_event(_title(), on_sale_in=timedelta(days=1))
    owner.list_tickets(event_id, 1, "15")
    doc = _doc(visitor.get(f"/events/{event_id}"))
    assert "fair draw" in _sale(doc)
    assert doc.find("form", action=f"/events/{event_id}/queue") is not None
    assert _buy_buttons(doc, event_id) == []
    ticket_id = doc.find("a", class_="ticket-row__link").attrs["href"].rsplit("/", 1)[1]  # type: ignore[union-attr]
    early = visitor.post(f"/events/{event_id}/purchase", {"ticketId": ticket_id})
    assert early.status_code == 400
    assert _alert(_doc(early)) == "Ticket is not on sale yet"
    room = _doc(visitor.get(f"/events/{event_id}/queue"))  # not joined: the waiting room page offers it
    assert room.find("form", action=f"/events/{event_id}/queue") is not None
    assert room.find(id="queue-panel").attrs["data-polling"] == "false"  # type: ignore[union-attr]
    assert visitor.get(f"/events/{event_id}/queue/status").status_code == 404
    assert visitor.post(f"/events/{event_id}/queue").status_code == 303
    assert "You are in the waiting room" in _sale(_doc(visitor.get(f"/events/{event_id}")))


def test_event_names_are_shown_escaped_never_run(visitors: Visitors) -> None:
    owner, buyer = visitors(), visitors()
    owner.sign_up()
    buyer.sign_up()
    event_id = owner.create_event(SCRIPT_TITLE, venue=SCRIPT_TITLE, on_sale_in=timedelta(days=1))
    owner.list_tickets(event_id, 1, "1")
    buyer.post(f"/events/{event_id}/queue")
    for path in (f"/events/{event_id}", f"/events/{event_id}/queue", "/events?q=alert(1)"):
        html = buyer.get(path).text
        assert SCRIPT_TITLE not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
