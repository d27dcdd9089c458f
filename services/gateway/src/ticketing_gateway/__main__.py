"""``ticketing-gateway``: serve the gateway with uvicorn."""

from __future__ import annotations

from ticketing_common.http_server import serve
from ticketing_common.logging import configure_logging
from ticketing_gateway.app import create_app
from ticketing_gateway.config import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", level=settings.log_level, json_lines=settings.log_json)
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        header_timeout_seconds=settings.header_timeout_seconds,
    )


if __name__ == "__main__":
    main()
