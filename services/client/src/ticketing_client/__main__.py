"""``ticketing-client [serve|migrate]``: the entry point of the image and of ``make up``."""

from __future__ import annotations

from ticketing_client.config import Settings
from ticketing_client.main import create_app
from ticketing_common.cli import service_main


def main(argv: list[str] | None = None) -> None:
    """``serve`` (default) runs the client with uvicorn; ``migrate`` does nothing (the client has no database)."""
    service_main(Settings, create_app, migrations_dir=None, argv=argv)


if __name__ == "__main__":
    main()
