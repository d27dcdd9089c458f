"""The system under test: started in-process the way ``make up`` starts it, or a running one at ``BASE_URL``.

Knows every process (for RSS and CPU), each service's direct URL, how to restart a service with other settings,
how to read its ``/metrics`` and how to wait until the system is quiet (no consumer behind, no outbox row unsent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import nats
import psutil

from ticketing_common.embedded import free_port
from ticketing_launcher.check import SERVICES_WITH_DATABASE, database_dsn
from ticketing_launcher.stack import Stack, isolated_environ

STRIPE_KEY = "sk_test_local_fake_stripe"
# Sign-up is set-up here, not what is measured: cheaper Argon2 parameters make 2,000 sign-ups take seconds,
# not minutes. Every other setting is the one `make up` uses. Set ARGON2_* in the environment to override.
# The throughput scenarios send every order of a run as one buyer (wrk, the saturation drive): orders' per-buyer
# limit on attempts (5/s by default, a guard against one buyer's script) is lifted so they measure the order path.
SETUP_ENV = {
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST": "8192",
    "ARGON2_PARALLELISM": "1",
    "ORDER_ATTEMPTS_PER_SECOND": "1000000",
    "ORDER_ATTEMPTS_BURST": "1000000",
}


@dataclass
class System:
    """URLs and processes of the running system; ``stack`` is None when it runs elsewhere (``BASE_URL``)."""

    urls: dict[str, str]
    stack: Stack | None = None
    state_root: Path | None = None
    log_file: IO[str] | None = None
    stripe_key: str = STRIPE_KEY
    order_window: float | None = None
    environ: dict[str, str] = field(default_factory=dict)  # the settings the local system was started with
    _processes: dict[str, psutil.Process] = field(default_factory=dict)
    _children_seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.urls["gateway"]

    @property
    def local(self) -> bool:
        return self.stack is not None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, results_dir: Path, order_window: float) -> System:
        """Start everything as `make up` does, in a fresh state folder, logs to ``results_dir/system.log``."""
        environ = isolated_environ(ORDER_EXPIRATION_SECONDS=str(int(order_window)))
        for name, value in SETUP_ENV.items():
            environ.setdefault(name, value)
        log_file = (results_dir / "system.log").open("w")
        # Not under pytest's tmp_path: the embedded PostgreSQL may run as its own OS user that must reach it.
        state_root = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
        stack = Stack(state_dir=state_root / "state", gateway_port=free_port(), environ=environ, log_sink=log_file)
        system = cls(
            urls=stack.urls,
            stack=stack,
            state_root=state_root,
            log_file=log_file,
            order_window=order_window,
            environ=environ,
        )
        try:
            stack.start()
            stack.wait_healthy(timeout=120)
        except BaseException:
            system.stop()
            raise
        return system

    @classmethod
    def remote(cls, base_url: str) -> System:
        """A system already running at ``base_url``; DATABASE_URL / NATS_URL / STRIPE_API_BASE add what they can."""
        urls = {"gateway": base_url.rstrip("/")}
        for key, name in (("DATABASE_URL", "database"), ("NATS_URL", "nats"), ("STRIPE_API_BASE", "stripe")):
            if os.environ.get(key):
                urls[name] = os.environ[key].rstrip("/")
        return cls(urls=urls, stripe_key=os.environ.get("STRIPE_KEY", STRIPE_KEY))

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.log_file is not None:
            self.log_file.close()
        if self.state_root is not None:
            shutil.rmtree(self.state_root, ignore_errors=True)

    def restart_service(self, name: str, **env: str) -> None:
        """Restart one service on the same port with extra settings (e.g. another order window)."""
        assert self.stack is not None
        component = self.stack.components[name]
        component.stop()
        component.env.update(env)
        component.start()
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=3) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    # The gateway's /healthz: every service behind it ready.
                    probe = "/healthz" if name == "gateway" else "/readyz"
                    if client.get(self.urls[name] + probe).status_code == 200:
                        self._processes.pop(name, None)
                        return
                time.sleep(0.2)
        raise TimeoutError(f"{name} did not become ready after its restart")

    # -- processes -------------------------------------------------------------------------------------------------

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Every process of the system by component; PostgreSQL includes its backends."""
        if self.stack is None:
            return {}
        found: dict[str, list[psutil.Process]] = {}
        pids: dict[str, int | None] = {name: c.pid for name, c in self.stack.components.items()}
        if self.stack.postgres is not None:
            pids["postgres"] = self.stack.postgres.pid
        if self.stack.nats is not None:
            pids["nats"] = self.stack.nats.pid
        for name, pid in pids.items():
            if pid is None:
                continue
            cached = self._processes.get(name)
            if cached is None or cached.pid != pid:
                with contextlib.suppress(psutil.Error):
                    cached = self._processes[name] = psutil.Process(pid)
            if cached is None:
                continue
            group = [cached]
            if name == "postgres":
                group += self._children(cached)
            found[name] = group
        return found

    def _children(self, parent: psutil.Process) -> list[psutil.Process]:
        """The children of ``parent``. For PostgreSQL (every backend and worker is a child of the postmaster) read
        from ``/proc/<pid>/task/<pid>/children``, one small file, where psutil's ``children()`` reads the stat file
        of every process on the machine; and as Process objects kept from one sample to the next, which do not read
        their start time again. The sampler calls this every 0.5 s in the load generator's process."""
        try:
            pids = [int(p) for p in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()]
        except (OSError, ValueError):
            with contextlib.suppress(psutil.Error):
                return parent.children(recursive=True)
            return []
        known, seen = self._children_seen, {}
        for pid in pids:
            child = known.get(pid)
            if child is None:
                with contextlib.suppress(psutil.Error):
                    child = psutil.Process(pid)
            if child is not None:
                seen[pid] = child
        self._children_seen = seen  # one assignment: the sampler's thread and the scenarios may both be here
        return list(seen.values())

    def sample(self) -> dict[str, dict[str, float]]:
        """RSS (MiB) and CPU seconds (user + system) of each component, now."""
        result: dict[str, dict[str, float]] = {}
        for name, group in self.processes().items():
            rss = cpu = 0.0
            for process in group:
                with contextlib.suppress(psutil.Error), process.oneshot():
                    rss += process.memory_info().rss / 2**20
                    times = process.cpu_times()
                    cpu += times.user + times.system
            result[name] = {"rss_mib": rss, "cpu_s": cpu}
        return result

    # -- observation ---------------------------------------------------------------------------------------------

    async def metrics(self, service: str) -> str:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.urls[service] + "/metrics")
            response.raise_for_status()
            return response.text

    async def backlog(self) -> dict[str, int]:
        """Work still outstanding: per consumer (pending + unacknowledged) and per service's unsent outbox."""
        outstanding: dict[str, int] = {}
        if "nats" in self.urls:
            nc = await nats.connect(self.urls["nats"], connect_timeout=3, max_reconnect_attempts=1)
            try:
                for info in await nc.jetstream().consumers_info("TICKETING"):
                    if info.name.startswith(("auth-", "tickets-", "orders-", "expiration-", "payments-", "queue-")):
                        outstanding[info.name] = (info.num_pending or 0) + (info.num_ack_pending or 0)
            finally:
                await nc.close()
        if "database" in self.urls:
            for svc in SERVICES_WITH_DATABASE:
                conn = await asyncpg.connect(database_dsn(self.urls["database"], f"ticketing_{svc}"))
                try:
                    outstanding[f"outbox:{svc}"] = await conn.fetchval(
                        "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                    )
                finally:
                    await conn.close()
        return outstanding

    async def wait_quiet(self, timeout: float) -> float | None:
        """Wait until nothing is outstanding; returns the seconds it took, or None if ``timeout`` passed first."""
        started = time.monotonic()
        while True:
            if not any((await self.backlog()).values()):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                return None
            await asyncio.sleep(0.25)

    def describe(self) -> dict[str, Any]:
        return {"urls": dict(self.urls), "local": self.local, "order_window_seconds": self.order_window}
