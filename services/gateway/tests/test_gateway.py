"""The gateway routes like the ingress, forwards faithfully, and answers failures in the shared format."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from yarl import URL

from ticketing_common.embedded import free_port
from ticketing_common.routes import ROUTES, route_for
from ticketing_common.testing import recording_spans
from ticketing_gateway.config import Settings
from ticketing_gateway.main import create_app


def echo_service(name: str, *, ready: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(status_code=200 if ready else 503)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def echo(path: str, request: Request) -> Response:
        body = await request.body()
        response = Response(
            content=(
                f'{{"service": "{name}", "path": "/{path}", "query": "{request.url.query}", '
                f'"method": "{request.method}", "body": "{body.decode()}", '
                f'"forwardedFor": "{request.headers.get("x-forwarded-for")}", '
                f'"cookie": "{request.headers.get("cookie", "")}"}}'
            ),
            media_type="application/json",
            status_code=201 if request.method == "POST" else 200,
        )
        response.set_cookie("session", "abc", httponly=True)
        response.set_cookie("other", "def")
        return response

    return app


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def gateway(**urls: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(**urls))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://ticketing.dev") as client:
            yield client


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/users/signup", "auth"),
        ("/api/users", "auth"),
        ("/api/tickets/123", "tickets"),
        ("/api/orders", "orders"),
        ("/api/payments", "payments"),
        ("/api/queue/8b7c0f6e-3f2a-4c1d-9e5b-2a6d4f8c1b3e", "queue"),
        ("/", "client"),
        ("/tickets/abc", "client"),
        ("/api/usersx", "client"),
    ],
)
def test_route_table_sends_each_prefix_to_its_service(path: str, service: str) -> None:
    route = route_for(path)
    assert route is not None
    assert route.service == service


def test_route_table_lists_the_apis_the_public_keys_and_the_client() -> None:
    assert [(r.prefix, r.service) for r in ROUTES] == [
        ("/api/users", "auth"),
        ("/.well-known/jwks.json", "auth"),
        ("/api/tickets", "tickets"),
        ("/api/events", "tickets"),
        ("/api/orders", "orders"),
        ("/api/payments", "payments"),
        ("/api/queue", "queue"),
        ("/", "client"),
    ]


async def test_forwards_method_path_query_body_cookies_and_client_address() -> None:
    async with (
        serve(echo_service("auth")) as auth,
        serve(echo_service("tickets")) as tickets,
        gateway(auth_url=auth, tickets_url=tickets) as client,
    ):
        client.cookies.set("session", "token123")
        response = await client.post("/api/tickets/9?limit=5", content=b"hello")
        users = await client.get("/api/users/currentuser")
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "service": "tickets",
        "path": "/api/tickets/9",
        "query": "limit=5",
        "method": "POST",
        "body": "hello",
        "forwardedFor": "203.0.113.7",
        "cookie": "session=token123",
    }
    assert sorted(response.headers.get_list("set-cookie")) == [
        "other=def; Path=/; SameSite=lax",
        "session=abc; HttpOnly; Path=/; SameSite=lax",
    ]
    assert users.json()["service"] == "auth"


async def test_unknown_routes_are_404_in_the_shared_format() -> None:
    async with gateway() as client:
        response = await client.get("/api/orders")
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


async def test_an_unreachable_service_is_503_in_the_shared_format() -> None:
    async with gateway(orders_url=f"http://127.0.0.1:{free_port()}") as client:
        response = await client.get("/api/orders")
    assert response.status_code == 503
    assert response.json() == {"errors": [{"message": "Service unavailable"}]}


async def test_a_browser_gets_an_html_503_page_when_the_web_client_is_unreachable() -> None:
    async with gateway(client_url=f"http://127.0.0.1:{free_port()}") as client:
        page = await client.get("/tickets/abc", headers={"Accept": "text/html,application/xhtml+xml"})
        api_style = await client.get("/tickets/abc", headers={"Accept": "application/json"})

    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "5"
    assert "<h1>Ticketing is unavailable right now</h1>" in page.text
    assert api_style.status_code == 503
    assert api_style.json() == {"errors": [{"message": "Service unavailable"}]}


async def test_healthz_is_200_only_when_every_service_is_ready() -> None:
    async with serve(echo_service("auth")) as auth, serve(echo_service("orders", ready=False)) as orders:
        async with gateway(auth_url=auth) as client:
            healthy = await client.get("/healthz")
        async with gateway(auth_url=auth, orders_url=orders) as client:
            unhealthy = await client.get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json()["services"] == {"auth": True}
    assert unhealthy.status_code == 503
    assert unhealthy.json()["errors"] == [{"message": "orders is not ready"}]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:9000",
        "http://127.0.0.1:9000/api",
        "http://user@127.0.0.1:9000",
        "http://127.0.0.1:9000?to=elsewhere",
        "http://127.0.0.1:9000#fragment",
        "127.0.0.1:9000",
    ],
)
def test_a_service_url_is_refused_at_start_unless_it_is_a_scheme_host_and_port(url: str) -> None:
    with pytest.raises(ValidationError, match=r"must be http\(s\)://host:port with nothing else"):
        Settings(auth_url=url)


def test_a_service_url_may_end_with_a_slash_and_a_service_without_one_is_not_routed() -> None:
    assert Settings(auth_url="http://127.0.0.1:9000/").upstreams() == {"auth": URL("http://127.0.0.1:9000")}


def traceparent_echo() -> FastAPI:
    app = FastAPI()

    @app.get("/api/tickets")
    async def tickets(request: Request) -> dict[str, str | None]:
        return {"traceparent": request.headers.get("traceparent")}

    return app


async def test_with_tracing_on_the_upstream_continues_the_gateways_span_of_the_callers_trace() -> None:
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with recording_spans("gateway") as spans:
        async with serve(traceparent_echo()) as tickets, gateway(tickets_url=tickets) as client:
            response = await client.get("/api/tickets", headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
        [span] = spans.named("GET /api/tickets")
    _, trace_id, parent_id, _ = response.json()["traceparent"].split("-")
    assert trace_id == caller_trace == f"{span.context.trace_id:032x}"
    assert parent_id == f"{span.context.span_id:016x}"
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == caller_span
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200


async def test_with_tracing_off_the_callers_trace_context_is_forwarded_untouched() -> None:
    sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with serve(traceparent_echo()) as tickets, gateway(tickets_url=tickets) as client:
        response = await client.get("/api/tickets", headers={"traceparent": sent})
    assert response.json() == {"traceparent": sent}
