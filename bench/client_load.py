"""Concurrent visitors on the web client through the gateway of a running system (``make up``):
``uv run python bench/client_load.py http://127.0.0.1:8080 [visitors=200] [rounds=1]``.

Signs up 5 users and sells a ticket, then each visitor (its own connections, like a browser; every other one
signed in) gets home, the ticket, sign-in and, if signed in, my orders, ``rounds`` times. Prints pages/s,
latency percentiles and the answers by page and status.
"""

import asyncio
import collections
import sys
import time
import uuid

import aiohttp

BASE = sys.argv[1]
VISITORS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 1


async def setup() -> tuple[list[str], str]:
    async with aiohttp.ClientSession() as http:
        sessions = []
        for _ in range(5):
            email = f"load-{uuid.uuid4().hex[:8]}@example.com"
            async with http.post(
                BASE + "/api/users/signup", json={"email": email, "password": "correct horse battery"}
            ) as response:
                assert response.status == 201, await response.text()
                sessions.append(response.cookies["session"].value)
        async with http.post(
            BASE + "/api/tickets", json={"title": "Load concert", "price": 10}, cookies={"session": sessions[0]}
        ) as response:
            ticket = (await response.json())["id"]
        return sessions, ticket


async def visitor(
    i: int, sessions: list[str], ticket: str, seen: collections.Counter[tuple[str, object]], latencies: list[float]
) -> None:
    cookies = {"session": sessions[i % len(sessions)]} if i % 2 == 0 else {}
    async with aiohttp.ClientSession(cookies=cookies, headers={"Accept": "text/html"}) as http:
        paths = ["/", f"/tickets/{ticket}", "/signin"] + (["/orders"] if cookies else [])
        for _ in range(ROUNDS):
            for path in paths:
                started = time.perf_counter()
                try:
                    async with http.get(BASE + path, allow_redirects=False) as response:
                        await response.read()
                        seen[(path.split("/")[1] or "home", response.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    seen[(path, type(exc).__name__)] += 1
                latencies.append(time.perf_counter() - started)


async def main() -> None:
    sessions, ticket = await setup()
    seen: collections.Counter[tuple[str, object]] = collections.Counter()
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(visitor(i, sessions, ticket, seen, latencies) for i in range(VISITORS)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    print(
        f"{VISITORS} visitors x{ROUNDS}: {n} pages in {elapsed:.2f}s = {n / elapsed:.0f}/s; "
        f"p50 {latencies[n // 2] * 1000:.0f} ms p95 {latencies[int(n * 0.95)] * 1000:.0f} ms "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    for key, count in sorted(seen.items(), key=str):
        print(" ", key, count)


asyncio.run(main())
