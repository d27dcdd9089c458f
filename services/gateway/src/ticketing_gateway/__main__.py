"""``ticketing-gateway``: serve the gateway with uvicorn."""

from __future__ import annotations

import uvicorn

from ticketing_common.logging import configure_logging
from ticketing_gateway.app import create_app
from ticketing_gateway.config import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", level=settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
