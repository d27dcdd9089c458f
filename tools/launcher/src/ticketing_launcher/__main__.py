"""``ticketing``: the developer's command line.

- ``ticketing up``: run the whole system locally (what ``make up`` runs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ticketing_launcher.stack import Stack, run_until_signalled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ticketing")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run every service, the gateway and the infrastructure")
    up.add_argument("--port", type=int, default=int(os.environ.get("TICKETING_PORT", "8080")))
    up.add_argument("--state-dir", type=Path, default=Path(os.environ.get("TICKETING_STATE_DIR", ".state")))
    args = parser.parse_args(argv)

    if args.command == "up":
        stack = Stack(state_dir=args.state_dir, gateway_port=args.port)
        sys.exit(run_until_signalled(stack))


if __name__ == "__main__":
    main()
