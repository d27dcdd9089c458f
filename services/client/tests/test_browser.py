"""End to end in headless Chromium against the whole system as ``make up`` runs it: selling, buying, paying,
a declined card, an expiry, events and their waiting rooms, on a desktop and on a phone. Each step leaves a
screenshot in ``test-artifacts/e2e/``."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from client_testing import ARTIFACTS, ORDER_EXPIRATION_SECONDS, PASSWORD, QUEUE_ADMISSION_SECONDS, System, Visitor
from playwright.sync_api import Browser, ConsoleMessage, Response, expect

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
ORDER_URL = re.compile(r"/orders/[0-9a-f-]{36}$")


class Browsing:
    """A browser window on the system that records a screenshot per step and every console error."""

    def __init__(self, browser: Browser, system: System, name: str, device: dict[str, Any]) -> None:
        self.context = browser.new_context(base_url=system.url, **device)
        self.page = self.context.new_page()
        self.name = name
        self.step = 0
        self.console_errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            # A re-rendered form answers 400/402 on purpose; failed sub-resources are caught by on_response.
            if message.type == "error" and not message.text.startswith("Failed to load resource"):
                self.console_errors.append(message.text)

        def on_response(response: Response) -> None:
            if response.request.resource_type != "document" and response.status >= 400:
                self.console_errors.append(f"{response.status} {response.url}")

        self.page.on("console", on_console)
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        self.context.on("response", on_response)

    def shot(self, label: str) -> None:
        self.step += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{self.step:02d}-{label}.png"), full_page=True)

    def sign_up(self) -> str:
        email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
        page = self.page
        page.goto("/")
        page.get_by_role("link", name="Sign up").click()
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()
        return email

    def open_ticket_from_home(self, title: str) -> None:
        """Find the ticket on the home page (following "Next page") and open it."""
        page = self.page
        page.goto("/")
        while page.get_by_role("link", name=re.compile(re.escape(title))).count() == 0:
            next_page = page.get_by_role("link", name="Next page")
            assert next_page.count() == 1, f"{title} is not for sale"
            next_page.click()
        page.get_by_role("link", name=re.compile(re.escape(title))).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(title)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def browsing(chromium: Browser, system: System, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Opens browser windows named after the test; fails the test on any JavaScript error, CSP violation or
    failed sub-resource (stylesheet, script, icon, status poll)."""
    opened: list[Browsing] = []

    def open_window(role: str, device: dict[str, Any] = DESKTOP) -> Browsing:
        window = Browsing(chromium, system, f"{request.node.name.removeprefix('test_')}-{role}", device)
        opened.append(window)
        return window

    yield open_window
    for window in opened:
        window.close()
    assert [error for window in opened for error in window.console_errors] == []


@pytest.fixture
def seller(system: System) -> Iterator[Visitor]:
    visitor = Visitor(system.url)
    visitor.sign_up()
    yield visitor
    visitor.close()


def _title() -> str:
    return f"Concert {uuid.uuid4().hex[:6]}"


def test_a_seller_sells_a_ticket_and_a_buyer_pays_with_the_succeeding_card_and_sees_paid(browsing: Any) -> None:
    sell: Browsing = browsing("seller")
    page = sell.page
    page.goto("/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Sign up")
    sell.shot("home-signed-out")
    sell.sign_up()
    sell.shot("signed-up")
    page.get_by_role("link", name="Sell a ticket").click()
    title = _title()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Price").fill("45.5")
    sell.shot("sell-form")
    page.get_by_role("button", name="Sell ticket").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator(".ticket__price")).to_contain_text("$45.50")
    expect(page.get_by_role("link", name="Edit")).to_be_visible()
    sell.shot("ticket-on-sale")

    buy: Browsing = browsing("buyer")
    buy.sign_up()
    buy.open_ticket_from_home(title)
    buy.shot("ticket")
    buy.page.get_by_role("button", name="Purchase").click()
    expect(buy.page).to_have_url(ORDER_URL)
    status = buy.page.locator("#order-status")
    expect(status).to_have_text("Awaiting payment")
    countdown = buy.page.locator("#countdown")
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=3000)  # it counts down live
    buy.shot("order-awaiting-payment")

    page.reload()  # the seller's own page: the order reserved the ticket
    expect(page.get_by_text("This ticket is reserved and cannot be edited")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Edit")).to_be_disabled()
    sell.shot("ticket-reserved")

    buy.page.get_by_role("button", name="Pay with test card (succeeds)").click()
    expect(status).to_have_text("Paid", timeout=15_000)
    expect(buy.page.get_by_role("button", name=re.compile("Pay with"))).to_have_count(0)
    buy.shot("order-paid")
    buy.page.get_by_role("link", name="My orders").click()
    expect(buy.page.locator(".card", has_text=title)).to_contain_text("Paid")
    buy.shot("my-orders")


def test_a_declined_card_shows_the_error_and_the_order_stays_payable_on_a_phone(browsing: Any, seller: Visitor) -> None:
    title = _title()
    ticket_id = seller.sell(title, "12")
    buy: Browsing = browsing("buyer-phone", PHONE)
    buy.sign_up()
    page = buy.page
    page.goto(f"/tickets/{ticket_id}")
    buy.shot("ticket")
    page.get_by_role("button", name="Purchase").click()
    expect(page).to_have_url(ORDER_URL)
    buy.shot("order")
    page.get_by_role("button", name="Pay with test card (declined)").click()
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    expect(page.locator("#order-status")).to_have_text("Awaiting payment")
    expect(page.get_by_role("button", name="Pay with test card (succeeds)")).to_be_enabled()
    buy.shot("card-declined")
    # Nothing on the phone layout is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_role("button", name="Pay with test card (succeeds)").click()
    expect(page.locator("#order-status")).to_have_text("Paid", timeout=15_000)
    buy.shot("paid-after-decline")


def test_an_order_left_alone_shows_order_expired_and_the_ticket_is_for_sale_again(
    browsing: Any, seller: Visitor
) -> None:
    title = _title()
    ticket_id = seller.sell(title, "30")
    buy: Browsing = browsing("buyer")
    buy.sign_up()
    page = buy.page
    page.goto(f"/tickets/{ticket_id}")
    page.get_by_role("button", name="Purchase").click()
    expect(page).to_have_url(ORDER_URL)
    buy.shot("order")
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#order-status")).to_have_text("Order expired", timeout=(ORDER_EXPIRATION_SECONDS + 20) * 1000)
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    expect(page.get_by_role("button", name=re.compile("Pay with"))).to_have_count(0)
    expect(page.locator("#order-announcer")).to_have_text("Order status: Order expired")
    buy.shot("order-expired")
    buy.open_ticket_from_home(title)
    expect(page.get_by_role("button", name="Purchase")).to_be_visible()
    buy.shot("ticket-for-sale-again")


def test_an_open_order_page_turns_paid_when_the_order_is_paid_elsewhere(browsing: Any, seller: Visitor) -> None:
    ticket_id = seller.sell(_title(), "8")
    buy: Browsing = browsing("buyer")
    buy.sign_up()
    page = buy.page
    page.goto(f"/tickets/{ticket_id}")
    page.get_by_role("button", name="Purchase").click()
    expect(page).to_have_url(ORDER_URL)
    page.evaluate("window.__notReloaded = true")
    other_tab = buy.context.new_page()
    other_tab.goto(page.url)
    other_tab.get_by_role("button", name="Pay with test card (succeeds)").click()
    expect(other_tab.locator("#order-status")).to_have_text("Paid", timeout=15_000)
    expect(page.locator("#order-status")).to_have_text("Paid", timeout=15_000)
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    buy.shot("paid-elsewhere")


def test_keyboard_users_see_where_the_focus_is_and_can_skip_to_the_content(browsing: Any) -> None:
    window: Browsing = browsing("keyboard")
    page = window.page
    page.goto("/signin")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.keyboard.press("Enter")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "email":
            break
    assert page.evaluate("document.activeElement.id") == "email"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") not in ("", "none")
    window.shot("focus-visible")


def test_pages_look_right_on_a_phone(browsing: Any, seller: Visitor) -> None:
    seller.sell(_title(), "19.99")
    phone: Browsing = browsing("phone", PHONE)
    page = phone.page
    page.goto("/")
    phone.shot("home-signed-out")
    phone.sign_up()
    phone.shot("home-signed-in")
    page.goto("/tickets/new")
    page.get_by_role("button", name="Sell ticket").click()
    expect(page.locator("#title-error")).to_contain_text("Title is required")
    phone.shot("sell-form-errors")
    for path in ("/", "/tickets/new", "/orders", "/signout", "/events", "/events/new", "/waiting-room"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path


# -- events and the waiting room ------------------------------------------------------------------------------------

EVENT_URL = re.compile(r"/events/[0-9a-f-]{36}$")


def _reload_until(page: Any, check: Any, timeout: float = 15.0) -> None:
    """Reload the page until ``check()`` holds (for what reaches a page through events, not its script)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        page.wait_for_timeout(300)
        page.reload()


def test_a_waiting_room_from_creating_the_event_to_a_buyer_let_in_at_the_draw_who_buys(browsing: Any) -> None:
    sell: Browsing = browsing("seller", {**DESKTOP, "timezone_id": "Europe/Paris"})
    buy: Browsing = browsing("buyer", {**DESKTOP, "timezone_id": "America/New_York"})
    sell.sign_up()
    buy.sign_up()

    # The seller types times in their own time zone; the sale opens a few seconds later, through a waiting room.
    page = sell.page
    page.get_by_role("link", name="New event").click()
    expect(page.locator("#zone-hint")).to_have_text("Times are in your time zone (Europe/Paris).")
    name = f"Gala {uuid.uuid4().hex[:6]}"
    paris = ZoneInfo("Europe/Paris")
    typed_now = datetime.now(paris).replace(tzinfo=None, microsecond=0)
    on_sale = typed_now + timedelta(seconds=6)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Venue").fill("Salle Pleyel")
    page.get_by_label("Starts at").fill((typed_now + timedelta(days=7)).isoformat(timespec="minutes"))
    page.get_by_label("Sale opens at").fill(on_sale.isoformat(timespec="seconds"))
    sell.shot("event-form")
    page.get_by_role("button", name="Create event").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page).to_have_url(EVENT_URL)
    event_url = page.url
    utc = on_sale.replace(tzinfo=paris).astimezone(UTC).isoformat().replace("+00:00", "Z")
    expect(page.locator("#on-sale time")).to_have_attribute("datetime", utc)  # read in Paris time
    expect(page.locator("#on-sale")).to_contain_text("through a waiting room")
    sell.shot("event-created")

    # A buyer joins before the sale opens.
    room = buy.page
    room.goto(event_url)
    expect(room.locator(".sale")).to_contain_text("fair draw")
    room.get_by_role("button", name="Join the waiting room").click()
    expect(room).to_have_url(re.compile(r"/queue$"))
    expect(room.locator("#queue-status")).to_have_text("Waiting for the draw")
    commitment = room.locator("#draw-commitment").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", commitment)
    buy.shot("waiting-for-the-draw")

    # Meanwhile the seller lists tickets.
    page.get_by_label("How many").fill("3")
    page.get_by_label("Price each").fill("25")
    page.get_by_role("button", name="List tickets").click()
    expect(page.get_by_role("status")).to_have_text("3 tickets put on sale.")
    expect(page.locator("#ticket-counts")).to_have_text("3 available, 0 reserved")
    expect(page.get_by_role("button", name=re.compile("^Buy"))).to_have_count(0)  # not one's own
    sell.shot("tickets-listed")

    # At the draw the waiting room lets the buyer in and takes them to the tickets by itself.
    expect(room).to_have_url(event_url, timeout=30_000)
    expect(room.locator("#admitted-message")).to_contain_text("It is your turn: you may buy until")
    buy.shot("admitted")
    room.get_by_role("button", name=re.compile("^Buy")).first.click()
    expect(room).to_have_url(ORDER_URL)
    room.get_by_role("button", name="Pay with test card (succeeds)").click()
    expect(room.locator("#order-status")).to_have_text("Paid", timeout=15_000)
    buy.shot("paid")

    # The event is listed and found; its page counts the ticket sold.
    room.get_by_role("link", name="Events", exact=True).click()
    room.get_by_label("Search by name or venue").fill(name.split()[1])
    room.get_by_role("button", name="Search").click()
    expect(room.locator(".card")).to_have_count(1)
    expect(room.locator(".card")).to_contain_text("Waiting room")
    buy.shot("search")
    room.get_by_role("link", name=re.compile(re.escape(name))).click()
    _reload_until(room, lambda: room.locator("#ticket-counts").inner_text() == "2 available, 1 reserved")

    # The waiting room shows the revealed draw, then the end of the admission, live.
    room.goto(event_url + "/queue")
    expect(room.locator("#queue-status")).to_have_text("Admitted")
    expect(room.locator("#draw-commitment")).to_have_text(commitment)
    expect(room.locator("#draw-seed")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    expect(room.locator("#queue-panel")).to_contain_text("it is in the list")
    buy.shot("draw-revealed")
    room.evaluate("window.__notReloaded = true")
    expect(room.locator("#queue-status")).to_have_text(
        "Admission expired", timeout=(QUEUE_ADMISSION_SECONDS + 10) * 1000
    )
    assert room.evaluate("window.__notReloaded === true"), "the page was reloaded"
    expect(room.locator("#queue-announcer")).to_have_text("Waiting room: Admission expired")
    buy.shot("admission-expired")
    room.goto(event_url)
    expect(room.locator(".sale")).to_contain_text("Your time to buy from the waiting room has ended.")
    expect(room.get_by_role("button", name=re.compile("^Buy"))).to_have_count(0)


def test_an_event_without_a_waiting_room_sells_straight_from_its_page_on_a_phone(
    browsing: Any, seller: Visitor
) -> None:
    name = f"Open air {uuid.uuid4().hex[:6]}"
    event_id = seller.create_event(name, venue="City park")
    seller.list_tickets(event_id, 2, "15")
    buy: Browsing = browsing("buyer-phone", PHONE)
    buy.sign_up()
    page = buy.page
    page.goto("/")
    page.get_by_role("link", name="Browse upcoming events").click()
    page.get_by_label("Search by name or venue").fill(name)
    page.keyboard.press("Enter")
    page.get_by_role("link", name=re.compile(re.escape(name))).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator(".sale")).to_contain_text("Pick a ticket below.")
    expect(page.get_by_role("button", name=re.compile("^Buy"))).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    buy.shot("event")
    page.get_by_role("button", name=f"Buy {name}, $15.00").first.click()
    expect(page).to_have_url(ORDER_URL)
    page.get_by_role("button", name="Pay with test card (succeeds)").click()
    expect(page.locator("#order-status")).to_have_text("Paid", timeout=15_000)
    buy.shot("paid")
