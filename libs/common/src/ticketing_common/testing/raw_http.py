"""HTTP spoken over a plain socket, for hostile-request tests: httpx and aiohttp clean a request up before it
leaves, so a malformed target, a duplicate header or a slow client can only be sent by hand. And a listener
that records every connection it gets, to prove what a proxy did (not) forward."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """One response; skips interim (1xx) responses."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        ]
        if status >= 200:
            break
    length = next((int(v) for k, v in headers if k == "content-length"), None)
    if any(k == "transfer-encoding" and v.lower() == "chunked" for k, v in headers):
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.readexactly(length) if length is not None else await reader.read()
    return RawResponse(status, headers, body)


async def exchange(port: int, request: bytes, *, timeout: float = 10) -> RawResponse:
    """Send ``request`` as is on a new connection and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()


async def exchange_while_sending(
    port: int, head: bytes, body_chunks: list[bytes], *, timeout: float = 10
) -> RawResponse:
    """Send a request head, then its body chunk by chunk while already reading the answer (which may come early,
    and the server may stop reading)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send_body() -> None:
        with contextlib.suppress(ConnectionError):
            for chunk in body_chunks:
                writer.write(chunk)
                await writer.drain()

    try:
        writer.write(head)
        await writer.drain()
        sending = asyncio.create_task(send_body())
        try:
            return await asyncio.wait_for(read_response(reader), timeout)
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sending
    finally:
        writer.close()


@dataclass
class RecordedRequest:
    request_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@dataclass
class Listener:
    """A tiny HTTP/1.1 server that answers 200 ``{}`` to everything and records every connection and request."""

    port: int = 0
    connections: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = [
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                ]
                length = next((int(v) for k, v in headers if k == "content-length"), 0)
                body = await reader.readexactly(length)
                self.requests.append(RecordedRequest(lines[0], headers, body))
                writer.write(b"HTTP/1.1 200 OK\r\nserver: listener\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Listener]:
    listener = Listener()
    server = await asyncio.start_server(listener._handle, "127.0.0.1", 0)
    listener.port = server.sockets[0].getsockname()[1]
    async with server:
        yield listener
