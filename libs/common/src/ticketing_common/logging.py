"""Structured logs: one JSON object per line, with the service name on every line."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ticketing_common import tracing

if TYPE_CHECKING:
    from ticketing_common.config import ObservabilitySettings

DEFAULT_SLOW_SECONDS = 1.0

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if (ids := tracing.current_ids()) is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_"))
        if (ids := tracing.current_ids()) is not None:
            extras += f" trace_id={ids[0]}"
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {extras}".rstrip()
        if record.exc_info and record.exc_info[0] is not None:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info))
        return line


def configure_observability(settings: ObservabilitySettings) -> None:
    """This process's logs, and its traces when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    configure_logging(settings.service_name, level=settings.log_level, json_lines=settings.log_json)
    tracing.configure_tracing(settings.service_name, endpoint=settings.otel_exporter_otlp_endpoint)


def configure_logging(service: str, *, level: str = "INFO", json_lines: bool = True) -> None:
    """Send every log record of the process to stdout in one format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if json_lines else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Requests are logged once, by our middleware, with their outcome and duration.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("nats").setLevel(logging.WARNING)


class RoutineLog:
    """Which routine outcomes (a served request, a handled event) get a log line of their own: the slow ones
    (``slow_seconds`` or more), one in ``sample_every`` (0: none), and every one while ``logger`` is at DEBUG.
    Failures are the caller's to log, always."""

    def __init__(self, logger: logging.Logger, *, slow_seconds: float, sample_every: int) -> None:
        self.logger = logger
        self.slow_seconds = slow_seconds
        self.sample_every = sample_every
        self._unlogged = 0

    def level(self, seconds: float) -> int | None:
        """The level to log an outcome that took ``seconds`` at, or None to skip it."""
        if seconds >= self.slow_seconds:
            return logging.INFO
        if self.sample_every:
            self._unlogged += 1
            if self._unlogged >= self.sample_every:
                self._unlogged = 0
                return logging.INFO
        return logging.DEBUG if self.logger.isEnabledFor(logging.DEBUG) else None
