"""Fixtures: the whole system started as ``make up`` starts it (once per test session), visitors that talk to it
like a browser without JavaScript, the client app in-process, and headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # client_html, shared by the test modules

from ticketing_common.embedded import free_port
from ticketing_launcher.stack import Stack

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
ORDER_EXPIRATION_SECONDS = 20
TICKETS_PER_PAGE = 4
CHROMIUM_MISSING = "install Debian's chromium package (apt-get install chromium) to run the browser tests"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests skip, before anything starts, on a machine without Chromium."""
    if shutil.which("chromium") is None:
        for item in items:
            if item.get_closest_marker("browser"):
                item.add_marker(pytest.mark.skip(reason=CHROMIUM_MISSING))


@dataclass
class System:
    stack: Stack
    url: str  # the gateway, where a browser goes

    @property
    def client_url(self) -> str:
        return self.stack.urls["client"]


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Every service, the gateway, PostgreSQL, NATS and the Stripe stand-in, as ``make up`` runs them (orders
    expire after a short window); their logs go to ``test-artifacts/e2e/system.log``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL", "STRIPE_KEY", "JWT_KEY")}
    environ["ORDER_EXPIRATION_SECONDS"] = str(ORDER_EXPIRATION_SECONDS)
    environ["TICKETS_PER_PAGE"] = str(TICKETS_PER_PAGE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "system.log").open("w") as log:
        stack = Stack(
            state_dir=tmp_path_factory.mktemp("system"), gateway_port=free_port(), environ=environ, log_sink=log
        )
        try:
            stack.start()
            stack.wait_healthy(timeout=120)
            yield System(stack=stack, url=stack.urls["gateway"])
        finally:
            stack.stop()


class Visitor:
    """Someone using the site through the gateway with a browser that runs no JavaScript: follows nothing on its
    own, keeps the cookies the site sets, asks for HTML."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Accept": "text/html"}, timeout=30)
        self.email: str | None = None

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
        return self.http.post(path, data=data or {}, **kwargs)  # type: ignore[arg-type]

    def sign_up(self, email: str | None = None) -> httpx.Response:
        self.email = email or f"visitor-{uuid.uuid4().hex[:10]}@example.com"
        response = self.post("/signup", {"email": self.email, "password": PASSWORD, "next": "/"})
        assert response.status_code == 303, response.text
        return response

    def sell(self, title: str, price: str) -> str:
        """Put a ticket on sale through the form; returns its id."""
        response = self.post("/tickets/new", {"title": title, "price": price})
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/tickets/([0-9a-f-]{36})", response.headers["location"])
        assert match, response.headers["location"]
        return match.group(1)

    def purchase(self, ticket_id: str) -> str:
        """Press "Purchase"; returns the order's id."""
        response = self.post(f"/tickets/{ticket_id}/purchase")
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/orders/([0-9a-f-]{36})", response.headers["location"])
        assert match, response.headers["location"]
        return match.group(1)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def visitors(system: System) -> Iterator[type[Visitor]]:
    """Makes visitors of the running system (closed after the test)."""
    made: list[Visitor] = []

    class _Visitor(Visitor):
        def __init__(self) -> None:
            super().__init__(system.url)
            made.append(self)

    yield _Visitor
    for visitor in made:
        visitor.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip(CHROMIUM_MISSING)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
