"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the flash sale's load generator.

aiohttp is general (redirects, cookie jars, compression, tracing, multipart, proxies); the flash sale needs none of
it and spends its CPU on the same two cores as the system it measures. :class:`Pool` does only what the sale
needs: up to ``connections`` persistent connections to one origin; a request is its line, a few headers and a
``Content-Length`` body, written at once; the answer's status and headers are parsed, its body read by
``Content-Length``, as chunks, or up to the close; the body is decoded as JSON only when the caller wants it.
:meth:`Pool.call` answers the same :class:`~ticketing_bench.client.Reply` as :func:`ticketing_bench.client.call`.

Connections. An idle connection is reused, the most recently used first; one idle longer than
``idle_seconds`` (4 s, under uvicorn's 5 s keep-alive) or already closed by the server is dropped before anything
is written to it. When a reused connection is closed after the request was written and before any byte of the
answer, the request is sent once more on a new connection only if its method is idempotent; a POST raises
:class:`ConnectionClosed` (it may have been handled). Any other failure closes the connection it happened on.

Timeouts. ``timeout`` seconds to connect, and from writing a request to the end of its answer; waiting for a
free connection is not limited (at most ``connections`` calls are on the wire; the others queue, and their wait
is in the latency). Rather than a timer per call (``asyncio.timeout`` arms and cancels one each time, a
measurable share of this client's CPU: bench/README.md), one periodic check per pool closes every connection past
its deadline, so a timeout fires up to ``timeout / 4`` (at most 1 s) late.

Every error is an ``OSError``: :class:`ConnectionClosed`, :class:`ProtocolError`, ``TimeoutError`` and the
socket's own (``ConnectionRefusedError`` and the like). Catch :data:`ERRORS`.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl as ssllib
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from ticketing_bench.client import Reply, User

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
NO_BODY_STATUSES = frozenset({204, 304})
MAX_HEAD_BYTES = 64 * 1024


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.x as this client reads it."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before its answer was complete."""


class _Unanswered(ConnectionClosed):
    """Closed before any byte of the answer: on a reused connection, most likely closed while it was idle."""


ERRORS: tuple[type[BaseException], ...] = (OSError,)  # TimeoutError and both of the above are OSErrors


class _Connection:
    __slots__ = ("deadline", "idle_since", "reader", "requests", "timed_out", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.requests = 0
        self.idle_since = 0.0
        self.deadline = 0.0  # while a request is on it
        self.timed_out = False

    def usable(self, now: float, idle_seconds: float) -> bool:
        return now - self.idle_since < idle_seconds and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()  # the transport's close; nothing to wait for in a load generator


class _Answer:
    __slots__ = ("body", "cookies", "keep", "status")

    def __init__(self, status: int, body: bytes, cookies: list[str], keep: bool) -> None:
        self.status = status
        self.body = body
        self.cookies = cookies
        self.keep = keep


class Pool:
    """Persistent connections to one origin (``http://host:port`` or ``https://…``), at most ``connections``."""

    def __init__(
        self,
        base: str,
        connections: int,
        *,
        timeout: float = 30.0,
        idle_seconds: float = 4.0,
        ssl: ssllib.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"not an origin: {base!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = (ssl or ssllib.create_default_context()) if parts.scheme == "https" else None
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self._host_line = f"Host: {parts.netloc}\r\n"
        self._idle: deque[_Connection] = deque()
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(connections)
        self._check_every = min(1.0, timeout / 4)
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self.connections_opened = 0  # for tests and reports: how well keep-alive held
        self.retries = 0

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        closing = list(self._idle)
        self._idle.clear()
        for connection in closing:
            connection.close()
        await asyncio.gather(*(c.writer.wait_closed() for c in closing), return_exceptions=True)

    async def call(
        self,
        method: str,
        url: str,
        *,
        user: User | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        decode: bool = True,
    ) -> Reply:
        """One request; the status, the body (JSON-decoded when ``decode``, else the raw bytes) and the latency
        as the client saw it. A sign-up's answer (no ``user``, 200/201, a ``Set-Cookie``) carries the cookies in
        ``body["__cookie"]``, as :func:`ticketing_bench.client.call` does."""
        started = time.perf_counter()
        request = self._request(method, url, user, json, headers)
        answer = await self._exchange(method, request)
        elapsed = time.perf_counter() - started
        body: Any = answer.body
        if decode:
            try:
                body = jsonlib.loads(body) if body else None
            except ValueError:
                body = body.decode(errors="replace")
            if answer.status in (200, 201) and answer.cookies and user is None:
                body = {"__cookie": answer.cookies, **(body or {})}
        return Reply(answer.status, body, elapsed)

    # -- the request --------------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, user: User | None, json: Any, headers: dict[str, str] | None) -> bytes:
        if url.startswith("/"):
            target = url
        elif url.startswith(self.origin) and url[len(self.origin) : len(self.origin) + 1] in ("/", "?", ""):
            target = url[len(self.origin) :] or "/"
            if target.startswith("?"):
                target = "/" + target
        else:
            raise ValueError(f"{url!r} is not on {self.origin}")
        head = f"{method} {target} HTTP/1.1\r\n{self._host_line}"
        if user is not None:
            head += f"Cookie: {user.cookie}\r\n"
        if headers:
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        payload = b""
        if json is not None:
            payload = jsonlib.dumps(json, separators=(",", ":")).encode()
            head += "Content-Type: application/json\r\n"
        if payload or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            head += f"Content-Length: {len(payload)}\r\n"
        return (head + "\r\n").encode("latin-1") + payload

    # -- connections --------------------------------------------------------------------------------------------

    async def _exchange(self, method: str, request: bytes) -> _Answer:
        async with self._slots:
            while True:
                connection = await self._connection()
                reused = connection.requests > 0
                connection.deadline = time.monotonic() + self.timeout
                self._busy.add(connection)
                if self._watchdog is None:
                    self._watchdog = asyncio.get_running_loop().call_later(self._check_every, self._check)
                try:
                    connection.writer.write(request)
                    answer = await self._answer(connection.reader, method)
                except ConnectionError as exc:
                    connection.close()
                    if connection.timed_out:
                        raise TimeoutError(f"no complete answer within {self.timeout} s") from None
                    if isinstance(exc, _Unanswered):
                        if reused and method in IDEMPOTENT:
                            self.retries += 1
                            continue  # closed while idle, most likely: send it again on a new connection
                        raise ConnectionClosed("closed before any answer") from None
                    raise
                except BaseException:
                    connection.close()
                    raise
                finally:
                    self._busy.discard(connection)
                if connection.timed_out:  # a body read up to the close, cut by the deadline: not an answer
                    raise TimeoutError(f"no complete answer within {self.timeout} s")
                connection.requests += 1
                if answer.keep and not self._closed:
                    connection.idle_since = time.monotonic()
                    self._idle.append(connection)
                else:
                    connection.close()
                return answer

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now, self.idle_seconds):
                return connection
            connection.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.ssl,
                limit=MAX_HEAD_BYTES,
                server_hostname=self.host if self.ssl else None,
            ),
            self.timeout,
        )
        self.connections_opened += 1
        return _Connection(reader, writer)

    def _check(self) -> None:
        """Close each connection past its deadline: the call on it then fails with ``TimeoutError``."""
        self._watchdog = None
        now = time.monotonic()
        for connection in [c for c in self._busy if c.deadline <= now]:
            connection.timed_out = True
            connection.close()  # its reader sees the end: the call's read fails, and it raises TimeoutError
        if self._busy:
            self._watchdog = asyncio.get_running_loop().call_later(self._check_every, self._check)

    # -- the answer ---------------------------------------------------------------------------------------------

    async def _answer(self, reader: asyncio.StreamReader, method: str) -> _Answer:
        status, version, fields = await _head(reader, first=True)
        while 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            status, version, fields = await _head(reader, first=False)
        length: int | None = None
        chunked = False
        keep = version == b"HTTP/1.1"
        cookies: list[str] = []
        for name, value in fields:
            if name == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ProtocolError(f"bad Content-Length {value!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
                if not chunked:
                    keep = False  # the body runs to the close
            elif name == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    keep = False
                elif b"keep-alive" in tokens:
                    keep = True
            elif name == b"set-cookie":
                cookies.append(value.decode("latin-1"))
        try:
            if method == "HEAD" or status in NO_BODY_STATUSES:
                body = b""
            elif chunked:
                body = await _chunked(reader)
            elif length is not None:
                body = await reader.readexactly(length)
            else:
                body = await reader.read()
                keep = False
        except asyncio.IncompleteReadError:
            raise ConnectionClosed("closed in the middle of the body") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("a chunk-size line is too long") from None
        return _Answer(status, body, cookies, keep)


async def _head(reader: asyncio.StreamReader, *, first: bool) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The status line and header fields (names lower-cased) of one answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial:
            raise _Unanswered() from None
        raise ConnectionClosed("closed in the middle of the answer's head") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"an answer's head is over {MAX_HEAD_BYTES} bytes") from None
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit() or rest[3:4] not in (b"", b" "):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    fields: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"bad header line: {line[:100]!r}")
        fields.append((name.lower(), value.strip()))
    return int(code), version, fields


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields, unused
            return b"".join(parts)
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("a chunk does not end with CRLF")
        parts.append(chunk[:-2])
