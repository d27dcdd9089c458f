"""``ticketing-client [serve|migrate]``: the entry point of the image and of ``make up``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from ticketing_client.config import Settings


def main(argv: list[str] | None = None) -> None:
    """``serve`` (default) runs the client with uvicorn; ``migrate`` does nothing (the client has no database)."""
    parser = argparse.ArgumentParser(prog="ticketing-client")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    if args.command == "migrate":
        print("the client has no database: nothing to migrate", file=sys.stderr)
        return

    import uvicorn

    from ticketing_client.main import create_app

    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"]).upper() or "configuration"
            print(f"configuration error: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
