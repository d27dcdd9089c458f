"""Fixtures: the whole system started as ``make up`` starts it (once per test session), visitors that talk to it
like a browser without JavaScript, the client app in-process, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # client_testing, shared by the test modules

from client_testing import (
    ARTIFACTS,
    EVENTS_PER_PAGE,
    ORDER_EXPIRATION_SECONDS,
    QUEUE_ADMISSION_SECONDS,
    QUEUE_POLL_SECONDS,
    TICKETS_PER_PAGE,
    System,
    Visitor,
)

from ticketing_launcher.stack import OUTSIDE_SETTINGS, throwaway_stack

CHROMIUM_MISSING = "install Debian's chromium package (apt-get install chromium) to run the browser tests"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests skip, before anything starts, on a machine without Chromium."""
    if shutil.which("chromium") is None:
        for item in items:
            if item.get_closest_marker("browser"):
                item.add_marker(pytest.mark.skip(reason=CHROMIUM_MISSING))


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    """Every service, the gateway, PostgreSQL, NATS and the Stripe stand-in, as ``make up`` runs them (orders
    expire and admissions from a waiting room end after short windows); their logs go to
    ``test-artifacts/e2e/system.log``."""
    environ = {k: v for k, v in os.environ.items() if k not in OUTSIDE_SETTINGS}
    environ["ORDER_EXPIRATION_SECONDS"] = str(ORDER_EXPIRATION_SECONDS)
    environ["TICKETS_PER_PAGE"] = str(TICKETS_PER_PAGE)
    environ["EVENTS_PER_PAGE"] = str(EVENTS_PER_PAGE)
    environ["QUEUE_ADMISSION_SECONDS"] = str(QUEUE_ADMISSION_SECONDS)
    environ["QUEUE_POLL_SECONDS"] = str(QUEUE_POLL_SECONDS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Not pytest's tmp_path: concurrent pytest sessions prune each other's old base folders.
    with (
        (ARTIFACTS / "system.log").open("w") as log,
        throwaway_stack(environ, log_sink=log, prefix="ticketing-client-e2e-") as stack,
    ):
        yield System(stack=stack, url=stack.urls["gateway"])


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


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser).

    Module-scoped on purpose: Playwright's sync API runs an event loop on this thread while it is open, and the
    rest of the suite's async tests need the thread to themselves once the browser tests are done.
    """
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
