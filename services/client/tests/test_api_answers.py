"""How pages fail when the APIs answer badly, and which form posts are refused, against a stand-in gateway: a real
HTTP server whose answers each test sets (a timeout, a crash, a throttled sign-in cannot be asked of the real
APIs on demand)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web
from asgi_lifespan import LifespanManager
from client_testing import parse

from ticketing_client.config import Settings
from ticketing_client.main import create_app
from ticketing_common.embedded import free_port
from ticketing_common.testing import http_client

HTML = {"Accept": "text/html,application/xhtml+xml"}
SITE = "http://testserver"  # the test client's own origin
TICKET = "6f1c4cc4-0b8e-4a55-9a39-6a1f4b1bb1b9"

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class StandInGateway:
    """Answers ``(method, path)`` as told (404 in the shared format otherwise) and remembers what it was sent."""

    url: str = ""
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    received: list[web.Request] = field(default_factory=list)

    def answer(self, method: str, path: str, status: int, body: object = None, **headers: str) -> None:
        async def respond(_: web.Request) -> web.StreamResponse:
            if isinstance(body, str):
                return web.Response(status=status, text=body, content_type="text/html", headers=headers)
            return web.json_response(body, status=status, headers=headers)

        self.answers[(method, path)] = respond

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(request)
        respond = self.answers.get((request.method, request.path))
        if respond is None:
            return web.json_response({"errors": [{"message": "Not Found"}]}, status=404)
        return await respond(request)


@contextlib.asynccontextmanager
async def _stand_in() -> AsyncIterator[StandInGateway]:
    stand_in = StandInGateway()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stand_in.url = f"http://127.0.0.1:{port}"
    yield stand_in
    await runner.cleanup()


@pytest.fixture
async def gateway() -> AsyncIterator[StandInGateway]:
    async with _stand_in() as stand_in:
        yield stand_in


@pytest.fixture
async def auth() -> AsyncIterator[StandInGateway]:
    """A stand-in for the auth service itself, called directly when ``AUTH_URL`` is set."""
    async with _stand_in() as stand_in:
        yield stand_in


@pytest.fixture
async def client(gateway: StandInGateway) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(api_url=gateway.url, api_timeout_seconds=0.5, log_json=True))
    async with LifespanManager(app), http_client(app) as http:
        yield http


def _page(response: httpx.Response) -> tuple[str, str]:
    """The page's heading and its alert's text (the error page's shape)."""
    assert response.headers["content-type"].startswith("text/html"), response.text
    doc = parse(response.text)
    heading, alert = doc.find("h1"), doc.find(role="alert")
    assert heading is not None, response.text
    assert alert is not None, response.text
    return heading.text, alert.text


# -- unavailable: timeouts and 5xx -------------------------------------------------------------------------------


async def test_returns_a_503_page_when_the_api_does_not_answer_in_time(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    async def too_slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({"tickets": []})

    gateway.answers[("GET", "/api/tickets")] = too_slow
    started = time.monotonic()
    response = await client.get("/", headers=HTML)
    assert time.monotonic() - started < 3  # the configured 0.5 s, not the API's 5 s
    assert response.status_code == 503
    heading, alert = _page(response)
    assert heading == "Service unavailable"
    assert "unavailable right now" in alert


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"errors": [{"message": "Something went wrong"}]}),
        (502, "<html><body><h1>502 Bad Gateway</h1><p>nginx internals</p></body></html>"),
        (504, None),
    ],
)
async def test_returns_a_503_page_when_the_api_fails_with_a_5xx(
    gateway: StandInGateway, client: httpx.AsyncClient, status: int, body: object
) -> None:
    gateway.answer("GET", f"/api/tickets/{TICKET}", status, body)
    response = await client.get(f"/tickets/{TICKET}", headers=HTML)
    assert response.status_code == 503
    heading, alert = _page(response)
    assert heading == "Service unavailable"
    assert "unavailable right now" in alert
    assert "nginx" not in response.text
    as_json = await client.get(f"/tickets/{TICKET}")
    assert as_json.status_code == 503
    assert as_json.json()["errors"][0]["message"].startswith("The ticketing service is unavailable")


async def test_a_deliberate_503_from_the_api_keeps_its_message(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer("GET", "/api/tickets", 503, {"errors": [{"message": "Tickets are being restocked"}]})
    response = await client.get("/", headers=HTML)
    assert response.status_code == 503
    assert _page(response) == ("Service unavailable", "Tickets are being restocked")


async def test_returns_a_404_page_when_the_api_does_not_know_the_ticket(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    response = await client.get(f"/tickets/{TICKET}", headers=HTML)
    assert response.status_code == 404
    assert _page(response)[0] == "Page not found"


# -- throttled: 429 and Retry-After -------------------------------------------------------------------------------


async def test_a_throttled_sign_in_answers_429_with_retry_after_and_says_when(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer(
        "POST",
        "/api/users/signin",
        429,
        {"errors": [{"message": "Too many failed sign-in attempts"}]},
        **{"Retry-After": "30"},
    )
    response = await client.post(
        "/signin", data={"email": "a@example.com", "password": "wrong"}, headers={**HTML, "Origin": SITE}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    doc = parse(response.text)
    alert = doc.find(role="alert")
    assert alert is not None
    assert "Too many failed sign-in attempts" in alert.text
    assert "Please try again in 30 seconds." in alert.text
    assert doc.find("input", name="email").attrs["value"] == "a@example.com"  # type: ignore[union-attr]


async def test_a_throttled_page_answers_429_with_retry_after_and_says_when(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer("GET", "/api/tickets", 429, {"errors": [{"message": "Too many requests"}]}, **{"Retry-After": "90"})
    response = await client.get("/", headers=HTML)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "90"
    heading, alert = _page(response)
    assert heading == "Too many attempts"
    assert "Please try again in 2 minutes." in alert


# -- the pooled HTTP client ----------------------------------------------------------------------------------------


async def test_sends_the_configured_host_header_to_the_api(gateway: StandInGateway) -> None:
    app = create_app(Settings(api_url=gateway.url + "/", api_host="ticketing.dev", log_json=True))
    gateway.answer("GET", "/api/users/currentuser", 200, {"currentUser": None})
    async with LifespanManager(app), http_client(app) as http:
        assert (await http.get("/readyz")).status_code == 200
    assert [(r.path, r.host) for r in gateway.received] == [("/api/users/currentuser", "ticketing.dev")]


# -- form posts: where they come from --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": SITE}, True),
        ({"Origin": "HTTP://TestServer:80"}, True),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "https://testserver"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "http://evil.example", "Referer": f"{SITE}/signout"}, False),
        ({"Referer": f"{SITE}/signout"}, True),
        ({"Referer": "http://evil.example/win-a-prize"}, False),
        ({"Referer": "http://testserver.evil.example/signout"}, False),
        ({"Referer": "not a url"}, False),
        ({}, False),
        ({"Origin": SITE, "Sec-Fetch-Site": "cross-site"}, False),
    ],
)
async def test_a_form_post_is_accepted_only_from_this_sites_pages(
    gateway: StandInGateway, client: httpx.AsyncClient, headers: dict[str, str], allowed: bool
) -> None:
    gateway.answer("POST", "/api/users/signout", 200, {}, **{"Set-Cookie": "session=; Max-Age=0; Path=/"})
    response = await client.post("/signout", headers={**HTML, **headers})
    if allowed:
        assert response.status_code == 303, response.text
    else:
        assert response.status_code == 403
        heading, alert = _page(response)
        assert heading == "Not allowed"
        assert ("another site" in alert) or ("did not say which site" in alert)
        assert not any(r.path == "/api/users/signout" for r in gateway.received)


async def test_behind_the_gateway_a_post_must_come_from_the_origin_the_visitor_sees(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer("POST", "/api/users/signout", 200, {})
    forwarded = {"X-Forwarded-Host": "ticketing.dev", "X-Forwarded-Proto": "https"}
    seen = await client.post("/signout", headers={**HTML, **forwarded, "Origin": "https://ticketing.dev"})
    assert seen.status_code == 303
    by_referer = await client.post("/signout", headers={**HTML, **forwarded, "Referer": "https://ticketing.dev/"})
    assert by_referer.status_code == 303
    internal = await client.post("/signout", headers={**HTML, **forwarded, "Origin": SITE})
    assert internal.status_code == 403
    plain_http = await client.post("/signout", headers={**HTML, **forwarded, "Origin": "http://ticketing.dev"})
    assert plain_http.status_code == 403


# -- the visitor's address -----------------------------------------------------------------------------------------


async def _sign_in_from(app_settings: Settings, peer: str, **headers: str) -> None:
    app = create_app(app_settings)
    async with LifespanManager(app), http_client(app, peer=peer) as http:
        await http.post(
            "/signin", data={"email": "a@example.com", "password": "wrong"}, headers={**HTML, "Origin": SITE, **headers}
        )


async def test_calls_auth_at_its_own_url_with_the_visitors_address_from_a_trusted_proxy(
    gateway: StandInGateway, auth: StandInGateway
) -> None:
    settings = Settings(api_url=gateway.url, auth_url=auth.url, trusted_proxies="127.0.0.1")

    await _sign_in_from(settings, "127.0.0.1", **{"X-Forwarded-For": "203.0.113.7"})

    assert [(r.method, r.path) for r in auth.received] == [("POST", "/api/users/signin")]
    assert auth.received[0].headers.getall("X-Forwarded-For") == ["203.0.113.7"]
    assert gateway.received == []


async def test_a_visitor_cannot_choose_the_address_it_is_counted_under(
    gateway: StandInGateway, auth: StandInGateway
) -> None:
    settings = Settings(api_url=gateway.url, auth_url=auth.url, trusted_proxies="127.0.0.1")

    await _sign_in_from(settings, "198.51.100.9", **{"X-Forwarded-For": "203.0.113.7"})

    assert auth.received[0].headers.getall("X-Forwarded-For") == ["198.51.100.9"]
