"""Strings that are valid JSON but not storable text, and look-alike spellings of one email address."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from ticketing_common.schemas import INVALID_TEXT_MESSAGE

PASSWORD = "correct horse battery"
# JSON escapes that decode to strings UTF-8 or PostgreSQL cannot hold.
UNSTORABLE = {"unpaired-high-surrogate": "\ud800", "unpaired-low-surrogate": "x\udfff", "nul": "a\x00b"}

ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("POST", "/api/users/signup", {"email": "grace@example.com", "password": PASSWORD}),
    ("POST", "/api/users/signin", {"email": "ada@example.com", "password": PASSWORD}),
    ("PUT", "/api/users/currentuser", {"currentPassword": PASSWORD, "email": "new@example.com", "password": PASSWORD}),
]


async def _send(client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    # json.dumps escapes an unpaired surrogate as \ud800 (valid JSON) where httpx's json= cannot encode it.
    return await client.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize("text", UNSTORABLE.values(), ids=UNSTORABLE.keys())
async def test_returns_400_naming_the_field_for_text_that_cannot_be_stored(
    client: httpx.AsyncClient,
    sign_up: Callable[..., Awaitable[dict[str, Any]]],
    method: str,
    path: str,
    body: dict[str, str],
    text: str,
) -> None:
    await sign_up("ada@example.com")
    await client.post("/api/users/signin", json={"email": "ada@example.com", "password": PASSWORD})
    for field in body:
        response = await _send(client, method, path, {**body, field: PASSWORD + text})

        assert response.status_code == 400, (field, response.text)
        assert response.json() == {"errors": [{"message": INVALID_TEXT_MESSAGE, "field": field}]}
    assert (await client.get("/api/users/currentuser")).json()["currentUser"]["email"] == "ada@example.com"


@pytest.mark.parametrize(
    "look_alike",
    ["\uff41\uff44\uff41@example.com", "ADA@EXAMPLE.COM", "ada@\uff45xample.com"],
    ids=["full-width", "upper-case", "full-width-domain"],
)
async def test_an_email_is_nfkc_normalised_before_the_uniqueness_check(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]], look_alike: str
) -> None:
    await sign_up("ada@example.com")

    response = await client.post("/api/users/signup", json={"email": look_alike, "password": PASSWORD})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Email in use", "field": "email"}]}
    signed_in = await client.post("/api/users/signin", json={"email": look_alike, "password": PASSWORD})
    assert signed_in.status_code == 200
    assert signed_in.json()["email"] == "ada@example.com"
