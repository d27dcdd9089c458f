"""The throwaway servers every floor script runs on: an embedded PostgreSQL and, if asked, nats-server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ticketing_common.embedded import EmbeddedNats, EmbeddedPostgres


@dataclass(frozen=True)
class Servers:
    root: Path
    database_url: str
    nats_url: str
    pids: tuple[int, ...] = ()  # nats-server's and the postmaster's (its backends are the postmaster's children)


@contextmanager
def floor_servers(prefix: str, *, with_nats: bool = False) -> Iterator[Servers]:
    """Start them in a fresh folder; stop them on the way out."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # the embedded PostgreSQL may run as its own user
    postgres = EmbeddedPostgres(root / "pg")
    nats_server = EmbeddedNats(root / "nats") if with_nats else None
    try:
        database_url = postgres.start()
        nats_url = nats_server.start() if nats_server is not None else ""
        pids = tuple(p for p in (postgres.pid, nats_server.pid if nats_server else None) if p is not None)
        yield Servers(root, database_url, nats_url, pids)
    finally:
        if nats_server is not None:
            nats_server.stop()
        postgres.stop()
