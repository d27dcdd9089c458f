"""``ticketing-fake-stripe``: serve the fake Stripe API on ``HOST``:``PORT`` (default 127.0.0.1:12111)."""

from __future__ import annotations

import logging
import os

import uvicorn

from ticketing_fake_stripe.app import create_app

DEFAULT_PORT = 12111


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ticketing.fake_stripe").info("fake Stripe API on http://%s:%d (test keys only)", host, port)
    uvicorn.run(create_app(), host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
