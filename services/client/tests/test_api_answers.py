"""How pages fail when the APIs answer badly, which form posts are refused, and what the API calls carry (the
visitor's address, the trace context), against a stand-in gateway: a real HTTP server whose answers each test sets
(a timeout, a crash, a throttled sign-in cannot be asked of the real APIs on demand) and which remembers what it was
sent."""

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
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from ticketing_client.config import Settings
from ticketing_client.main import create_app
from ticketing_common import tracing
from ticketing_common.embedded import free_port
from ticketing_common.testing import http_client, recording_spans

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


# -- events and the waiting room -----------------------------------------------------------------------------------

EVENT = "0b3e5f36-8d7c-4a57-9f0e-2d1c7b6a5e4f"
ME = {"id": "7d9f8e6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a", "email": "me@example.com"}
SIGNED_IN = {**HTML, "Origin": SITE, "Cookie": "session=abc"}


def _event_body(**overrides: object) -> dict[str, object]:
    return {
        "id": EVENT,
        "name": "Jazz night",
        "venue": "Blue Hall",
        "startsAt": "2030-06-01T20:00:00Z",
        "onSaleAt": "2030-05-01T10:00:00Z",
        "maxPerBuyer": 4,
        "waitingRoom": True,
        "userId": "11111111-2222-4333-8444-555555555555",
        "version": 0,
        "tickets": {"available": 1, "reserved": 0},
        **overrides,
    }


def _signed_in_with_an_event(gateway: StandInGateway) -> None:
    gateway.answer("GET", "/api/users/currentuser", 200, {"currentUser": ME})
    gateway.answer("GET", f"/api/events/{EVENT}", 200, _event_body())
    gateway.answer("GET", "/api/tickets", 200, {"tickets": [], "next": None})


def _json_bodies(gateway: StandInGateway, method: str, path: str, status: int, body: object) -> list[object]:
    """Answers ``method path`` with ``status`` and ``body``, keeping the JSON bodies it was sent."""
    sent: list[object] = []

    async def respond(request: web.Request) -> web.StreamResponse:
        sent.append(await request.json())
        return web.json_response(body, status=status)

    gateway.answers[(method, path)] = respond
    return sent


async def test_a_new_event_goes_to_the_api_with_its_times_offsets_and_only_the_fields_given(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer("GET", "/api/users/currentuser", 200, {"currentUser": ME})
    sent = _json_bodies(gateway, "POST", "/api/events", 201, _event_body())
    form = {
        "name": "Jazz night",
        "venue": "Blue Hall",
        "startsAt": "2030-06-01T22:00",
        "startsAtOffset": "+02:00",
        "onSaleAt": "",
        "onSaleAtOffset": "",
        "maxPerBuyer": " 2 ",
    }
    response = await client.post("/events/new", data=form, headers=SIGNED_IN)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/events/{EVENT}"
    assert sent == [
        {"name": "Jazz night", "venue": "Blue Hall", "startsAt": "2030-06-01T22:00:00+02:00", "maxPerBuyer": 2}
    ]


async def test_listing_tickets_sends_numbers_leaves_an_empty_title_to_the_api_and_says_how_many(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    _signed_in_with_an_event(gateway)
    sent = _json_bodies(gateway, "POST", f"/api/events/{EVENT}/tickets", 201, {"created": 25})
    response = await client.post(
        f"/events/{EVENT}/tickets", data={"count": "25", "price": "12,5", "title": " "}, headers=SIGNED_IN
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/events/{EVENT}?listed=25"
    assert sent == [{"count": 25, "price": 12.5}]
    page = await client.get(response.headers["location"], headers=SIGNED_IN)
    assert parse(page.text).find(role="status").text == "25 tickets put on sale."  # type: ignore[union-attr]


async def test_a_throttled_join_shows_the_event_page_again_with_retry_after(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    _signed_in_with_an_event(gateway)
    gateway.answer(
        "GET", f"/api/queue/{EVENT}", 404, {"errors": [{"message": "You have not joined this event's queue"}]}
    )
    gateway.answer(
        "POST",
        f"/api/queue/{EVENT}",
        429,
        {"errors": [{"message": "Too many attempts to join a queue: retry later"}]},
        **{"Retry-After": "42"},
    )
    response = await client.post(f"/events/{EVENT}/queue", headers=SIGNED_IN)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "42"
    doc = parse(response.text)
    assert doc.find("h1").text == "Jazz night"  # type: ignore[union-attr]
    assert doc.find(role="alert").text == (  # type: ignore[union-attr]
        "Too many attempts to join a queue: retry later Please try again in 42 seconds."
    )
    assert doc.find("form", action=f"/events/{EVENT}/queue") is not None  # still offered


async def test_the_waiting_room_status_is_json_for_the_pages_script(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer(
        "GET",
        f"/api/queue/{EVENT}",
        200,
        {"state": "waiting", "position": 130, "ahead": 129, "estimatedWaitSeconds": 3, "admittedUntil": None},
    )
    response = await client.get(f"/events/{EVENT}/queue/status", headers={"Cookie": "session=abc"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "state": "waiting",
        "key": "waiting:drawn",
        "label": "Waiting in line",
        "position": 130,
        "ahead": 129,
        "estimatedWaitSeconds": 3,
        "estimatedWait": "less than a minute",
        "admittedUntil": None,
    }


async def test_the_waiting_room_status_of_a_visitor_who_has_not_joined_is_a_json_404(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    gateway.answer(
        "GET", f"/api/queue/{EVENT}", 404, {"errors": [{"message": "You have not joined this event's queue"}]}
    )
    response = await client.get(f"/events/{EVENT}/queue/status", headers={**HTML, "Cookie": "session=abc"})
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "You have not joined this event's queue"}]}


async def test_a_waiting_visitors_refresh_takes_them_to_the_tickets_once_admitted(
    gateway: StandInGateway, client: httpx.AsyncClient
) -> None:
    _signed_in_with_an_event(gateway)
    gateway.answer("GET", f"/api/queue/{EVENT}/draw", 200, {"commitment": "c" * 64, "seed": None, "entrants": None})
    gateway.answer(
        "GET",
        f"/api/queue/{EVENT}",
        200,
        {
            "state": "admitted",
            "position": 1,
            "ahead": None,
            "estimatedWaitSeconds": None,
            "admittedUntil": "2100-01-01T00:00:00Z",
        },
    )
    refreshed = await client.get(f"/events/{EVENT}/queue?waiting=1", headers=SIGNED_IN)
    assert refreshed.status_code == 303
    assert refreshed.headers["location"] == f"/events/{EVENT}"
    opened = await client.get(f"/events/{EVENT}/queue", headers=SIGNED_IN)  # opened on purpose: stays
    assert opened.status_code == 200
    assert parse(opened.text).find(id="queue-status").text == "Admitted"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path", ["/events/new", f"/events/{EVENT}/tickets", f"/events/{EVENT}/purchase", f"/events/{EVENT}/queue"]
)
async def test_the_events_forms_are_refused_from_another_site(
    gateway: StandInGateway, client: httpx.AsyncClient, path: str
) -> None:
    _signed_in_with_an_event(gateway)
    response = await client.post(
        path, data={"ticketId": TICKET}, headers={**SIGNED_IN, "Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert _page(response)[0] == "Not allowed"
    assert [r.method for r in gateway.received if r.method != "GET"] == []


# -- traces ----------------------------------------------------------------------------------------------------------

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


async def _home_page_signed_in(gateway: StandInGateway, auth: StandInGateway, **headers: str) -> list[web.Request]:
    """The home page for a signed-in visitor, with auth called at its own URL and the tickets through the gateway:
    the API calls it made, as they arrived (asking who is signed in, then the tickets)."""
    auth.answer("GET", "/api/users/currentuser", 200, {"currentUser": ME})
    gateway.answer("GET", "/api/tickets", 200, {"tickets": [], "next": None})
    # Tracing is on only as the test turns it on (recording_spans), whatever this machine's environment says.
    app = create_app(Settings(api_url=gateway.url, auth_url=auth.url, otel_exporter_otlp_endpoint=""))
    async with LifespanManager(app), http_client(app) as http:
        page = await http.get("/", headers={**HTML, "Cookie": "session=abc", **headers})
    assert page.status_code == 200, page.text
    calls = [*auth.received, *gateway.received]
    assert [(call.method, call.path) for call in calls] == [("GET", "/api/users/currentuser"), ("GET", "/api/tickets")]
    return calls


def _descends_from(span_id: int, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    """Whether the recorded span ``span_id`` is ``ancestor`` or one of its descendants."""
    by_id = {span.context.span_id: span for span in spans}
    while span_id != ancestor.context.span_id:
        span = by_id.get(span_id)
        if span is None or span.parent is None:
            return False
        span_id = span.parent.span_id
    return True


@pytest.mark.parametrize(
    "caller",
    [None, f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"],
    ids=["a trace the page starts", "the trace of the page's caller"],
)
async def test_with_tracing_on_every_api_call_of_a_page_continues_the_pages_trace(
    gateway: StandInGateway, auth: StandInGateway, caller: str | None
) -> None:
    """Each call carries a ``traceparent`` of the page's trace whose parent is the page's span (or a span inside
    it), recorded: so the services' spans of that page join its trace, whichever service is called where."""
    with recording_spans("client") as recorded:
        calls = await _home_page_signed_in(gateway, auth, **({"traceparent": caller} if caller else {}))
        spans = recorded.finished()

    [page] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert page.name == "GET /"
    if caller is not None:
        assert page.parent is not None
        assert (f"{page.context.trace_id:032x}", f"{page.parent.span_id:016x}") == (CALLER_TRACE, CALLER_SPAN)
    for call in calls:
        assert "traceparent" in call.headers, f"{call.path} was called without the page's trace context"
        version, trace_id, parent_id, flags = call.headers["traceparent"].split("-")
        assert (version, trace_id) == ("00", f"{page.context.trace_id:032x}"), call.path
        assert int(flags, 16) & 0x01, f"{call.path}: the trace is recorded (W3C flag sampled), so the service records"
        assert _descends_from(int(parent_id, 16), page, spans), f"{call.path}'s parent is not inside the page's span"


async def test_with_tracing_off_no_api_call_carries_a_trace_context(
    gateway: StandInGateway, auth: StandInGateway
) -> None:
    assert tracing.tracer is None, "tracing is off without OTEL_EXPORTER_OTLP_ENDPOINT"
    calls = await _home_page_signed_in(gateway, auth)
    for call in calls:
        assert "traceparent" not in call.headers, call.path
        assert "tracestate" not in call.headers, call.path
