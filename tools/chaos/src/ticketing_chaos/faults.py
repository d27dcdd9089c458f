"""Fault injection: SIGKILL one component at a random moment, restart it after a random pause, time the recovery.

One fault at a time: the next kill waits until the system is healthy again, so each recovery time is the
recovery from one crash. The outbox publisher runs inside each service process, so killing a service is also how
it dies between a commit and the publish (the rows stay unsent and a sweeper, of a replica or of the restarted
process, sends them).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from ticketing_launcher.stack import Stack

DEFAULT_TARGETS = ("auth", "tickets", "orders", "expiration", "payments", "queue", "gateway", "nats", "postgres")


@dataclass
class Restart:
    """One crash and what followed, times in seconds (``at`` from the start of the run)."""

    component: str
    at: float
    pause: float
    start_seconds: float = 0.0
    recovery_seconds: float | None = None  # from the restart until the system is healthy again
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultInjector:
    stack: Stack
    rng: random.Random
    targets: Sequence[str] = DEFAULT_TARGETS
    gap: tuple[float, float] = (2.0, 8.0)  # healthy time between two kills
    pause: tuple[float, float] = (0.5, 5.0)  # how long a killed component stays down
    recovery_timeout: float = 90.0
    log: Callable[[str], None] = print
    restarts: list[Restart] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # components found dead that nobody killed
    _started: float = field(default_factory=time.monotonic)

    def run(self, stop: threading.Event) -> None:
        """Kill and restart until ``stop`` is set (meant for a thread: the stack's calls block)."""
        with httpx.Client(timeout=2) as http:
            while not stop.wait(self.rng.uniform(*self.gap)):
                name = self.rng.choice(list(self.targets))
                restart = Restart(
                    name, round(time.monotonic() - self._started, 2), round(self.rng.uniform(*self.pause), 2)
                )
                self.restarts.append(restart)
                self.log(f"chaos: kill -9 {name} (down {restart.pause}s)")
                self.stack.component(name).kill()
                time.sleep(restart.pause)
                began = time.monotonic()
                try:
                    self._start(name)
                except Exception as exc:
                    restart.error = f"restart failed: {exc!r}"
                    self.log(f"chaos: {name} {restart.error}")
                    continue
                restart.start_seconds = round(time.monotonic() - began, 2)
                restart.recovery_seconds = self.wait_healthy(http, timeout=self.recovery_timeout)
                if restart.recovery_seconds is None:
                    restart.error = f"not healthy {self.recovery_timeout}s after the restart"
                    self.log(f"chaos: {name} {restart.error}")
                else:
                    restart.recovery_seconds = round(restart.recovery_seconds + restart.start_seconds, 2)
                    self.log(f"chaos: {name} back, system healthy {restart.recovery_seconds}s after the restart")

    def _start(self, name: str) -> None:
        """Start the component again; PostgreSQL may need a moment while the killed server's backends exit."""
        deadline = time.monotonic() + 30
        while True:
            try:
                component: Any = self.stack.component(name)  # every component has start()
                component.start()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def revive_all(self) -> None:
        """Start whatever is down (used before the final check)."""
        for name in ("postgres", "nats", *self.stack.components):
            with contextlib.suppress(KeyError):
                if not self.stack.component(name).running():
                    self._start(name)

    def wait_healthy(self, http: httpx.Client, *, timeout: float) -> float | None:
        """Seconds until the gateway's /healthz (every service ready) and the expiration service's /readyz
        answer 200; None after ``timeout``. A component that died by itself meanwhile is recorded and restarted."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            for name, component in self.stack.components.items():
                if not component.running():
                    self.crashes.append(name)
                    self.log(f"chaos: {name} died without being killed; restarting it")
                    component.start()
            if self._healthy(http):
                return time.monotonic() - began
            time.sleep(0.1)
        return None

    def _healthy(self, http: httpx.Client) -> bool:
        try:
            if http.get(self.stack.urls["gateway"] + "/healthz").status_code != 200:
                return False
            return "expiration" not in self.stack.urls or (
                http.get(self.stack.urls["expiration"] + "/readyz").status_code == 200
            )
        except httpx.HTTPError:
            return False
