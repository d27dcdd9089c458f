"""The client app on its own, with nothing listening where the gateway should be: health, error pages, headers,
static files, form rules. (Pages with data are tested against the whole system in ``test_pages``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from client_testing import parse
from fastapi import FastAPI

from ticketing_client.__main__ import main
from ticketing_client.config import Settings
from ticketing_client.main import create_app
from ticketing_common.embedded import free_port
from ticketing_common.testing import http_client

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def client_app() -> FastAPI:
    # A port nothing listens on: every API call fails to connect, as when the gateway is down.
    return create_app(Settings(api_url=f"http://127.0.0.1:{free_port()}", log_json=True))


@pytest.fixture
async def client(client_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(client_app), http_client(client_app) as http:
        yield http


async def test_reports_alive_without_the_gateway(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_is_not_ready_while_the_gateway_does_not_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"errors": [{"message": "gateway unreachable"}]}


async def test_pages_answer_a_503_page_when_the_apis_are_unreachable(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers=HTML)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    doc = parse(response.text)
    assert doc.find("h1").text == "Service unavailable"  # type: ignore[union-attr]
    assert "unavailable right now" in doc.find(role="alert").text  # type: ignore[union-attr]


async def test_non_browser_callers_get_the_shared_json_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 503
    assert response.json() == {
        "errors": [{"message": "The ticketing service is unavailable right now, please try again in a moment"}]
    }


async def test_unknown_pages_are_a_404_page_for_browsers_and_json_for_api_paths(client: httpx.AsyncClient) -> None:
    page = await client.get("/no/such/page", headers=HTML)
    assert page.status_code == 404
    assert parse(page.text).find("h1").text == "Page not found"  # type: ignore[union-attr]
    api = await client.get("/api/nowhere", headers=HTML)
    assert api.status_code == 404
    assert api.json() == {"errors": [{"message": "Not Found"}]}


async def test_malformed_ids_are_404_without_asking_the_apis(client: httpx.AsyncClient) -> None:
    # The gateway is down, so anything but an immediate 404 would be a 503.
    for path in ("/tickets/not-an-id", "/tickets/..%2F..%2Fapi%2Fusers", "/orders/123/status"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 404, path


async def test_signed_out_visitors_are_sent_to_sign_in_and_back(client: httpx.AsyncClient) -> None:
    for path in ("/tickets/new", "/orders", "/orders/6f1c4cc4-0b8e-4a55-9a39-6a1f4b1bb1b9?payment=received"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/signin?next=" + path.replace("?", "%3F").replace("=", "%3D")


async def test_forms_must_be_url_encoded(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/signin", json={"email": "a@b.c", "password": "x"}, headers={"Origin": "http://testserver"}
    )
    assert response.status_code == 415
    assert response.json() == {"errors": [{"message": "Content-Type must be application/x-www-form-urlencoded"}]}


async def test_oversized_form_posts_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/signin", data={"email": "x" * 70_000, "password": "y"})
    assert response.status_code == 413
    assert response.json() == {"errors": [{"message": "Request body too large"}]}


async def test_an_oversized_form_post_from_a_browser_gets_a_413_page(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"email=" + b"x" * 1000

    for kind, extra in (("declared", {"data": {"email": "x" * 70_000}}), ("chunked", {"content": chunks()})):
        response = await client.post(
            "/signin",
            headers={**HTML, "Origin": "http://testserver", "Content-Type": "application/x-www-form-urlencoded"},
            **extra,  # type: ignore[arg-type]
        )
        assert response.status_code == 413, kind
        assert response.headers["content-type"].startswith("text/html"), kind
        assert response.headers["content-security-policy"].startswith("default-src 'self'"), kind
        doc = parse(response.text)
        assert doc.find("h1").text == "Too much data", kind  # type: ignore[union-attr]
        assert "Request body too large" in doc.find(role="alert").text  # type: ignore[union-attr]


async def test_pages_carry_a_strict_content_security_policy_and_are_never_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/signin", headers=HTML)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "stripe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]


async def test_serves_its_own_stylesheet_and_scripts(client: httpx.AsyncClient) -> None:
    for path, kind in (("/static/app.css", "text/css"), ("/static/order.js", "javascript")):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]
        assert "http://" not in response.text  # no CDN, no web fonts
        assert "https://" not in response.text


async def test_a_bug_answers_500_like_every_other_error(client_app: FastAPI) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    client_app.add_api_route("/broken", broken)
    async with LifespanManager(client_app), http_client(client_app) as http:
        page = await http.get("/broken", headers=HTML)
        api = await http.get("/broken")
    assert page.status_code == 500
    assert parse(page.text).find("h1").text == "Something went wrong"  # type: ignore[union-attr]
    assert api.status_code == 500
    assert api.json() == {"errors": [{"message": "Something went wrong"}]}


def test_migrate_is_a_no_op(capsys: pytest.CaptureFixture[str]) -> None:
    main(["migrate"])
    assert "nothing to migrate" in capsys.readouterr().err


def test_real_stripe_mode_needs_a_publishable_key_and_no_stand_in() -> None:
    assert Settings(stripe_publishable_key="pk_test_1").stripe_elements
    assert Settings(stripe_publishable_key="pk_test_1", stripe_api_base="https://api.stripe.com").stripe_elements
    assert not Settings(stripe_publishable_key="pk_test_1", stripe_api_base="http://127.0.0.1:4242").stripe_elements
    assert not Settings().stripe_elements


def test_a_secret_stripe_key_is_refused_as_the_publishable_one() -> None:
    with pytest.raises(ValueError, match="must be a publishable key"):
        Settings(stripe_publishable_key="sk_test_123")


async def test_a_signed_out_form_post_returns_to_the_forms_page_after_sign_in(client: httpx.AsyncClient) -> None:
    order = "6f1c4cc4-0b8e-4a55-9a39-6a1f4b1bb1b9"
    for action, back in ((f"/orders/{order}/pay", f"/orders/{order}"), (f"/orders/{order}/cancel", f"/orders/{order}")):
        response = await client.post(action, data={"token": "tok_visa"}, headers=HTML)
        assert response.status_code == 303, action
        assert response.headers["location"] == f"/signin?next={back}"
    ticket = "0b1c4cc4-0b8e-4a55-9a39-6a1f4b1bb1b9"
    response = await client.post(f"/tickets/{ticket}/purchase", headers=HTML)
    assert response.headers["location"] == f"/signin?next=/tickets/{ticket}"
