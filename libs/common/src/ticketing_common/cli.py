"""The command line every service image and the launcher run: ``<service> serve`` and ``<service> migrate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def load_settings(settings_cls: type[S]) -> S:
    """Read settings from the environment, or exit with a message that names what is wrong."""
    try:
        return settings_cls()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"]).upper() or "configuration"
            print(f"configuration error: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None


def service_main(
    settings_cls: type[BaseSettings],
    create_app: Callable[[Any], Any],
    *,
    migrations_dir: Path | None,
    argv: list[str] | None = None,
) -> None:
    """Entry point of a service: ``serve`` (default) runs it with uvicorn; ``migrate`` applies migrations."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = load_settings(settings_cls)
    if args.command == "migrate":
        if migrations_dir is None:
            print("this service has no database: nothing to migrate", file=sys.stderr)
            return
        from ticketing_common.db import migrate

        migrate(getattr(settings, "sqlalchemy_url"), migrations_dir)  # noqa: B009 - only database services
        return

    from ticketing_common.config import HEADER_TIMEOUT_SECONDS
    from ticketing_common.http_server import serve

    serve(
        create_app(settings),
        host=getattr(settings, "host", "0.0.0.0"),
        port=getattr(settings, "port", 3000),
        header_timeout_seconds=getattr(settings, "header_timeout_seconds", HEADER_TIMEOUT_SECONDS),
        # The peer stays the TCP peer: ticketing_common.client_address decides whose X-Forwarded-For to believe.
        proxy_headers=False,
    )
