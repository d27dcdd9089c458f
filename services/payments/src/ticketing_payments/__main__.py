"""``ticketing-payments [serve|migrate]``: the entry point of the image and of ``make up``."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from ticketing_common.cli import service_main
from ticketing_payments.config import Settings
from ticketing_payments.main import MIGRATIONS_DIR, create_app


def serve(settings: Settings) -> FastAPI:
    """The app to serve; without a Stripe key there is nothing it could charge, so it refuses to start."""
    if not settings.stripe_key:
        print(
            "configuration error: STRIPE_KEY: must be set (a Stripe secret key; `make up` sets a test key for "
            "its local Stripe stand-in)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return create_app(settings)


def main() -> None:
    service_main(Settings, serve, migrations_dir=MIGRATIONS_DIR)


if __name__ == "__main__":
    main()
