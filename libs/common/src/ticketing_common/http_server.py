"""How every process serves HTTP: uvicorn (httptools) with a guard against hostile connections.

uvicorn has no header-read timeout and no request-header size limit of its own, and names itself in a
``Server`` header. :func:`serve` runs an app with :class:`GuardedHttpProtocol`, which

- closes a connection whose request headers are not complete within ``header_timeout_seconds`` of the
  connection or of the request's first byte (slowloris),
- answers 431 when a request's line and headers outgrow ``max_header_bytes``,
- answers 400 to a request target that is not origin-form (``/path?query``): ``*``, absolute-form,
  authority-form, userinfo, backslashes, control characters,

every refusal in the shared error format. The gateway and every service run through it.

The operational endpoints (health, metrics, API documents) are for kubelet probes, Prometheus and the
launcher, which talk to a service directly; :func:`is_operational_path` and :func:`came_through_proxy` let an
app refuse them to anything that came through the gateway or the Ingress.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ticketing_common.config import HEADER_TIMEOUT_SECONDS
from ticketing_common.errors import error_body

MAX_HEADER_BYTES = 32 * 1024

OPERATIONAL_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")
# Headers every reverse proxy in front of a service adds (the gateway, ingress-nginx); a probe or a scrape never does.
PROXY_HEADERS = (b"x-forwarded-for", b"forwarded")

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def is_operational_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPERATIONAL_PATHS)


def came_through_proxy(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name in PROXY_HEADERS for name, _ in headers)


def origin_form_problem(target: bytes) -> str | None:
    """Why a request target is not a plain ``/path?query`` (None when it is)."""
    if not target.startswith(b"/") or target.startswith(b"//"):
        return "The request target must be a path starting with /"
    if any(byte <= 0x20 or byte >= 0x7F for byte in target):
        return "The request target must not contain spaces, control or non-ASCII characters"
    if b"\\" in target or b"#" in target:
        return "The request target must not contain backslashes or fragments"
    return None


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OneSendPerTurn:
    """A transport whose writes within one turn of the event loop leave as one send. uvicorn writes a response's
    head and its body apart, and each send costs a system call (on loopback, the whole delivery to the reader,
    who may then wake twice); joined, a small answer is one segment."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(chunk) for chunk in self._pending)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header-read timeout, a header size limit and origin-form targets only."""

    header_timeout_seconds = HEADER_TIMEOUT_SECONDS
    max_header_bytes = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._reading_headers = False
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneSendPerTurn(transport, self.loop))  # type: ignore[arg-type]
        self._start_reading_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        try:
            self._unset_keepalive_if_required()
            self.parser.feed_data(data)
            if self._reading_headers:  # headers still incomplete: the parser holds them all so far
                self._count_header_bytes(len(data))
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refused):
                raise
            self._refuse(exc.__context__)
            return
        except _Refused as refused:
            self._refuse(refused)
            return
        except httptools.HttpParserError:
            self._refuse(_Refused(400, "Invalid HTTP request"))
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def send_400_response(self, msg: str) -> None:
        self._refuse(_Refused(400, "Invalid HTTP request"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:
            self._start_reading_headers()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        self._reading_headers = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            raise _Refused(431, "Request headers too large")
        if problem := origin_form_problem(self.url):
            raise _Refused(400, problem)
        super().on_headers_complete()

    def _start_reading_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_seconds, self._headers_timed_out)

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise _Refused(431, "Request headers too large")

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self._reading_headers and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, refused: _Refused) -> None:
        self._stop_header_timer()
        self._reading_headers = False
        if self.transport.is_closing():
            return
        body = json.dumps(error_body([{"message": refused.message}])).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (refused.status, _REASONS[refused.status])]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def guarded_protocol(header_timeout_seconds: float) -> type[GuardedHttpProtocol]:
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"header_timeout_seconds": header_timeout_seconds})


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
    proxy_headers: bool = False,
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's configuration for any of our processes (tests start servers with it too). ``proxy_headers``:
    take the client's address from ``X-Forwarded-For`` (uvicorn's default trusts it from 127.0.0.1, so the
    edge, the gateway, must not)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        http=guarded_protocol(header_timeout_seconds),
        server_header=False,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        **options,
    )


def serve(app: Any, *, host: str, port: int, **options: Any) -> None:
    """Run ``app`` until SIGINT/SIGTERM."""
    uvicorn.Server(server_config(app, host=host, port=port, **options)).run()
