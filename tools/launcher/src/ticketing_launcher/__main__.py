"""``ticketing``: the developer's command line.

- ``ticketing up``: run the whole system locally (what ``make up`` runs); ``--traces`` (``make up TRACES=1``) also runs
  the trace viewer and has every component send it spans, unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` already names a
  collector of the user's own (then that one gets them).
- ``ticketing traces``: an OTLP/HTTP trace receiver (``--otlp-port``, 4318) and its viewer (``--port``, 16686).
- ``ticketing check``: report every broken invariant across the services' databases and NATS (exit 1 if any).
- ``ticketing keys rotate``: add a new session signing key to auth's key file (created when absent); tokens signed
  with the previous key stay valid until they expire.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from ticketing_common.keys import KeyFileError, rotate_key_file
from ticketing_launcher.check import SERVICES_WITH_DATABASE, check_until_settled
from ticketing_launcher.stack import Stack, run_until_signalled
from ticketing_launcher.traces import (
    DEFAULT_MAX_SPANS,
    DEFAULT_OTLP_PORT,
    DEFAULT_VIEWER_PORT,
    OtlpReceiver,
    serve_until_signalled,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ticketing")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run every service, the gateway and the infrastructure")
    up.add_argument("--port", type=int, default=int(os.environ.get("TICKETING_PORT", "8080")))
    up.add_argument("--state-dir", type=Path, default=Path(os.environ.get("TICKETING_STATE_DIR", ".state")))
    up.add_argument(
        "--traces",
        action="store_true",
        help=f"also run the trace viewer (http://127.0.0.1:{DEFAULT_VIEWER_PORT}) and send it every component's spans "
        "(not when OTEL_EXPORTER_OTLP_ENDPOINT is set: that collector gets them)",
    )
    traces = commands.add_parser("traces", help="receive OTLP/HTTP traces and show them in a local viewer")
    traces.add_argument("--otlp-port", type=int, default=DEFAULT_OTLP_PORT, help="OTLP/HTTP (POST /v1/traces)")
    traces.add_argument("--port", type=int, default=DEFAULT_VIEWER_PORT, help="the viewer")
    traces.add_argument("--host", default="127.0.0.1")
    traces.add_argument("--max-spans", type=int, default=DEFAULT_MAX_SPANS, help="older traces are dropped beyond")
    checker = commands.add_parser("check", help="check the system's invariants (read-only)")
    checker.add_argument("--state-dir", type=Path, default=Path(os.environ.get("TICKETING_STATE_DIR", ".state")))
    checker.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    checker.add_argument("--nats-url", default=os.environ.get("NATS_URL"))
    checker.add_argument("--database-suffix", default="", help="e.g. _test for the test databases")
    checker.add_argument("--settle", type=float, default=0.0, help="re-check for up to this many seconds")
    checker.add_argument("--json", action="store_true", help="print the report as JSON")
    keys = commands.add_parser("keys", help="auth's session signing keys").add_subparsers(dest="action", required=True)
    rotate = keys.add_parser("rotate", help="add a new signing key; the previous ones verify until their tokens expire")
    rotate.add_argument(
        "--file",
        type=Path,
        default=Path(
            os.environ.get(
                "SESSION_KEY_FILE", Path(os.environ.get("TICKETING_STATE_DIR", ".state")) / "session-keys.json"
            )
        ),
        help="the key file auth reads (SESSION_KEY_FILE; default .state/session-keys.json, what `make up` uses)",
    )
    rotate.add_argument(
        "--token-seconds",
        type=int,
        default=int(os.environ.get("JWT_EXPIRES_SECONDS", 24 * 3600)),
        help="session lifetime (JWT_EXPIRES_SECONDS): keys older than that past their successor are dropped",
    )
    rotate.add_argument(
        "--activate-after",
        type=int,
        default=0,
        help="publish the new key at once but sign with it only this many seconds later (several auth replicas: "
        "longer than it takes each to see the file, e.g. 120 for a Kubernetes secret)",
    )
    args = parser.parse_args(argv)

    if args.command == "keys":
        sys.exit(rotate_keys(args.file, token_seconds=args.token_seconds, activate_after=args.activate_after))
    if args.command == "up":
        stack = Stack(state_dir=args.state_dir, gateway_port=args.port, traces=args.traces)
        sys.exit(run_until_signalled(stack))
    if args.command == "traces":
        receiver = OtlpReceiver(host=args.host, port=args.otlp_port, viewer_port=args.port, max_spans=args.max_spans)
        sys.exit(serve_until_signalled(receiver))
    if args.command == "check":
        sys.exit(run_check(args))


def rotate_keys(path: Path, *, token_seconds: int, activate_after: int) -> int:
    try:
        ring = rotate_key_file(path, token_seconds=token_seconds, activate_after=activate_after)
    except KeyFileError as exc:
        print(f"ticketing keys rotate: {exc}", file=sys.stderr)
        return 2
    newest = ring.keys[0]
    when = "now" if newest is ring.signing_key else f"in {activate_after} s (published now)"
    print(f"{path}: new key {newest.kid} signs {when}; {len(ring.keys)} key(s) in the file")
    return 0


def run_check(args: argparse.Namespace) -> int:
    database_url = args.database_url or _embedded_url(
        args.state_dir, "postgres", "postgresql://postgres@127.0.0.1:{}/postgres"
    )
    nats_url = args.nats_url or _embedded_url(args.state_dir, "nats", "nats://127.0.0.1:{}")
    if database_url is None:
        print("ticketing check: set DATABASE_URL or run it beside a `make up` state folder", file=sys.stderr)
        return 2
    databases = {svc: f"ticketing_{svc}{args.database_suffix}" for svc in SERVICES_WITH_DATABASE}
    report = asyncio.run(
        check_until_settled(settle=args.settle, database_url=database_url, nats_url=nats_url, databases=databases)
    )
    print(report.to_json() if args.json else report.render())
    return 0 if report.ok else 1


def _embedded_url(state_dir: Path, server: str, template: str) -> str | None:
    port_file = state_dir / server / "port"
    return template.format(port_file.read_text().strip()) if port_file.exists() else None


if __name__ == "__main__":
    main()
