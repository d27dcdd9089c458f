"""Every service has the same shape, so a newcomer who knows one knows them all (README, "Layout")."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ticketing_common.testing import session_settings, thread_pool_callables

SERVICES = Path(__file__).parent
DATABASE_SERVICES = ("auth", "tickets", "orders", "payments", "expiration", "queue")
EDGE_SERVICES = ("gateway", "client")
DATABASE_SERVICE_FILES = (
    "__main__.py",
    "main.py",
    "config.py",
    "schemas.py",
    "dependencies.py",
    "router.py",
    "service.py",
    "queries.py",
    "listeners.py",
)
EDGE_SERVICE_FILES = ("__main__.py", "main.py", "config.py")


def _package(service: str) -> Path:
    return SERVICES / service / "src" / f"ticketing_{service}"


@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_a_database_service_has_the_shared_files_its_migrations_and_its_tests(service: str) -> None:
    package = _package(service)
    missing = [name for name in DATABASE_SERVICE_FILES if not (package / name).is_file()]
    assert missing == []
    assert (SERVICES / service / "migrations" / "env.py").is_file()
    assert (SERVICES / service / "tests").is_dir()


@pytest.mark.parametrize("service", EDGE_SERVICES)
def test_an_edge_service_has_the_shared_files_and_its_tests(service: str) -> None:
    package = _package(service)
    assert [name for name in EDGE_SERVICE_FILES if not (package / name).is_file()] == []
    assert (SERVICES / service / "tests").is_dir()


@pytest.mark.parametrize("service", [*DATABASE_SERVICES, "client"])  # the gateway is a plain ASGI app
def test_no_route_or_dependency_of_a_service_runs_in_the_thread_pool(service: str) -> None:
    # Every request would hop to a worker thread and back for each plain-def callable, and the workers contend
    # with the event loop for the GIL.
    main = importlib.import_module(f"ticketing_{service}.main")
    config = importlib.import_module(f"ticketing_{service}.config")
    settings = config.Settings(**session_settings(), database_url="postgresql://u@127.0.0.1:1/x")
    assert thread_pool_callables(main.create_app(settings)) == []
