"""The command line every service image and the launcher run: ``<service> serve`` and ``<service> migrate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ticketing_common.config import ServiceSettings


def load_settings(settings_cls: type[ServiceSettings]) -> ServiceSettings:
    """Read settings from the environment, or exit with a message that names what is wrong."""
    try:
        return settings_cls()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"]).upper() or "configuration"
            print(f"configuration error: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None


def service_main(
    settings_cls: type[ServiceSettings],
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
            print("this service has no database", file=sys.stderr)
            return
        from ticketing_common.db import migrate

        migrate(settings.sqlalchemy_url, migrations_dir)
        return

    import uvicorn

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
