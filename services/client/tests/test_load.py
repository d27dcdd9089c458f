"""200 visitors at once on the web client, through the gateway, against the whole system: every page renders and
none answers 5xx. The client used to fall over first (its HTTP client's pool), while the APIs answered fine."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable

import aiohttp
import pytest
from client_testing import System, Visitor

pytestmark = pytest.mark.e2e

VISITORS = 200
ROUNDS = 3  # each visitor goes through its pages this many times, so the load lasts past the first burst
SIGNED_IN_ACCOUNTS = 4


async def _visit(
    system: System, session: str | None, pages: dict[str, str], seen: collections.Counter[tuple[str, int]]
) -> list[str]:
    """One visitor (its own connection, like a browser): each page, ``ROUNDS`` times; what went wrong."""
    problems: list[str] = []
    cookies = {"session": session} if session else {}
    async with aiohttp.ClientSession(
        system.url, cookies=cookies, headers={"Accept": "text/html"}, timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        for _ in range(ROUNDS):
            for path, must_show in pages.items():
                async with http.get(path, allow_redirects=False) as response:
                    body = await response.text()
                seen[(path.split("/")[1] or "home", response.status)] += 1
                if response.status != 200 or must_show not in body:
                    problems.append(f"{path}: {response.status} {body[:200]!r}")
    return problems


async def test_200_concurrent_visitors_get_their_pages_without_a_single_5xx(
    system: System, visitors: Callable[[], Visitor]
) -> None:
    seller = visitors()
    seller.sign_up()
    title = f"Load test {uuid.uuid4().hex[:8]}"
    ticket_id = seller.sell(title, "25")
    accounts = [seller] + [visitors() for _ in range(SIGNED_IN_ACCOUNTS - 1)]
    for account in accounts[1:]:
        account.sign_up()
    sessions = [account.http.cookies["session"] for account in accounts]

    public = {"/": title, f"/tickets/{ticket_id}": f"<h1>{title}</h1>", "/signin": 'action="/signin"'}
    signed_in = {**public, "/orders": "<h1>My orders</h1>"}
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                _visit(system, sessions[i % len(sessions)], signed_in, seen)
                if i % 2
                else _visit(system, None, public, seen)
                for i in range(VISITORS)
            )
        ),
        timeout=120,
    )
    elapsed = time.monotonic() - started
    problems = [problem for result in results for problem in result]
    print(f"{VISITORS} visitors, {sum(seen.values())} pages in {elapsed:.1f} s: {dict(seen)}")
    assert not [key for key in seen if key[1] >= 500], dict(seen)
    assert problems == []
    assert sum(seen.values()) == ROUNDS * (VISITORS // 2) * (len(public) + len(signed_in))
