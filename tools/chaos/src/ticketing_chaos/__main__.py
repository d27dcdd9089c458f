"""``ticketing-chaos``: the reliability proof (what ``make chaos`` runs). Exit code 1 when anything broke."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ticketing_chaos.run import run_chaos

RESULTS = Path(__file__).resolve().parents[2] / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ticketing-chaos",
        description="Kill (SIGKILL) and restart the system's parts at random under a scripted load, then check "
        "that no invariant is broken. Writes report.md and report.json to RESULTS_DIR/<timestamp>/.",
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", "600")))
    parser.add_argument("--seed", type=int, default=None, help="replay a run's random choices")
    parser.add_argument("--workers", type=int, default=4, help="concurrent load rounds")
    parser.add_argument("--order-window", type=int, default=5, help="ORDER_EXPIRATION_SECONDS of the run")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds the checker may wait for quiet")
    parser.add_argument("--results-dir", type=Path, default=Path(os.environ.get("CHAOS_RESULTS_DIR", RESULTS)))
    args = parser.parse_args(argv)
    folder = args.results_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = run_chaos(
        seconds=args.seconds,
        seed=args.seed,
        workers=args.workers,
        order_window_seconds=args.order_window,
        settle=args.settle,
        results_dir=folder,
        log=sys.stdout,
    )
    print((folder / "report.md").read_text())
    print(f"report: {folder / 'report.md'} and report.json")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
