"""``ticketing-gateway [serve]``: the entry point of ``make up`` (the gateway has no database: no ``migrate``)."""

from __future__ import annotations

from ticketing_common.cli import service_main
from ticketing_gateway.config import Settings
from ticketing_gateway.main import create_app


def main(argv: list[str] | None = None) -> None:
    service_main(Settings, create_app, migrations_dir=None, argv=argv)


if __name__ == "__main__":
    main()
