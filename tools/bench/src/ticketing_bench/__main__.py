"""``ticketing-bench``: benchmark the whole system (``make bench``; ``--quick`` for ``make bench-quick``).

Exit status 1 when an invariant is broken; timings never fail a run.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from ticketing_bench.runner import ALL_SCENARIOS, PROFILES, Profile, run


def choose_profile(name: str, sale: str | None = None) -> Profile:
    """A profile by name; ``sale`` ("TICKETS,BUYERS[,CONNECTIONS]") resizes its flash sale, named in the report."""
    profile = PROFILES[name]
    if not sale:
        return profile
    try:
        sizes = [int(x) for x in sale.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) not in (2, 3) or min(sizes) < 1:
        raise ValueError("--sale wants TICKETS,BUYERS or TICKETS,BUYERS,CONNECTIONS (positive integers)")
    resized = replace(profile.sale, tickets=sizes[0], buyers=sizes[1])
    if len(sizes) == 3:
        resized = replace(resized, connections=sizes[2])
    return replace(profile, name=f"{name}, sale {','.join(map(str, sizes))}", sale=resized)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ticketing-bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the scaled-down run (make bench-quick)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="full (default), quick or smoke")
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="where report folders go")
    parser.add_argument(
        "--base-url", default=os.environ.get("BASE_URL"), help="benchmark a running system (default: start one)"
    )
    parser.add_argument("--only", nargs="+", choices=ALL_SCENARIOS, help="run only these scenarios")
    parser.add_argument(
        "--sale",
        metavar="TICKETS,BUYERS[,CONNECTIONS]",
        help="the flash sale at another size, the profile's other settings kept (e.g. --only flash_sale --sale 200,1000)",
    )
    args = parser.parse_args(argv)
    try:
        profile = choose_profile(args.profile or ("quick" if args.quick else "full"), args.sale)
    except ValueError as exc:
        parser.error(str(exc))
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
