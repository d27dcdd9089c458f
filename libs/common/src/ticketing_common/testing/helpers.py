"""Test helpers: settings for the test servers, a running service app, signing in, reading events back."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import jwt
import nats
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ticketing_common import tracing
from ticketing_common.auth import COOKIE_NAME, UserPayload, encode_session_token
from ticketing_common.config import ServiceSettings
from ticketing_common.db import migrate
from ticketing_common.keys import KeyRing, SigningKey, public_jwk, write_key_ring

_TEST_PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ticketing test session key").digest())
TEST_SIGNING_KEY = SigningKey(
    kid=public_jwk(_TEST_PRIVATE_KEY.public_key())["kid"], private_key=_TEST_PRIVATE_KEY, created=0
)
"""The tests' session key: auth's key ring in tests, and what :func:`signin` signs with."""
TEST_KEY_RING = KeyRing((TEST_SIGNING_KEY,))
UNREACHABLE_JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"
S = TypeVar("S", bound=ServiceSettings)
T = TypeVar("T")

_migrated: set[str] = set()


@dataclass(frozen=True)
class ServiceUnderTest:
    """What the plugin's ``settings``/``app``/``client`` fixtures run: a service's settings, app and migrations."""

    settings_cls: type[ServiceSettings]
    create_app: Callable[[Any], FastAPI]
    migrations_dir: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TestInfra:
    database_url: str
    nats_url: str
    root: Path
    jwks_url: str = UNREACHABLE_JWKS_URL
    servers: list[Any] = field(default_factory=list)


def session_key_file_for_tests() -> Path:
    """A key file holding :data:`TEST_KEY_RING` (auth's ``SESSION_KEY_FILE`` in tests), written once per process."""
    path = Path(tempfile.gettempdir()) / f"ticketing-test-session-keys-{os.getpid()}.json"
    if not path.exists():
        write_key_ring(path, TEST_KEY_RING)
    return path


def session_settings(jwks_url: str = UNREACHABLE_JWKS_URL) -> dict[str, Any]:
    """The session settings any service's ``Settings`` needs in a test: where the test JWK Set is served and
    auth's test key file."""
    return {"jwks_url": jwks_url, "session_key_file": session_key_file_for_tests()}


class JwksServer:
    """A JWK Set served over real HTTP, as auth serves it, for services tested without auth. ``ring`` may be
    replaced while it runs (a rotation); ``fetches`` counts the requests."""

    def __init__(self, ring: KeyRing = TEST_KEY_RING, *, token_seconds: int = 24 * 3600) -> None:
        self.ring = ring
        self.fetches = 0
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.fetches += 1
                body = json.dumps(served.ring.public_jwks(token_seconds=token_seconds)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def __enter__(self) -> JwksServer:
        threading.Thread(target=self._server.serve_forever, name="test-jwks", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def settings_for(settings_cls: type[S], infra: TestInfra, **overrides: Any) -> S:
    """The service's settings pointed at the test servers, with a test database of its own."""
    base = settings_cls(**session_settings(infra.jwks_url), database_url=infra.database_url, nats_url=infra.nats_url)
    values: dict[str, Any] = {
        "database_name": f"{base.database_name}_test",
        "cookie_secure": False,
        "log_json": True,
        "event_max_deliveries": 3,
        **overrides,
    }
    return base.model_copy(update=values)


async def prepare_database(settings: ServiceSettings, migrations_dir: Path) -> None:
    """Apply the service's migrations to its test database, once per test session."""
    url = settings.sqlalchemy_url
    if url not in _migrated:
        await asyncio.to_thread(migrate, url, migrations_dir)
        _migrated.add(url)


async def truncate_all(settings: ServiceSettings) -> None:
    """Empty every table of the service's database but Alembic's (per-test isolation)."""
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def reset_stream(js: JetStreamContext, stream: str) -> None:
    """Drop the stream (and with it every consumer) so each test starts from an empty bus."""
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(stream)


async def connect_nats(url: str) -> NATS:
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run the app's lifespan (database, outbox publisher, listeners) and wait until its events are ready and it
    can check sessions."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        await app.state.events.wait_ready()
        await wait_until(_checks_sessions(app), timeout=30)
        yield app


def _checks_sessions(app: FastAPI) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        return bool(app.state.sessions.ready)

    return ready


@contextlib.asynccontextmanager
async def http_client(app: FastAPI, *, peer: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in-process; ``peer`` is the TCP peer address the app sees."""
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def signin(
    client: httpx.AsyncClient,
    *,
    user_id: uuid.UUID | None = None,
    email: str | None = None,
    key: SigningKey = TEST_SIGNING_KEY,
) -> UserPayload:
    """Give ``client`` a valid session cookie (a new session) for a (new, unless given) user; returns its claims."""
    token = session_token(user_id=user_id, email=email, key=key)
    client.cookies.set(COOKIE_NAME, token)
    return claims_of(token)


def session_token(
    *,
    user_id: uuid.UUID | None = None,
    email: str | None = None,
    key: SigningKey = TEST_SIGNING_KEY,
    expires_seconds: int = 3600,
    now: float | None = None,
) -> str:
    """A session token as auth would mint it, signed with ``key``."""
    uid = user_id or uuid.uuid4()
    return encode_session_token(
        key,
        user_id=uid,
        email=email or f"user-{uid.hex[:8]}@example.com",
        session_id=uuid.uuid4(),
        expires_seconds=expires_seconds,
        now=time.time() if now is None else now,
    )


def claims_of(token: str) -> UserPayload:
    """What a token says, signature unchecked (for tests that look at what auth issued)."""
    return UserPayload.model_validate(jwt.decode(token, options={"verify_signature": False}))


async def wait_until(
    predicate: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {result!r})")
        await asyncio.sleep(interval)


@dataclass
class ReceivedEvent:
    subject: str
    data: dict[str, Any]
    headers: dict[str, str]
    sequence: int


async def stream_events(
    js: JetStreamContext, subject: str, *, stream: str = "TICKETING", wait: float = 0.3
) -> list[ReceivedEvent]:
    """Every message on ``subject`` in the stream, read back from JetStream itself."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    if info.state.messages == 0:
        return []
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    events: list[ReceivedEvent] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=wait)
            except TimeoutError:
                break
            events.append(
                ReceivedEvent(msg.subject, json.loads(msg.data), dict(msg.headers or {}), msg.metadata.sequence.stream)
            )
    finally:
        await sub.unsubscribe()
    return events


async def wait_for_events(
    js: JetStreamContext, subject: str, count: int, *, timeout: float = 10.0, stream: str = "TICKETING"
) -> list[ReceivedEvent]:
    """Wait until at least ``count`` events are on ``subject``; returns them all."""

    async def enough() -> list[ReceivedEvent] | None:
        events = await stream_events(js, subject, stream=stream, wait=0.1)
        return events if len(events) >= count else None

    return await wait_until(enough, timeout=timeout, interval=0.05)


# asyncpg's own statements: the first time a connection meets a type (an array of jsonb, say), it looks the type up
# in pg_catalog with JIT turned off meanwhile.
_ASYNCPG_OWN = re.compile(r"set_config\('jit'|\bpg_catalog\.pg_type\b")


class RecordingPool:
    """The app's real pool, noting the SQL of every statement run through it (on any of its connections)."""

    def __init__(self, pool: asyncpg.Pool, seen: list[str]) -> None:
        self._pool = pool
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def _log(self, record: Any) -> None:
        if not _ASYNCPG_OWN.search(record.query):
            self._seen.append(record.query)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn:
            conn.add_query_logger(self._log)
            try:
                yield conn
            finally:
                conn.remove_query_logger(self._log)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)


@asynccontextmanager
async def recorded_statements(app: FastAPI) -> AsyncIterator[list[str]]:
    """Every SQL statement ``app``'s requests and listeners send while the block runs."""
    seen: list[str] = []
    db = app.state.db
    real = db.pool
    db.pool = RecordingPool(real, seen)
    try:
        yield seen
    finally:
        db.pool = real
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after each statement, not during it


def thread_pool_callables(app: FastAPI) -> list[str]:
    """Endpoints and dependencies declared with a plain ``def``, which FastAPI runs in its thread pool.

    Every request would hop to a worker thread and back for each of them, and the workers contend with the
    event loop for the GIL: on the order path three such hops cost more CPU than the JWT check they wrapped.
    """
    found: list[str] = []

    def visit(dependant: Dependant) -> None:
        call = dependant.call
        if call is not None and not _is_async(call):
            found.append(f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', repr(call))}")
        for dependency in dependant.dependencies:
            visit(dependency)

    for route in app.routes:
        # Included routers are wrappers (FastAPI >= 0.16x) that list their routes as "effective route contexts".
        contexts = getattr(route, "effective_route_contexts", None)
        for candidate in contexts() if contexts is not None else [route]:
            dependant = getattr(candidate, "dependant", None)
            if isinstance(dependant, Dependant):
                visit(dependant)
    return sorted(set(found))


def _is_async(call: Callable[..., Any]) -> bool:
    method = getattr(call, "__call__", None)  # noqa: B004 (a class instance used as a dependency)
    return any(inspect.iscoroutinefunction(c) or inspect.isasyncgenfunction(c) for c in (call, method) if c is not None)


def serve_in_a_process(module: str, *, without: Sequence[str] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> serve`` run to its end with this environment (minus variables starting with any of
    ``without``, plus ``env``): for the tests of a service refusing to start."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(tuple(without))}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", module, "serve"], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


class RecordedSpans:
    """The spans this process finished while tracing was on, through the real SDK (an in-memory exporter)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        tracing.flush_tracing()
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]


@contextlib.contextmanager
def recording_spans(service: str = "test") -> Iterator[RecordedSpans]:
    """Tracing on for the block, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` turns it on, but kept in memory; off after."""
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(service, endpoint="", exporter=exporter)
    try:
        yield RecordedSpans(exporter)
    finally:
        tracing.shutdown_tracing()
