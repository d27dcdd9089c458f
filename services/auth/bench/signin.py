"""What a password costs: Argon2id timings and the auth routes' latency and throughput with the default settings.

Run: ``uv run python services/auth/bench/signin.py [N]`` (default 20). Starts a throwaway PostgreSQL and
nats-server, runs the auth app in-process with the default Argon2 parameters, then measures: one hash and one
verification alone; N sequential sign-ups, sign-ins, wrong-password and unknown-email sign-ins (the last two
should match); and 4 x N concurrent sign-ins (throughput, bounded by the cores and PASSWORD_HASH_CONCURRENCY).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from ticketing_auth.config import Settings
from ticketing_auth.main import MIGRATIONS_DIR, create_app
from ticketing_auth.passwords import Passwords
from ticketing_common.db import migrate
from ticketing_common.embedded import EmbeddedNats, EmbeddedPostgres
from ticketing_common.testing import http_client, running, session_settings

PASSWORD = "correct horse battery"  # noqa: S105 - a benchmark user


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL may run as another OS user
        postgres, nats_server = EmbeddedPostgres(root / "pg", durable=False), EmbeddedNats(root / "nats")
        settings = Settings(
            **session_settings(),
            database_url=postgres.start(),
            nats_url=nats_server.start(),
            signin_max_failures=1_000_000,
            signin_max_failures_per_address=1_000_000,
            log_level="WARNING",
        )
        try:
            await asyncio.to_thread(migrate, settings.sqlalchemy_url, MIGRATIONS_DIR)
            await bench(settings, n)
        finally:
            nats_server.stop()
            postgres.stop()


async def bench(settings: Settings, n: int) -> None:
    print(
        f"argon2id t={settings.argon2_time_cost} m={settings.argon2_memory_cost} KiB "
        f"p={settings.argon2_parallelism}, hash concurrency {settings.password_hash_concurrency}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    passwords = Passwords.from_settings(settings)
    password_hash = await passwords.hash(PASSWORD)
    print(f"hash alone: {await _timed(n, lambda: passwords.hash(PASSWORD))}")
    cpu = time.process_time()
    print(f"verify alone: {await _timed(n, lambda: passwords.verify(password_hash, PASSWORD))}")
    print(f"CPU time per verification (all lanes): {(time.process_time() - cpu) / n * 1000:.1f} ms")

    async with running(create_app(settings)) as app, http_client(app) as client:
        logging.getLogger().setLevel(logging.WARNING)
        emails = [f"user{i}@example.com" for i in range(n)]
        pending = iter(emails)

        async def post(path: str, email: str, password: str, status: int) -> None:
            response = await client.post(path, json={"email": email, "password": password})
            assert response.status_code == status, response.text
            client.cookies.clear()

        print(f"POST signup: {await _timed(n, lambda: post('/api/users/signup', next(pending), PASSWORD, 201))}")
        ok = await _timed(n, lambda: post("/api/users/signin", emails[0], PASSWORD, 200))
        print(f"POST signin, right password: {ok}")
        wrong = _Samples()
        unknown = _Samples()
        for _ in range(n):  # interleaved, so that load changes hit both alike
            await wrong.time(post("/api/users/signin", emails[1], "not the password", 400))
            await unknown.time(post("/api/users/signin", f"{uuid.uuid4().hex}@example.com", "not the password", 400))
        print(f"POST signin, wrong password: {wrong}")
        print(f"POST signin, unknown email: {unknown}")

        started = time.perf_counter()
        results = await asyncio.gather(
            *(client.post("/api/users/signin", json={"email": e, "password": PASSWORD}) for e in emails * 4)
        )
        elapsed = time.perf_counter() - started
        assert all(r.status_code == 200 for r in results)
        print(f"{len(results)} concurrent sign-ins: {elapsed:.2f} s, {len(results) / elapsed:.1f} sign-ins/s")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


class _Samples:
    def __init__(self) -> None:
        self.values: list[float] = []

    async def time(self, work: Awaitable[object]) -> None:
        started = time.perf_counter()
        await work
        self.values.append(time.perf_counter() - started)

    def __str__(self) -> str:
        ms = sorted(v * 1000 for v in self.values)
        p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
        return f"median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, min {ms[0]:.1f} ms (n={len(ms)})"


async def _timed(n: int, work: Callable[[], Awaitable[object]]) -> _Samples:
    samples = _Samples()
    for _ in range(n):
        await samples.time(work())
    return samples


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
