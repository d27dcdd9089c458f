"""``ticketing-bench``: benchmark the whole system (``make bench``; ``--quick`` for ``make bench-quick``).

Exit status 1 when an invariant is broken; timings never fail a run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from ticketing_bench.runner import ALL_SCENARIOS, PROFILES, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ticketing-bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the scaled-down run (make bench-quick)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="full (default), quick or smoke")
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="where report folders go")
    parser.add_argument(
        "--base-url", default=os.environ.get("BASE_URL"), help="benchmark a running system (default: start one)"
    )
    parser.add_argument("--only", nargs="+", choices=ALL_SCENARIOS, help="run only these scenarios")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    console = Console(stderr=True)
    outcome = run(
        profile,
        results_root=args.results,
        base_url=args.base_url,
        scenarios_wanted=tuple(args.only) if args.only else None,
        console=console,
    )
    console.print(f"report: {outcome.folder / 'report.md'}")
    if not outcome.ok:
        console.print("[bold red]INVARIANTS BROKEN[/] (see the report)")
        sys.exit(1)
    console.print("[bold green]invariants hold[/]")


if __name__ == "__main__":
    main()
