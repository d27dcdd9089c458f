"""Hostile bodies through the gateway: too large, wrongly typed, deeply nested, absurd numbers, NaN, control
characters, SQL and HTML. Each is refused cleanly (4xx in the shared format) or stored exactly as sent, and the
web client renders stored text escaped."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import markupsafe
import pytest

from ticketing_chaos.hostile import System
from ticketing_chaos.tally import is_error_body

pytestmark = pytest.mark.e2e

# Every route that takes a JSON body, with a valid body for it.
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/users/signup", {"email": "x@example.com", "password": "long enough"}),
    ("POST", "/api/users/signin", {"email": "x@example.com", "password": "long enough"}),
    ("PUT", "/api/users/currentuser", {"currentPassword": "long enough", "email": "y@example.com"}),
    ("POST", "/api/tickets", {"title": "Concert", "price": 10}),
    ("POST", "/api/orders", {"ticketId": str(uuid.uuid4())}),
    ("POST", "/api/payments", {"orderId": str(uuid.uuid4()), "token": "tok_visa"}),
]
SQL = ["'; DROP TABLE tickets; --", "' OR '1'='1", "1; SELECT pg_sleep(10)", "\\'; TRUNCATE users; --"]
HTML = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>', "<b>bold</b> & co"]
UNICODE = ["Ünïcödé ✓", "коncert 🎫", "עברית‏ RTL", "zero\u200bwidth", "e\u0301", "💥" * 50]  # noqa: RUF001 - homoglyphs on purpose


@pytest.fixture
def signed_in(system: System) -> httpx.Client:
    client, _ = system.user()
    return client


def _assert_clean_refusal(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert is_error_body(response.json()), response.text


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
def test_an_oversized_body_is_413(signed_in: httpx.Client, method: str, path: str, body: dict[str, Any]) -> None:
    huge = {**body, "padding": "x" * 70_000}

    _assert_clean_refusal(signed_in.request(method, path, json=huge), 413)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_body_that_is_not_json_is_refused(
    signed_in: httpx.Client, method: str, path: str, body: dict[str, Any], content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = signed_in.request(method, path, content=b"title=x&price=1", headers=headers)

    _assert_clean_refusal(response, 400, 415)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 20_000 + b"]" * 20_000,  # deeply nested
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"{",
        b"",
        b"null",
        b"\xff\xfe\x00",
        b'{"title": "x", "price": NaN}',
        b'{"title": "x", "price": Infinity, "ticketId": -Infinity}',
    ],
    ids=["nested-arrays", "nested-objects", "truncated", "empty", "null", "not-utf8", "nan", "infinity"],
)
def test_malformed_and_pathological_json_is_a_400(
    signed_in: httpx.Client, method: str, path: str, body: dict[str, Any], raw: bytes
) -> None:
    response = signed_in.request(method, path, content=raw, headers={"content-type": "application/json"})

    _assert_clean_refusal(response, 400)


@pytest.mark.parametrize(
    "price",
    ["1" + "0" * 400, "1e400", "-1e400", "1e-400", "99999999999999999999", "-1", "0.001", "1e2", "true", '"10"'],
)
def test_absurd_prices_are_refused_or_taken_exactly(signed_in: httpx.Client, price: str) -> None:
    raw = f'{{"title": "Numbers", "price": {price}}}'.encode()

    response = signed_in.post("/api/tickets", content=raw, headers={"content-type": "application/json"})

    if response.status_code == 201:
        assert price in ("1e2",), f"{price} accepted as {response.json()['price']}"
        assert response.json()["price"] == 100
    else:
        _assert_clean_refusal(response, 400)
        assert response.json()["errors"][0]["field"] == "price"


@pytest.mark.parametrize("text", [*SQL, *HTML, *UNICODE], ids=lambda t: repr(t)[:24])
def test_injection_and_unicode_titles_are_stored_verbatim(system: System, signed_in: httpx.Client, text: str) -> None:
    created = signed_in.post("/api/tickets", json={"title": text, "price": 5})

    assert created.status_code == 201, created.text
    with system.client() as anyone:
        stored = anyone.get(f"/api/tickets/{created.json()['id']}").json()
    assert stored["title"] == text.strip()


@pytest.mark.parametrize(
    "text", ["nul\x00byte", "\x00", "esc\x1b[31m", "tab\there", "bell\x07", "lone surrogate \ud800"], ids=repr
)
def test_control_characters_are_refused_or_stored_verbatim_never_a_500(signed_in: httpx.Client, text: str) -> None:
    raw = ('{"title": "' + text.encode("unicode_escape").decode().replace("\\x", "\\u00") + '", "price": 5}').encode()

    response = signed_in.post("/api/tickets", content=raw, headers={"content-type": "application/json"})

    if response.status_code == 201:
        assert response.json()["title"] == text.strip()
    else:
        _assert_clean_refusal(response, 400)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
@pytest.mark.parametrize("text", ["\ud800", "x\udfff", "a\x00b"], ids=["high-surrogate", "low-surrogate", "nul"])
def test_every_string_field_refuses_text_that_cannot_be_stored_with_a_400_naming_it(
    signed_in: httpx.Client, method: str, path: str, body: dict[str, Any], text: str
) -> None:
    for field, value in body.items():
        # json.dumps escapes an unpaired surrogate as \ud800: valid JSON that no UTF-8 text can hold.
        raw = json.dumps({**body, field: f"{value}{text}"})

        response = signed_in.request(method, path, content=raw, headers={"content-type": "application/json"})

        _assert_clean_refusal(response, 400)
        assert [e.get("field") for e in response.json()["errors"]] == [field], response.text


@pytest.mark.parametrize("value", [*SQL, "../../etc/passwd", "%00", "1 OR 1=1"], ids=lambda t: repr(t)[:24])
def test_injection_strings_in_ids_and_paths_find_nothing(signed_in: httpx.Client, value: str) -> None:
    _assert_clean_refusal(signed_in.post("/api/orders", json={"ticketId": value}), 400)
    _assert_clean_refusal(signed_in.post("/api/payments", json={"orderId": value, "token": "tok_visa"}), 400)
    quoted = httpx.URL("/api/tickets/").join(value.replace("/", "%2F")).raw_path.decode()
    for path in (f"/api/tickets/{value}", f"/api/orders/{value}"):
        response = signed_in.get(path if "/" not in value else quoted)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert is_error_body(response.json())
    _assert_clean_refusal(signed_in.post("/api/users/signin", json={"email": value, "password": value}), 400)


def test_html_in_a_title_is_rendered_escaped_by_the_web_client(system: System, signed_in: httpx.Client) -> None:
    title = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
    ticket = signed_in.post("/api/tickets", json={"title": title, "price": 7}).json()

    with system.client() as browser:
        deadline = time.monotonic() + 10
        page = browser.get(f"/tickets/{ticket['id']}")
        while page.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            page = browser.get(f"/tickets/{ticket['id']}")
        home = browser.get("/")

    for response in (page, home):
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        assert title not in response.text
        assert "<script>alert" not in response.text
        assert "onerror=alert" not in response.text.replace("onerror=alert(1)&gt;", "")
    assert str(markupsafe.escape(title)) in page.text
