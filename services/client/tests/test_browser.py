"""End to end in headless Chromium against the whole system as ``make up`` runs it: selling, buying, paying,
a declined card, an expiry, on a desktop and on a phone. Each step leaves a screenshot in
``test-artifacts/e2e/``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from client_testing import ARTIFACTS, ORDER_EXPIRATION_SECONDS, PASSWORD, System, Visitor
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
    for path in ("/", "/tickets/new", "/orders", "/signout"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
