"""Scenario 6: session revocation latency. How long after the answer to ``POST /api/users/signout`` every service
refuses the session's cookie.

One session at a time: check that every service accepts the cookie, sign out through the gateway (t0 = the
moment the answer arrived), then poll every service with the old cookie, concurrently, one request in flight per
service and a new one ~5 ms after the previous was sent, until it refuses it. A service's latency is the time
from t0 to the sending of the first poll it refused (so it is a bound within one poll interval plus one round
trip). Each service is polled directly when its URL is known (local mode), through the gateway otherwise.

Each probe is a cheap route that reads the session without side effects, whose signed-in answer differs from
its refusal. The protected routes resolve the session before they validate the body (FastAPI solves the
dependencies first), so an empty body answers 400 signed in and 401 once the session is refused, touching
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ticketing_bench import client
from ticketing_bench.client import User
from ticketing_bench.stats import summary
from ticketing_bench.system import System

NOT_AUTHORIZED = {"errors": [{"message": "Not authorized"}]}
ALL_SERVICES = "all services"


@dataclass(frozen=True)
class RevocationSize:
    sessions: int
    poll_interval: float = 0.005
    deadline: float = 10.0  # a service still accepting the cookie this long after t0 counts as not refusing it


@dataclass(frozen=True)
class Probe:
    """A request that reads the session: the answer a live session gets, and the one a refused session gets."""

    service: str
    method: str
    path: str
    body: Any  # a JSON body, or None
    live_status: int
    reads_current_user: bool = False  # auth's currentuser: 200 either way, the body tells

    def accepted(self, status: int, body: Any) -> bool:
        if status != self.live_status:
            return False
        return not self.reads_current_user or (isinstance(body, dict) and body.get("currentUser") is not None)

    def refused(self, status: int, body: Any) -> bool:
        if self.reads_current_user:
            return status == 200 and isinstance(body, dict) and "currentUser" in body and body["currentUser"] is None
        return status == 401 and body == NOT_AUTHORIZED

    def describe(self) -> dict[str, str]:
        live, refused = (
            ("200 with the user", '200 {"currentUser": null}')
            if self.reads_current_user
            else (str(self.live_status), '401 {"errors": [{"message": "Not authorized"}]}')
        )
        route = f"{self.method} {self.path}" + (" with body {}" if self.body is not None else "")
        return {"route": route, "live": live, "refused": refused}


PROBES = (
    Probe("auth", "GET", "/api/users/currentuser", None, 200, reads_current_user=True),
    Probe("tickets", "POST", "/api/tickets", {}, 400),  # 400: the empty body, once the session is accepted
    Probe("orders", "GET", "/api/orders", None, 200),  # the user's orders: none
    Probe("payments", "POST", "/api/payments", {}, 400),
)
NOT_MEASURED = {
    "expiration": "no HTTP route of its own reads a session (it works on events alone; health, readiness and "
    "metrics only), so no request can show whether it refuses a cookie",
}


@dataclass
class Poll:
    """One service's polling after one sign-out."""

    latency: float | None = None  # seconds from t0 to the sending of the first refused poll; None: not refused
    polls: int = 0
    round_trips: list[float] = field(default_factory=list)
    unexpected: dict[str, int] = field(default_factory=dict)


async def _ask(http: aiohttp.ClientSession, base: str, probe: Probe, user: User) -> client.Reply:
    return await client.call(http, probe.method, base + probe.path, user=user, json=probe.body)


async def poll_until_refused(
    http: aiohttp.ClientSession,
    base: str,
    probe: Probe,
    user: User,
    t0: float,
    *,
    interval: float,
    deadline: float,
) -> Poll:
    """Poll ``probe`` with ``user``'s cookie from t0 until the service refuses it or ``deadline`` s have passed."""
    result = Poll()
    next_send = t0
    while True:
        now = time.perf_counter()
        if now - t0 > deadline:
            return result
        if next_send > now:
            await asyncio.sleep(next_send - now)
        sent = time.perf_counter()
        next_send = sent + interval
        try:
            reply = await _ask(http, base, probe, user)
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = type(exc).__name__
            result.unexpected[kind] = result.unexpected.get(kind, 0) + 1
            continue
        result.polls += 1
        result.round_trips.append(reply.seconds)
        if probe.refused(reply.status, reply.body):
            result.latency = sent - t0
            return result
        if not probe.accepted(reply.status, reply.body):
            key = str(reply.status)
            result.unexpected[key] = result.unexpected.get(key, 0) + 1


async def revoke_one(
    http: aiohttp.ClientSession,
    gateway: str,
    bases: dict[str, str],
    user: User,
    probes: tuple[Probe, ...],
    size: RevocationSize,
) -> dict[str, Poll] | str:
    """Sign ``user`` out and time every service's refusal; a sentence instead when the measurement cannot start
    (a service does not accept the live cookie, or the sign-out fails)."""
    for probe in probes:
        reply = await _ask(http, bases[probe.service], probe, user)
        if not probe.accepted(reply.status, reply.body):
            return f"{probe.service} did not accept the live session before sign-out: {reply.status} {reply.body}"
    reply = await client.call(http, "POST", gateway + "/api/users/signout", user=user)
    t0 = time.perf_counter()  # the sign-out's answer has arrived (call returns once its body is read)
    if reply.status != 200:
        return f"sign-out answered {reply.status} {reply.body}"
    polls = await asyncio.gather(
        *(
            poll_until_refused(http, bases[p.service], p, user, t0, interval=size.poll_interval, deadline=size.deadline)
            for p in probes
        )
    )
    return {p.service: poll for p, poll in zip(probes, polls, strict=True)}


def summarise(outcomes: list[dict[str, Poll] | str], probes: tuple[Probe, ...], size: RevocationSize) -> dict[str, Any]:
    """Per service and across all services: latency (ms) p50/p95/p99/max, how many sessions were never refused
    (counted at the deadline, a lower bound), the polls' round trips (the measurement's resolution)."""
    measured = [o for o in outcomes if isinstance(o, dict)]
    samples: dict[str, list[float]] = {p.service: [] for p in probes}
    not_refused: dict[str, int] = {p.service: 0 for p in probes}
    round_trips: dict[str, list[float]] = {p.service: [] for p in probes}
    unexpected: dict[str, dict[str, int]] = {p.service: {} for p in probes}
    polls: dict[str, int] = {p.service: 0 for p in probes}
    for outcome in measured:
        for service, poll in outcome.items():
            if poll.latency is None:
                not_refused[service] += 1
            samples[service].append((poll.latency if poll.latency is not None else size.deadline) * 1000)
            round_trips[service] += [x * 1000 for x in poll.round_trips]
            polls[service] += poll.polls
            for key, count in poll.unexpected.items():
                unexpected[service][key] = unexpected[service].get(key, 0) + count
    every = [x for values in samples.values() for x in values]
    latency = {service: summary(values) for service, values in samples.items()}
    latency[ALL_SERVICES] = summary(every)
    return {
        "sessions": size.sessions,
        "measured_sessions": len(measured),
        "problems": [o for o in outcomes if isinstance(o, str)],
        "poll_interval_ms": size.poll_interval * 1000,
        "deadline_s": size.deadline,
        "probes": {p.service: p.describe() for p in probes},
        "not_measured": dict(NOT_MEASURED),
        "latency_ms": latency,
        "not_refused": {**not_refused, ALL_SERVICES: sum(not_refused.values())},
        "polls": polls,
        "poll_round_trip_ms": {service: summary(values) for service, values in round_trips.items()},
        "unexpected_answers": {service: found for service, found in unexpected.items() if found},
        "samples_ms": samples,
    }


async def measure(system: System, size: RevocationSize, *, tick: Callable[[], None]) -> dict[str, Any]:
    """Sign up ``size.sessions`` users through the gateway, then revoke their sessions one at a time."""
    probes = PROBES
    bases = {p.service: system.urls.get(p.service, system.gateway) for p in probes}
    async with client.session(16) as http:
        users = await client.sign_up_many(http, system.gateway, "revoked", size.sessions)
        outcomes: list[dict[str, Poll] | str] = []
        for user in users:
            outcomes.append(await revoke_one(http, system.gateway, bases, user, probes, size))
            tick()
    result = summarise(outcomes, probes, size)
    result["polled_at"] = {service: ("gateway" if base == system.gateway else base) for service, base in bases.items()}
    return result
