"""Every failure answers in the shared error format."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from ticketing_common.schemas import has_control_characters, is_storable_text
from ticketing_common.testing import http_client


async def test_custom_errors_answer_with_their_status_and_message(demo_app: FastAPI) -> None:
    cases = {
        "bad-request": (400, [{"message": "Ticket is already reserved"}]),
        "forbidden": (403, [{"message": "Forbidden"}]),
        "not-found": (404, [{"message": "Not Found"}]),
        "database": (503, [{"message": "Error connecting to database"}]),
        "field": (400, [{"message": "Email in use", "field": "email"}]),
    }
    async with http_client(demo_app) as client:
        for kind, (status, errors) in cases.items():
            response = await client.get(f"/demo/errors/{kind}")
            assert response.status_code == status, kind
            assert response.json() == {"errors": errors}, kind


async def test_too_many_requests_carries_retry_after(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.get("/demo/errors/too-many")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "42"


async def test_returns_401_when_not_signed_in(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.get("/demo/me")
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}


async def test_validation_errors_are_400_with_one_entry_per_field_named_as_sent(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.post("/demo/tickets", json={"title": "", "price": -1, "userId": "nope"})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {e["field"] for e in errors} == {"title", "price", "userId"}
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)


async def test_missing_fields_are_named(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.post("/demo/tickets", json={})
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"title", "price"}


async def test_malformed_json_is_400(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.post(
            "/demo/tickets", content=b'{"title": ', headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Request body is not valid JSON"}]}


async def test_non_object_body_is_400(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.post("/demo/tickets", json=[1, 2])
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


async def test_unknown_route_is_404_and_wrong_method_is_405(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        missing = await client.get("/nowhere")
        wrong = await client.delete("/demo/tickets")
    assert missing.status_code == 404
    assert missing.json() == {"errors": [{"message": "Not Found"}]}
    assert wrong.status_code == 405
    assert wrong.json() == {"errors": [{"message": "Method Not Allowed"}]}


async def test_body_too_large_is_413(demo_app: FastAPI) -> None:
    big = b'{"title": "' + b"x" * (demo_app.state.settings.max_body_bytes + 10) + b'", "price": 1}'
    async with http_client(demo_app) as client:
        response = await client.post("/demo/tickets", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"errors": [{"message": "Request body too large"}]}


async def test_a_chunked_body_that_outgrows_the_limit_is_413_too(demo_app: FastAPI) -> None:
    # No Content-Length (as the gateway forwards bodies): the limit trips while the app's parser reads it.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(demo_app.state.settings.max_body_bytes // 1000 + 2):
            yield b"x" * 1000
        yield b'", "price": 1}'

    async with http_client(demo_app) as client:
        response = await client.post("/demo/tickets", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"errors": [{"message": "Request body too large"}]}


async def test_unexpected_exception_is_500_without_leaking_and_is_logged(
    demo_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        async with http_client(demo_app) as client:
            response = await client.get("/demo/errors/boom")
    assert response.status_code == 500
    assert response.json() == {"errors": [{"message": "Something went wrong"}]}
    assert "secret internal detail" not in response.text
    assert any("secret internal detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_every_response_carries_a_request_id(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        response = await client.get("/healthz", headers={"x-request-id": "abc123"})
        generated = await client.get("/healthz")
    assert response.headers["x-request-id"] == "abc123"
    assert len(generated.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("text", "storable"),
    [("plain", True), ("emoji \U0001f3ab", True), ("\ud800", False), ("x\udfffy", False), ("nul\x00", False)],
)
def test_storable_text_has_no_nul_and_no_unpaired_surrogate(text: str, storable: bool) -> None:
    assert is_storable_text(text) is storable


@pytest.mark.parametrize(
    ("text", "has_controls"),
    [
        ("Концерт \u05e2\u05d1\u05e8\u05d9\u05ea\u200f", False),
        ("family \U0001f468\u200d\U0001f469", False),
        ("tab\there", True),
        ("esc\x1b[31m", True),
        ("c1\x85", True),
        ("line\u2028break", True),
        ("gpj.\u202eexe", True),
        ("\u2066isolate\u2069", True),
    ],
)
def test_control_characters_include_bidirectional_overrides_but_not_direction_marks(
    text: str, has_controls: bool
) -> None:
    assert has_control_characters(text) is has_controls
