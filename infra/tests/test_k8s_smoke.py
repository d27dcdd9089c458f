"""A manifest-driven smoke test: every Deployment of an overlay, started from this workspace with exactly what its
manifest declares, gets ready.

For each Deployment, its init container (the migrations) and then its container run as processes, with the
command the kubelet would run (the manifest's, else the image's CMD from the Dockerfile) and the environment the
kubelet would build (the image's ENV, then the ConfigMaps, secrets and values of the manifest). What cannot be the
same on one machine without a cluster is changed, and only that:

- secrets get test values; a mounted secret is a folder of this machine holding its test files, and the paths
  into the volume point there (auth's session key ring: a new one, as `ticketing keys rotate` makes it);
- hosts of in-cluster Services point at stand-ins: PostgreSQL (a single pod in dev, a CloudNativePG cluster's
  read-write Service in gke) at the test session's server, NATS at the test session's server (dev) or at a
  three-node cluster started from the gke overlay's own nats.conf (gke); the entry point (the Gateway) is played
  by the local gateway, which routes like the HTTPRoute (test_k8s_routes.py); the OpenTelemetry Collector that a
  traced overlay names (the cluster's, not the overlays') by an in-process OTLP/HTTP receiver
  (``ticketing_launcher.traces.OtlpReceiver``);
- what CloudNativePG's initdb bootstrap would create is created on the test server: the application role of each
  Cluster, owning the service's database, so that the gke services (migrations included) run as that role, not as
  a superuser;
- PORT is a free port (every container of a pod listens on its own IP; here they share one host);
- DATABASE_NAME gets a suffix, so that the test never touches a database `make up` uses on the same server;
- /app, the image's WORKDIR, is this repository (the image keeps the workspace layout), /app/.venv its virtualenv.

Then the readiness probe must answer 200, as must the startup and liveness probes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from deploy_support import (
    CNPG_NAMESPACE,
    DEPLOYABLES,
    KEDA_OVERLAYS,
    OVERLAYS,
    TRACED_OVERLAYS,
    Deployable,
    Dockerfile,
    Manifests,
    container_command,
    container_env,
    image_path,
    nats_config,
)

from ticketing_common import testing
from ticketing_common.embedded import free_port, nats_server_binary
from ticketing_common.routes import ROUTES
from ticketing_launcher.traces import OtlpReceiver, Span

READY_TIMEOUT = 90.0  # generous for a loaded CI machine; the measured time is printed
MIGRATE_TIMEOUT = 90.0
DEFAULT_PORTS = {"postgresql": 5432, "nats": 4222, "http": 80, "https": 443}


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            # A session of its own, so that stopping it stops what it started (watchfiles' child in dev).
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=image_path("/app"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Outcome:
    """What happened to one Deployment."""

    migrated: bool | None = None  # None: no init container
    ready_after: float | None = None
    probes: dict[str, int] = field(default_factory=dict)
    port: int = 0
    diagnostics: str = ""


@dataclass
class SmokeRun:
    overlay: str
    outcomes: dict[str, Outcome]
    gateway_url: str
    seconds: float
    collector: OtlpReceiver | None  # the stand-in for the collector a traced overlay names


def _point_at_stand_ins(value: str, stand_ins: dict[tuple[str, int], str]) -> str:
    """Rewrite a URL whose host:port is an in-cluster address to its stand-in's address (userinfo and path kept)."""
    if "://" not in value:
        return value
    url = urlsplit(value)
    if not url.hostname:
        return value
    address = (url.hostname, url.port or DEFAULT_PORTS.get(url.scheme, 0))
    if address not in stand_ins:
        assert "." in url.hostname, f"no stand-in for the in-cluster address in {value}"
        assert not url.hostname.endswith(".local"), f"no stand-in for the in-cluster address in {value}"
        return value
    userinfo = url.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{stand_ins[address]}" if userinfo else stand_ins[address]
    return urlunsplit((url.scheme, netloc, url.path, url.query, url.fragment))


def _process_env(
    manifests: Manifests,
    container: dict[str, Any],
    dockerfile: Dockerfile,
    stand_ins: dict[tuple[str, int], str],
    overrides: dict[str, str],
) -> dict[str, str]:
    env = {key: image_path(value) for key, value in dockerfile.env.items()}
    env["PATH"] = ":".join(image_path(part) for part in env["PATH"].split(":"))
    declared = container_env(manifests, container).on_this_machine()
    env |= {key: _point_at_stand_ins(value, stand_ins) for key, value in declared.items()}
    return env | overrides


def _address(url: str) -> str:
    """host:port of a URL (without its credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def _stand_ins(manifests: Manifests, *, database: str, nats: str) -> dict[tuple[str, int], str]:
    """In-cluster address (Service name, port) -> the address of what stands in for the pods behind it."""
    stand_ins = {}
    for cluster in manifests.of_kind("Cluster"):  # the operator's read-write Service, as the secret's URI names it
        service = f"{cluster['metadata']['name']}-rw"
        stand_ins |= {(service, 5432): database, (f"{service}.{CNPG_NAMESPACE}", 5432): database}
    for service in manifests.of_kind("Service"):
        selector = service["spec"].get("selector", {})
        for workload in manifests.of_kind("StatefulSet"):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            if not selector or not selector.items() <= labels.items():
                continue
            image = workload["spec"]["template"]["spec"]["containers"][0]["image"]
            for port in service["spec"]["ports"]:
                if image.startswith("postgres:"):
                    stand_ins[(service["metadata"]["name"], port["port"])] = database
                elif image.startswith("nats:") and port["port"] == 4222:
                    stand_ins[(service["metadata"]["name"], port["port"])] = nats
    return stand_ins


def _collector_addresses(manifests: Manifests) -> set[tuple[str, int]]:
    """(host, port) of the OpenTelemetry Collector the Deployments export their spans to, if any."""
    addresses = set()
    for deployment in manifests.of_kind("Deployment"):
        for container in manifests.containers(deployment):
            endpoint = container_env(manifests, container).values.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if endpoint:
                url = urlsplit(endpoint)
                addresses.add((url.hostname or "", url.port or DEFAULT_PORTS.get(url.scheme, 0)))
    return addresses


def _deployment_stand_ins(manifests: Manifests, ports: dict[str, int]) -> dict[tuple[str, int], str]:
    """A Service in front of a Deployment (the client calls the APIs at theirs) -> that Deployment's process."""
    stand_ins = {}
    for service in manifests.of_kind("Service"):
        selector = service["spec"].get("selector", {})
        for name, port in ports.items():
            labels = manifests.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
            if selector and selector.items() <= labels.items():
                for service_port in service["spec"]["ports"]:
                    stand_ins[(service["metadata"]["name"], service_port["port"])] = f"127.0.0.1:{port}"
    return stand_ins


def _container_process(
    manifests: Manifests,
    container: dict[str, Any],
    dockerfile: Dockerfile,
    stand_ins: dict[tuple[str, int], str],
    overrides: dict[str, str],
    log: Path,
) -> Process:
    """A container as a process of this machine: the kubelet's command and environment, with the stand-ins."""
    env = _process_env(manifests, container, dockerfile, stand_ins, overrides)
    argv = [image_path(arg) for arg in container_command(container, dockerfile, env)]
    return Process(log.name, argv, env, log.with_suffix(".log"))


def _nats_cluster(manifests: Manifests, root: Path) -> tuple[list[Process], str]:
    """The overlay's NATS StatefulSet as local nats-server nodes: its nats.conf, each node's volumes as folders of
    its own; flags move only the ports (and the routes with them). Returns the nodes and node 0's address."""
    nats = manifests.get("StatefulSet", "nats")
    nodes = nats["spec"]["replicas"]
    mounts = nats["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
    routes = ",".join(f"nats://127.0.0.1:{cluster}" for _, cluster, _ in ports)
    processes = []
    for i, (client, cluster, monitor) in enumerate(ports):
        node = root / f"nats-{i}"
        text = nats_config(manifests)
        for mount in mounts:
            if mount["name"] != "config":
                (node / mount["name"]).mkdir(parents=True)
                text = text.replace(mount["mountPath"], str(node / mount["name"]))
        (node / "nats.conf").write_text(text)
        argv = [nats_server_binary(), "-c", str(node / "nats.conf"), "-a", "127.0.0.1", "-p", str(client)]
        argv += ["-m", str(monitor), "--cluster_listen", f"nats://127.0.0.1:{cluster}", "--routes", routes]
        process = Process(f"nats-{i}", argv, {"POD_NAME": f"nats-{i}", "PATH": "/usr/bin:/bin"}, node / "nats.log")
        process.start()
        processes.append(process)
    # Not waited for: the services wait for NATS by themselves, and are not ready until the stream exists.
    return processes, f"127.0.0.1:{ports[0][0]}"


async def _bootstrap_like_cloudnative_pg(database_url: str, owner: str, database: str) -> None:
    """What a Cluster's ``bootstrap.initdb`` creates: a login role and a database it owns (not a superuser, and
    without CREATEDB: the service only finds its database there)."""
    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", owner):
            await conn.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    finally:
        await conn.close()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return 0


# The KEDA overlay is gke but for its autoscalers (test_k8s_scaling proves it): booting it again would prove nothing.
@pytest.fixture(scope="module", params=[overlay for overlay in OVERLAYS if overlay not in KEDA_OVERLAYS])
def smoke(
    request: pytest.FixtureRequest,
    infra: testing.TestInfra,
    rendered: dict[str, Manifests],
    deployables: dict[str, Deployable],
    dockerfiles: dict[str, Dockerfile],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SmokeRun]:
    overlay: str = request.param
    manifests = rendered[overlay]
    root = tmp_path_factory.mktemp(f"smoke-{overlay}")
    started = time.monotonic()
    processes: list[Process] = []
    collector: OtlpReceiver | None = None
    try:
        nats = manifests.get("StatefulSet", "nats")
        if nats["spec"]["replicas"] > 1:
            nodes, nats_address = _nats_cluster(manifests, root / "nats")
            processes += nodes
        else:
            nats_address = _address(infra.nats_url)
        gateway_port = free_port()
        stand_ins = _stand_ins(manifests, database=_address(infra.database_url), nats=nats_address)
        if collector_addresses := _collector_addresses(manifests):
            collector = OtlpReceiver(port=0)
            collector.start()
            stand_ins |= dict.fromkeys(collector_addresses, f"127.0.0.1:{collector.port}")

        deployments = [d for d in deployables.values() if d.present]
        outcomes = {d.name: Outcome(port=free_port()) for d in deployments}
        stand_ins |= _deployment_stand_ins(manifests, {name: o.port for name, o in outcomes.items()})
        plans: dict[str, tuple[list[Process], Process]] = {}
        for deployable in deployments:
            pod = manifests.get("Deployment", deployable.name)["spec"]["template"]["spec"]
            overrides = {"PORT": str(outcomes[deployable.name].port)}
            if deployable.has_migrations:
                overrides["DATABASE_NAME"] = f"ticketing_{deployable.name}_k8s_{overlay.replace('-', '_')}"
                cluster = manifests.find("Cluster", f"{deployable.name}-db")
                if cluster is not None:
                    owner = cluster["spec"]["bootstrap"]["initdb"]["owner"]
                    asyncio.run(_bootstrap_like_cloudnative_pg(infra.database_url, owner, overrides["DATABASE_NAME"]))
            dockerfile = dockerfiles[deployable.name]
            inits = [
                _container_process(
                    manifests, c, dockerfile, stand_ins, overrides, root / f"{deployable.name}-{c['name']}"
                )
                for c in pod.get("initContainers", [])
            ]
            main = _container_process(
                manifests, pod["containers"][0], dockerfile, stand_ins, overrides, root / f"{deployable.name}-main"
            )
            plans[deployable.name] = (inits, main)

        # Init containers first (every pod's at once, as a rollout does), then the containers.
        for inits, _ in plans.values():
            for init in inits:
                init.start()
                processes.append(init)
        for name, (inits, _) in plans.items():
            for init in inits:
                assert init.popen is not None
                try:
                    code = init.popen.wait(MIGRATE_TIMEOUT)
                except subprocess.TimeoutExpired:
                    code = -1
                if code != 0:
                    outcomes[name].diagnostics += f"{init.name} exited {code}:\n{init.tail()}\n"
                outcomes[name].migrated = code == 0 and outcomes[name].migrated is not False
        for name, (_, main) in plans.items():
            if outcomes[name].migrated is not False:
                main.start()
                processes.append(main)

        # The entry point's stand-in: the local gateway, routing with the same table as the HTTPRoute.
        gateway_env = {"HOST": "127.0.0.1", "PORT": str(gateway_port), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        gateway_env |= {
            f"{r.service.upper()}_URL": f"http://127.0.0.1:{outcomes[r.service].port}"
            for r in ROUTES
            if r.service in outcomes
        }
        gateway = Process(
            "gateway", [image_path("/app/.venv/bin/ticketing-gateway")], gateway_env, root / "gateway.log"
        )
        gateway.start()
        processes.append(gateway)

        # A Deployment whose environment names another one's Service (the client calls the APIs; its readiness asks
        # auth) cannot get ready once that one is down: stop waiting for it then, instead of for READY_TIMEOUT.
        depends_on = {
            name: {
                other
                for other, outcome in outcomes.items()
                if other != name and any(f"127.0.0.1:{outcome.port}" in value for value in main.env.values())
            }
            for name, (_, main) in plans.items()
        }
        waiting = {name for name, (_, main) in plans.items() if main.popen is not None}
        down = {name for name, (_, main) in plans.items() if main.popen is None}
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                main = plans[name][1]
                container = manifests.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
                base = f"http://127.0.0.1:{outcomes[name].port}"
                if main.popen is not None and main.popen.poll() is not None:
                    outcomes[name].diagnostics += f"exited {main.popen.returncode}:\n{main.tail()}\n"
                    waiting.discard(name)
                    down.add(name)
                elif depends_on[name] & down:
                    outcomes[name].diagnostics += f"depends on {sorted(depends_on[name] & down)}, which did not start\n"
                    waiting.discard(name)
                elif _get(base + container["readinessProbe"]["httpGet"]["path"]) == 200:
                    outcomes[name].ready_after = time.monotonic() - started
                    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                        outcomes[name].probes[probe] = _get(base + container[probe]["httpGet"]["path"])
                    waiting.discard(name)
            time.sleep(0.2)
        for name in waiting:
            outcomes[name].diagnostics += f"not ready after {READY_TIMEOUT}s:\n{plans[name][1].tail()}\n"
        run = SmokeRun(overlay, outcomes, f"http://127.0.0.1:{gateway_port}", time.monotonic() - started, collector)
        print(
            f"\nsmoke {overlay}: "
            + ", ".join(f"{n} ready at {o.ready_after and round(o.ready_after, 1)}s" for n, o in outcomes.items())
        )
        yield run
    finally:
        # As a pod deletion does: SIGTERM to everything at once, then SIGKILL whatever outlives its grace period.
        for process in processes:
            process.signal(signal.SIGTERM)
        for process in processes:
            process.wait(15)
        if collector is not None:
            collector.stop()


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_deployment_gets_ready_with_what_its_manifest_declares(
    smoke: SmokeRun, deployables: dict[str, Deployable], name: str
) -> None:
    deployables[name].require_present()
    outcome = smoke.outcomes[name]
    if deployables[name].has_migrations:
        assert outcome.migrated, f"{smoke.overlay}: {name}'s init container failed\n{outcome.diagnostics}"
    assert outcome.ready_after is not None, f"{smoke.overlay}: {name} never got ready\n{outcome.diagnostics}"
    assert outcome.probes == {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 200}


def test_the_platform_answers_through_its_entry_point(smoke: SmokeRun, deployables: dict[str, Deployable]) -> None:
    """Through the entry point's stand-in: an API, and (once the client exists) a page the client builds from APIs."""
    assert _get(smoke.gateway_url + "/api/users/currentuser") == 200
    assert _get(smoke.gateway_url + "/.well-known/jwks.json") == 200, "auth's JWK Set, from its mounted key ring"
    if deployables["client"].present:
        assert _get(smoke.gateway_url + "/") == 200


def test_a_traced_overlays_processes_export_one_trace_to_the_collector_it_names(
    smoke: SmokeRun, deployables: dict[str, Deployable]
) -> None:
    """A page through the entry point, in a trace the caller records (a sampled ``traceparent``: where a trace
    starts the overlay records only some, and every process follows the decision it receives): the web client's
    span and that of the API it called (tickets, for the list of tickets) reach the collector's stand-in as one
    trace, exported to ``<endpoint>/v1/traces`` with the sampler the overlay configures. Without tracing, no process
    names a collector."""
    if smoke.overlay not in TRACED_OVERLAYS:
        assert smoke.collector is None
        return
    assert smoke.collector is not None
    deployables["client"].require_present()
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    page = httpx.get(smoke.gateway_url + "/", headers={"traceparent": f"00-{trace_id}-{caller}-01"}, timeout=10)
    assert page.status_code == 200

    def both_arrived(spans: list[Span]) -> bool:
        return {"client", "tickets"} <= {span.service for span in spans if span.trace_id == trace_id}

    smoke.collector.wait_for_blocking(both_arrived, timeout=15)
    spans = {span.span_id: span for span in smoke.collector.trace(trace_id)}
    [page_span] = [s for s in spans.values() if s.service == "client" and s.kind == "server"]
    assert page_span.parent_span_id == caller, "the page continues the caller's trace"
    [api_span] = [s for s in spans.values() if s.service == "tickets" and s.kind == "server"]
    ancestor = api_span.parent_span_id
    while ancestor in spans and ancestor != page_span.span_id:
        ancestor = spans[ancestor].parent_span_id
    assert ancestor == page_span.span_id, "the API call the page made is part of the page's span"
