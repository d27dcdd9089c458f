"""The whole system on one machine: infrastructure, every service as its own process, and the gateway.

``Stack`` is what ``make up`` runs, and what the end-to-end tests, benchmarks and chaos runs drive: each part is
a named component that can be stopped, killed (SIGKILL, as a crash) and started again on the same address.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import httpx

from ticketing_common.embedded import EmbeddedNats, EmbeddedPostgres, free_port, wait_for_port
from ticketing_common.keys import rotate_key_file

COLORS = ("36", "33", "35", "32", "34", "31", "96", "93", "95", "92")


@dataclass(frozen=True)
class ServiceSpec:
    """A deployable of the platform and how to run it from the workspace."""

    name: str
    module: str
    has_database: bool = True
    public: bool = True  # reachable through the gateway


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth", "ticketing_auth"),
    ServiceSpec("tickets", "ticketing_tickets"),
    ServiceSpec("orders", "ticketing_orders"),
    ServiceSpec("expiration", "ticketing_expiration", public=False),
    ServiceSpec("payments", "ticketing_payments"),
    ServiceSpec("queue", "ticketing_queue"),
    ServiceSpec("client", "ticketing_client", has_database=False),
)


class Component(Protocol):
    def running(self) -> bool: ...
    def kill(self) -> None: ...


def _die_with_parent() -> None:
    """Children get SIGTERM if the launcher dies without cleaning up (Linux), so nothing is orphaned."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LogPump:
    """Streams each child's output to one sink, every line prefixed by the child's name."""

    def __init__(self, sink: IO[str] | None) -> None:
        self.sink = sink
        self._lock = threading.Lock()
        self._width = 10
        self._color = sink is not None and sink is sys.stdout and sink.isatty()

    def attach(self, name: str, stream: IO[bytes], index: int) -> None:
        prefix = f"{name:<{self._width}}|"
        if self._color:
            prefix = f"\033[{COLORS[index % len(COLORS)]}m{prefix}\033[0m"

        def pump() -> None:
            for raw in iter(stream.readline, b""):
                if self.sink is not None:
                    with self._lock:
                        self.sink.write(f"{prefix} {raw.decode(errors='replace').rstrip()}\n")
                        self.sink.flush()
            stream.close()

        threading.Thread(target=pump, name=f"log-{name}", daemon=True).start()

    def say(self, text: str) -> None:
        if self.sink is not None:
            with self._lock:
                self.sink.write(text + "\n")
                self.sink.flush()


@dataclass
class ProcessComponent:
    """One service process, restartable on the same port with the same environment."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int | None
    logs: LogPump
    index: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running():
            return
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
            preexec_fn=_die_with_parent,
        )
        assert self.process.stdout is not None
        self.logs.attach(self.name, self.process.stdout, self.index)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait()


OUTSIDE_SETTINGS = (
    "DATABASE_URL",
    "NATS_URL",
    "STRIPE_KEY",
    "STRIPE_API_BASE",
    "SESSION_KEY_FILE",
    "JWKS_URL",
    "TICKETING_PORT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
"""Variables that would point a stack at servers or secrets from outside (a developer's shell, a CI job)."""

TRACE_ENDPOINT_SETTINGS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""Where OpenTelemetry's OTLP exporter sends spans: when the user set one, their collector gets the traces."""


def isolated_environ(**settings: str) -> dict[str, str]:
    """This process's environment without ``OUTSIDE_SETTINGS``, plus ``settings``: for a throwaway stack of its own
    (the system tests, the benchmarks, the chaos run) that must start every server itself."""
    environ = {k: v for k, v in os.environ.items() if k not in OUTSIDE_SETTINGS}
    environ.update(settings)
    return environ


@contextlib.contextmanager
def throwaway_stack(
    environ: Mapping[str, str], *, log_sink: IO[str], prefix: str = "ticketing-", timeout: float = 120.0
) -> Iterator[Stack]:
    """A whole system of its own (a fresh state folder, free ports), started and healthy; stopped and its state
    folder removed on exit. For the system tests, the chaos run and the like (``environ`` usually from
    :func:`isolated_environ`)."""
    state_dir = Path(tempfile.mkdtemp(prefix=prefix))
    state_dir.chmod(0o755)  # the embedded PostgreSQL may run as its own OS user
    stack = Stack(state_dir=state_dir, gateway_port=free_port(), environ=environ, log_sink=log_sink)
    try:
        stack.start()
        stack.wait_healthy(timeout=timeout)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@dataclass
class Stack:
    """Plans and runs the system. Nothing starts until :meth:`start`."""

    state_dir: Path
    gateway_port: int = 8080
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    log_sink: IO[str] | None = field(default_factory=lambda: sys.stdout)
    services: tuple[ServiceSpec, ...] = SERVICES
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    components: dict[str, ProcessComponent] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    traces: bool = False  # run the built-in trace viewer and point every component at it (`ticketing up --traces`)
    otlp_port: int = 4318
    viewer_port: int = 16686

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        self.logs = LogPump(self.log_sink)

    # -- configuration -----------------------------------------------------------------------------------------

    @property
    def own_trace_endpoint(self) -> str | None:
        """The user's own collector (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT`` set outside)."""
        return next((self.environ[name] for name in TRACE_ENDPOINT_SETTINGS if self.environ.get(name)), None)

    @property
    def runs_trace_viewer(self) -> bool:
        """``--traces`` without a collector of the user's own: the launcher runs ``ticketing traces`` beside."""
        return self.traces and self.own_trace_endpoint is None

    def component_environ(self) -> dict[str, str]:
        """What every component inherits: the launcher's environment (a user's ``OTEL_EXPORTER_OTLP_ENDPOINT``
        included) and, when it runs the trace viewer, where to send spans."""
        env = dict(self.environ)
        if self.runs_trace_viewer:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{self.otlp_port}"
        return env

    def _session_key_file(self) -> str:
        """Auth's private session keys: ``SESSION_KEY_FILE``, or a key file made in the state folder on first start."""
        if self.environ.get("SESSION_KEY_FILE"):
            return self.environ["SESSION_KEY_FILE"]
        path = self.state_dir / "session-keys.json"
        if not path.exists():
            rotate_key_file(path, token_seconds=int(self.environ.get("JWT_EXPIRES_SECONDS", 24 * 3600)))
        return str(path)

    def _service_url(self, name: str) -> str:
        """Where a service listens, its port chosen the first time it is asked for."""
        if name not in self.urls:
            self.urls[name] = f"http://127.0.0.1:{free_port()}"
        return self.urls[name]

    def _base_env(self) -> dict[str, str]:
        env = self.component_environ()
        env.update(
            {
                "DATABASE_URL": self.urls["database"],
                "NATS_URL": self.urls["nats"],
                "SESSION_KEY_FILE": self._session_key_file(),
                "JWKS_URL": self._service_url("auth") + "/.well-known/jwks.json",
                "COOKIE_SECURE": self.environ.get("COOKIE_SECURE", "false"),
                "HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if "stripe" in self.urls:
            env.setdefault("STRIPE_KEY", "sk_test_local_fake_stripe")
            env["STRIPE_API_BASE"] = self.urls["stripe"]
        return env

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start_infrastructure(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)  # the embedded PostgreSQL may run as its own OS user
        if self.environ.get("DATABASE_URL"):
            self.urls["database"] = self.environ["DATABASE_URL"]
        else:
            self.postgres = EmbeddedPostgres(self.state_dir / "postgres")
            self.urls["database"] = self.postgres.start()
        if self.environ.get("NATS_URL"):
            self.urls["nats"] = self.environ["NATS_URL"]
        else:
            self.nats = EmbeddedNats(self.state_dir / "nats")
            self.urls["nats"] = self.nats.start()

    def _python(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def migrate(self) -> None:
        """Every service's migrations at once (each its own database): a stack starts seconds sooner."""
        env = self._base_env()
        running = {
            spec.name: subprocess.Popen(
                self._python(spec.module, "migrate"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for spec in self.services
            if spec.has_database
        }
        failures = []
        for name, process in running.items():
            output, _ = process.communicate()
            if process.returncode != 0:
                failures.append(f"migrations of {name} failed:\n{output}")
        if failures:
            raise RuntimeError("\n".join(failures))

    def _add(self, name: str, command: list[str], env: dict[str, str], port: int | None) -> ProcessComponent:
        component = ProcessComponent(name, command, env, port, self.logs, index=len(self.components))
        self.components[name] = component
        return component

    def start_services(self) -> None:
        if not self.environ.get("STRIPE_API_BASE") and not self.environ.get("STRIPE_KEY"):
            port = free_port()
            self.urls["stripe"] = f"http://127.0.0.1:{port}"
            env = {**self.component_environ(), "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
            self._add("stripe", self._python("ticketing_fake_stripe"), env, port).start()
        base = self._base_env()
        gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        for spec in self.services:
            port = int(self._service_url(spec.name).rsplit(":", 1)[1])
            env = {**base, "PORT": str(port)}
            if spec.name == "client":
                # Pages call each API where it lives (the services start first), with the visitor's address.
                env["API_URL"] = gateway_url
                env.update(
                    {f"{s.name.upper()}_URL": self.urls[s.name] for s in self.services if s.public and s != spec}
                )
            self._add(spec.name, self._python(spec.module, "serve"), env, port).start()
        gateway_env = {
            **self.component_environ(),
            "HOST": "127.0.0.1",
            "PORT": str(self.gateway_port),
            "PYTHONUNBUFFERED": "1",
            **{f"{spec.name.upper()}_URL": self.urls[spec.name] for spec in self.services if spec.public},
        }
        self.urls["gateway"] = gateway_url
        self._add("gateway", self._python("ticketing_gateway", "serve"), gateway_env, self.gateway_port).start()

    def start_traces(self, timeout: float = 30.0) -> None:
        """With ``traces``: ``ticketing traces`` as a component, listening before anything that sends spans starts."""
        if not self.runs_trace_viewer:
            return
        command = self._python(
            "ticketing_launcher", "traces", "--otlp-port", str(self.otlp_port), "--port", str(self.viewer_port)
        )
        env = {**self.environ, "PYTHONUNBUFFERED": "1"}
        component = self._add("traces", command, env, self.viewer_port)
        component.start()
        assert component.process is not None
        wait_for_port("127.0.0.1", self.otlp_port, timeout, component.process)
        wait_for_port("127.0.0.1", self.viewer_port, timeout, component.process)
        self.urls["traces"] = f"http://127.0.0.1:{self.viewer_port}"
        self.urls["otlp"] = f"http://127.0.0.1:{self.otlp_port}"

    def start(self) -> None:
        self.start_traces()
        self.start_infrastructure()
        self.migrate()
        self.start_services()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until the gateway answers 200 on /healthz (every service ready)."""
        gateway = self.components["gateway"]
        assert gateway.port is not None
        wait_for_port("127.0.0.1", gateway.port, timeout)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=3) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.urls["gateway"] + "/healthz").status_code == 200:
                        expiration = self.components.get("expiration")
                        if expiration is None or client.get(self.urls["expiration"] + "/readyz").status_code == 200:
                            return
                time.sleep(0.2)
        raise TimeoutError("the system did not become healthy in time")

    def check_alive(self) -> None:
        for name, component in self.components.items():
            if not component.running():
                raise RuntimeError(
                    f"{name} exited unexpectedly (code {component.process and component.process.poll()})"
                )

    def component(self, name: str) -> Component:
        if name == "postgres" and self.postgres is not None:
            return self.postgres
        if name == "nats" and self.nats is not None:
            return self.nats
        return self.components[name]

    def stop(self) -> None:
        """Stop every child, the gateway first and the infrastructure last."""
        for component in reversed(list(self.components.values())):
            component.stop()
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def describe(self) -> str:
        lines = [f"ticketing is up: {self.urls['gateway']}", ""]
        lines.append(f"  {'component':<12} address")
        for name in ("gateway", *[s.name for s in self.services], "stripe", "database", "nats", "traces", "otlp"):
            if name in self.urls:
                lines.append(f"  {name:<12} {self.urls[name]}")
        if self.own_trace_endpoint is not None:
            lines.append(f"  {'traces':<12} sent to {self.own_trace_endpoint} (set in your environment)")
        lines.append(f"  {'state':<12} {self.state_dir}")
        if "traces" in self.urls:
            lines += ["", f"traces: open {self.urls['traces']} (one request or event flow = one trace)"]
        return "\n".join(lines)


def run_until_signalled(stack: Stack, on_ready: Callable[[], None] | None = None) -> int:
    """Start the stack, stream logs, and stop everything on Ctrl-C / SIGTERM (or when a child dies)."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        stack.start()
        stack.wait_healthy()
        stack.logs.say("\n" + stack.describe() + "\n")
        if on_ready is not None:
            on_ready()
        while not stopping.wait(0.5):
            stack.check_alive()
    except RuntimeError as exc:
        stack.logs.say(f"launcher: {exc}")
        code = 1
    except TimeoutError as exc:
        stack.logs.say(f"launcher: {exc}")
        code = 1
    finally:
        stack.logs.say("launcher: stopping")
        stack.stop()
        stack.logs.say("launcher: stopped")
    return code
