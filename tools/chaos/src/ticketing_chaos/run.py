"""One chaos run: the whole system (as ``make up`` runs it), the load, the faults, then the consistency check.

Steps: start a throwaway stack (its own state folder, free ports, short order expiries); run the load and
the fault injector side by side for ``seconds``; stop both; start whatever is still down and wait until the
system is healthy; run the consistency checker until it is clean or ``settle`` seconds have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from ticketing_chaos.faults import DEFAULT_TARGETS, FaultInjector, Restart
from ticketing_chaos.load import Load
from ticketing_chaos.report import write_report
from ticketing_chaos.tally import Tally
from ticketing_launcher.check import Report, check_until_settled
from ticketing_launcher.stack import Stack, isolated_environ, throwaway_stack


# Variables of the developer's environment that would point the stack somewhere else than its own servers.
@dataclass
class ChaosResult:
    """Everything the report says; ``ok`` is the verdict."""

    seed: int
    seconds: float
    started_at: str
    order_window_seconds: int
    workers: int
    tally: Tally
    restarts: list[Restart]
    crashes: list[str]
    check: Report | None
    final_recovery_seconds: float | None
    notes: list[str] = field(default_factory=list)
    unhandled_errors: list[str] = field(default_factory=list)

    @property
    def kills(self) -> dict[str, int]:
        return dict(Counter(r.component for r in self.restarts))

    @property
    def failed_restarts(self) -> list[Restart]:
        return [r for r in self.restarts if r.error is not None]

    @property
    def invariants_broken(self) -> int:
        return len(self.check.violations) if self.check is not None else 1

    @property
    def ok(self) -> bool:
        return (
            self.invariants_broken == 0
            and self.tally.kinds.get("unclean", 0) == 0
            and not self.failed_restarts
            and not self.crashes
            and self.final_recovery_seconds is not None
        )

    def recovery_summary(self) -> dict[str, dict[str, float]]:
        by_component: dict[str, list[float]] = {}
        for restart in self.restarts:
            if restart.recovery_seconds is not None:
                by_component.setdefault(restart.component, []).append(restart.recovery_seconds)
        return {
            name: {
                "restarts": len(times),
                "min": min(times),
                "median": round(statistics.median(times), 2),
                "max": max(times),
            }
            for name, times in sorted(by_component.items())
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "seconds": self.seconds,
            "started_at": self.started_at,
            "order_window_seconds": self.order_window_seconds,
            "workers": self.workers,
            "faults": len(self.restarts),
            "kills": self.kills,
            "requests": self.tally.requests,
            "requests_by_kind": dict(self.tally.kinds),
            "requests_failed": self.tally.failed,
            "statuses": dict(sorted(self.tally.statuses.items())),
            "by_route": dict(sorted(self.tally.by_route.items())),
            "outcomes": dict(sorted(self.tally.outcomes.items())),
            "unclean_samples": self.tally.unclean_samples,
            "invariants_broken": self.invariants_broken,
            "violations": [
                {"invariant": v.invariant, "detail": v.detail, "refs": v.refs}
                for v in (self.check.violations if self.check else [])
            ],
            "checked": self.check.counts if self.check else {},
            "restarts": [r.to_dict() for r in self.restarts],
            "failed_restarts": len(self.failed_restarts),
            "crashes": self.crashes,
            "recovery": self.recovery_summary(),
            "final_recovery_seconds": self.final_recovery_seconds,
            "notes": self.notes,
            "unhandled_errors": self.unhandled_errors,
        }


async def _drive(
    stack: Stack, *, seconds: float, seed: int, workers: int, window: int, settle: float, log: TextIO
) -> tuple[Tally, FaultInjector, float | None, Report | None]:
    def say(text: str) -> None:
        stack.logs.say(text)
        print(text, file=log, flush=True)

    rng = random.Random(seed)  # noqa: S311 - replayable choices, not secrets
    tally = Tally()
    load = Load(stack.urls["gateway"], tally, random.Random(rng.random()), order_window_seconds=window)  # noqa: S311
    injector = FaultInjector(stack, random.Random(rng.random()), targets=DEFAULT_TARGETS, log=say)  # noqa: S311
    stop = threading.Event()
    faults = asyncio.create_task(asyncio.to_thread(injector.run, stop))
    try:
        await load.run(workers=workers, deadline=time.monotonic() + seconds)
    finally:
        stop.set()
        await faults
    say(f"chaos: load stopped after {tally.requests} requests; reviving every component")
    await asyncio.to_thread(injector.revive_all)
    with httpx.Client(timeout=2) as http:
        recovered = await asyncio.to_thread(injector.wait_healthy, http, timeout=120)
    if recovered is None:
        say("chaos: the system did not become healthy after the run")
        return tally, injector, None, None
    say(f"chaos: healthy again after {recovered:.2f}s; checking consistency (settle up to {settle}s)")
    report = await check_until_settled(settle=settle, database_url=stack.urls["database"], nats_url=stack.urls["nats"])
    say(report.render())
    return tally, injector, round(recovered, 2), report


def run_chaos(
    *,
    seconds: float,
    seed: int | None = None,
    workers: int = 4,
    order_window_seconds: int = 5,
    settle: float = 60.0,
    results_dir: Path,
    log: TextIO,
) -> ChaosResult:
    """Run the system under load and faults for ``seconds``, check it, and write the report to ``results_dir``."""
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    results_dir.mkdir(parents=True, exist_ok=True)
    environ = isolated_environ(ORDER_EXPIRATION_SECONDS=str(order_window_seconds))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with (
        (results_dir / "system.log").open("w") as sink,
        throwaway_stack(environ, log_sink=sink, prefix="ticketing-chaos-") as stack,
    ):
        print(f"chaos: system up at {stack.urls['gateway']} (seed {seed}, {seconds}s)", file=log, flush=True)
        tally, injector, recovered, report = asyncio.run(
            _drive(
                stack,
                seconds=seconds,
                seed=seed,
                workers=workers,
                window=order_window_seconds,
                settle=settle,
                log=log,
            )
        )
    result = ChaosResult(
        seed=seed,
        seconds=seconds,
        started_at=started_at,
        order_window_seconds=order_window_seconds,
        workers=workers,
        tally=tally,
        restarts=injector.restarts,
        crashes=injector.crashes,
        check=report,
        final_recovery_seconds=recovered,
        unhandled_errors=unhandled_errors(results_dir / "system.log"),
    )
    write_report(result, results_dir)
    return result


def unhandled_errors(system_log: Path, *, limit: int = 20) -> list[str]:
    """The components' "unhandled error" log lines, each as ``component path: the exception's last line``, so a
    report (or a CI log) names the cause of an unclean answer without the full log."""
    found: list[str] = []
    with system_log.open() as lines:
        for line in lines:
            component, _, text = line.partition(" | ")
            if '"unhandled error"' not in text:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(text)
                last = (entry.get("exception") or "").strip().splitlines()[-1:] or ["(no traceback)"]
                found.append(f"{component.strip()} {entry.get('path', '')}: {last[0]}")
            if len(found) >= limit:
                break
    return found
