"""No password, password hash or session token ever appears in a log line, a response body, an event or an error."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from ticketing_auth import queries
from ticketing_common.logging import JsonFormatter
from ticketing_common.testing import ReceivedEvent

PASSWORD = "first-Secret-pa55word"
NEW_PASSWORD = "second-Secret-pa55word"
WRONG = "wrong-Secret-pa55word"
TOO_SHORT = "Sh0rt!"


async def test_sign_up_in_update_and_out_leave_no_secret_in_logs_bodies_or_events(
    client: httpx.AsyncClient,
    app: FastAPI,
    caplog: pytest.LogCaptureFixture,
    published: Callable[[str], Awaitable[list[ReceivedEvent]]],
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, asyncpg's included
    responses = [
        await client.post("/api/users/signup", json={"email": "ada@example.com", "password": TOO_SHORT}),
        await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD}),
        await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD}),
        await client.post("/api/users/signin", json={"email": "ada@example.com", "password": WRONG}),
        await client.post("/api/users/signin", json={"email": "nobody@example.com", "password": WRONG}),
        await client.post("/api/users/signin", json={"email": "ada@example.com", "password": PASSWORD}),
        await client.put("/api/users/currentuser", json={"currentPassword": WRONG, "password": NEW_PASSWORD}),
        await client.put("/api/users/currentuser", json={"currentPassword": PASSWORD, "password": TOO_SHORT}),
        await client.put(
            "/api/users/currentuser",
            json={"currentPassword": PASSWORD, "email": "king@example.com", "password": NEW_PASSWORD},
        ),
        await client.get("/api/users/currentuser"),
        await client.post("/api/users/signout"),
    ]
    hashes = [row["password_hash"] for row in await app.state.db.pool.fetch("SELECT password_hash FROM users")]
    events = await published("user.created") + await published("user.updated")

    formatter = JsonFormatter("auth")
    logs = "\n".join(formatter.format(record) for record in caplog.records)
    # The capture works and is as verbose as it gets: every request and every use case's outcome is in it.
    assert '"message": "request"' in logs
    for outcome in ("user signed up", "sign-in failed", "user signed in", "current password check failed"):
        assert outcome in logs
    assert "user updated" in logs
    tokens = [
        value
        for r in responses
        for value in [r.cookies.get("session")]
        if value  # every session token issued
    ]
    assert len(tokens) >= 3
    secrets = [PASSWORD, NEW_PASSWORD, WRONG, TOO_SHORT, *hashes, *tokens]
    assert len(hashes) == 1
    for secret in secrets:
        assert secret not in logs
        for response in responses:
            assert secret not in response.text
        for event in events:
            assert secret not in json.dumps(event.data)
            assert secret not in json.dumps(event.headers)
    # Not even a recognisable piece of a hash: its salt.
    salt = hashes[0].split("$")[4]
    assert salt not in logs


async def test_a_failed_statement_does_not_carry_the_hash_in_its_message(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Such messages end up in logs when an unexpected database error is logged with its traceback. The statement
    # that can fail with a hash among its values: an email change (with a new password) onto a taken email.
    await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
    grace = await client.post("/api/users/signup", json={"email": "grace@example.com", "password": PASSWORD})
    password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2VjcmV0c2FsdA$c2VjcmV0aGFzaHNlY3JldGhhc2g"

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await queries.update_user(
            app.state.db.pool,
            user_id=uuid.UUID(grace.json()["id"]),
            seen_version=0,
            email="ada@example.com",
            password_hash=password_hash,
        )

    assert "uq_users_email" in str(raised.value)
    for text in (str(raised.value), repr(raised.value), str(raised.value.as_dict())):
        assert password_hash not in text


def test_request_bodies_never_show_passwords_when_printed() -> None:
    from ticketing_auth.schemas import CredentialsIn, SignUpIn, UpdateUserIn

    bodies: list[Any] = [
        SignUpIn.model_validate({"email": "ada@example.com", "password": PASSWORD}),
        CredentialsIn.model_validate({"email": "ada@example.com", "password": PASSWORD}),
        UpdateUserIn.model_validate({"currentPassword": PASSWORD, "password": NEW_PASSWORD}),
    ]

    for body in bodies:
        assert PASSWORD not in repr(body)
        assert PASSWORD not in str(body)
        assert NEW_PASSWORD not in repr(body)
