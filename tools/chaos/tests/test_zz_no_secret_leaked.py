"""No secret (auth's private session key, STRIPE_KEY, a password, an Argon2 hash, a session cookie) appears in any log line of the
whole system or in any error body the hostile suite received. Named to run after the other hostile tests, so it
scans everything they caused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ticketing_chaos.hostile import System
from ticketing_launcher.check import database_dsn

pytestmark = pytest.mark.e2e


async def _password_hashes(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_dsn(database_url, "ticketing_auth"))
    try:
        return [row["password_hash"] for row in await conn.fetch("SELECT password_hash FROM users")]
    finally:
        await conn.close()


def test_no_secret_is_logged_or_answered(system: System) -> None:
    system.user()  # at least one user, cookie and hash, even when this test runs alone
    hashes = asyncio.run(_password_hashes(system.stack.urls["database"]))
    secrets = {s for s in system.secrets | set(hashes) if len(s) >= 8}
    log = system.log_file.read_text(errors="replace")

    assert hashes
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert log.count('"message": "request"') >= 5, "the services' request logs were not captured"
    leaked_in_log = sorted(s[:12] + "…" for s in secrets if s in log)
    leaked_in_bodies = sorted(s[:12] + "…" for s in secrets if any(s in body for body in system.error_bodies))
    assert leaked_in_log == []
    assert leaked_in_bodies == []
    # The salts and digests alone are secrets too: no fragment of a hash either.
    fragments = [part for h in hashes for part in h.split("$") if len(part) >= 16]
    assert [f[:8] for f in fragments if f in log] == []
