"""Every page, through the gateway, against the whole system as ``make up`` runs it (no JavaScript: what a
browser without it, or a crawler, gets). The flows with a real browser are in ``test_browser``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from client_testing import (
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


def _listed_titles(visitor: Visitor) -> list[str]:
    """Every title on the home page, following "Next page" to the end."""
    titles: list[str] = []
    path: str | None = "/"
    while path:
        doc = _doc(visitor.get(path))
        titles += [span.text for span in doc.find_all("span", class_="card__title")]
        link = doc.find("a", rel="next")
        path = link.attrs["href"] if link else None
    return titles


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
    for path in ("/static/app.css", "/static/order.js"):
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
    listed = _listed_titles(seller)
    assert len(listed) == len(set(listed))  # no ticket twice across pages
    assert set(titles) <= set(listed)


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
    }
    for name, response in pages.items():
        assert response.status_code < 500, name
        assert accessibility_problems(response.text) == [], name
