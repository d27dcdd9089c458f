"""Autoscaling, disruption budgets, resources and shutdown agree with the Deployments and with the code: an
autoscaler scales a Deployment that exists, its database takes every replica's pool, a budget selects exactly one
workload's pods, memory covers what the services were measured to use, and a pod's grace period covers its
shutdown. With KEDA (gke-keda), each service's ScaledObject replaces its CPU autoscaler with the same bounds, target
and behaviour, and has a lag trigger for every durable consumer its code creates, on the code's stream, read from a
NATS monitoring port that exists."""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from typing import Any

import pytest
from deploy_support import (
    ALL_OVERLAYS,
    BASE_OVERLAY,
    DEPLOYABLES,
    KEDA_OVERLAYS,
    NAMESPACE,
    OVERLAYS,
    REPO,
    Deployable,
    Manifests,
    container_env,
    environment,
    nats_config,
)
from pydantic import ValidationError

from ticketing_common.http_server import server_config

# What a pod's shutdown needs after the server stopped (the app's lifespan: stop the listeners and the outbox
# publisher, close NATS and the database pool): a margin, not a measurement.
LIFESPAN_SHUTDOWN_SECONDS = 10
# The overlays that run on GKE, with autoscalers (their ingress-nginx variant scales as gke does).
GKE_OVERLAYS = tuple(overlay for overlay in OVERLAYS if environment(overlay) == "gke")
# Where the services' footprint was measured (make bench's "Footprint" line).
BENCH_README = REPO / "bench" / "README.md"
# "RSS idle → flash-sale peak (MiB): auth 97 → 121, ..., client 103, ..." up to the first parenthesis.
FOOTPRINT = re.compile(r"\*\*Footprint\*\*: RSS idle → flash-sale peak \(MiB\):(?P<figures>[^(]*)")


def _quantity_mib(value: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", value)
    assert match, value
    return float(match[1]) * units[match[2]] if match[2] else float(match[1]) / 2**20


def _millicores(value: str) -> float:
    return float(value[:-1]) if value.endswith("m") else float(value) * 1000


def _settings(deployable: Deployable, manifests: Manifests, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The service's settings from exactly its main container's environment."""
    container = manifests.get("Deployment", deployable.name)["spec"]["template"]["spec"]["containers"][0]
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in container_env(manifests, container).on_this_machine().items():
        monkeypatch.setenv(key, value)
    try:
        return deployable.settings_cls()
    except ValidationError as exc:
        raise AssertionError(f"{deployable.name} refuses its manifest's environment: {exc}") from exc


def _pre_stop_seconds(container: dict[str, Any]) -> int:
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        seconds: int = pre_stop["sleep"]["seconds"]
        return seconds
    command = pre_stop.get("exec", {}).get("command", [])
    assert len(command) == 2, f"{container['name']}: a preStop pause ({command})"
    assert command[0] == "sleep", f"{container['name']}: a preStop pause ({command})"
    return int(command[1])


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_autoscalers_scale_deployments_that_exist_on_cpu_requests(rendered: dict[str, Manifests], overlay: str) -> None:
    """Every autoscaler, the overlay's and those KEDA makes from its ScaledObjects: on CPU (and, KEDA's, on the
    external metrics of its other triggers), one per Deployment."""
    manifests = rendered[overlay]
    targets = []
    for hpa in manifests.autoscalers:
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
        deployment = manifests.get("Deployment", ref["name"])  # fails if it does not exist
        assert hpa["metadata"]["name"] == ref["name"]
        targets.append(ref["name"])
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = [m for m in hpa["spec"]["metrics"] if m["type"] != "External"]
        if any(m["type"] == "External" for m in hpa["spec"]["metrics"]):
            assert [o["kind"] for o in hpa["metadata"].get("ownerReferences", [])] == ["ScaledObject"], (
                "only KEDA's metrics server answers external metrics here"
            )
        assert metric["type"] == "Resource"
        assert metric["resource"]["name"] == "cpu"
        if metric["resource"]["target"]["type"] == "Utilization":  # a share of the requests: every container has one
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                assert "cpu" in container["resources"]["requests"], f"{ref['name']}/{container['name']}"
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0, "a sale is a spike: scale up at once"
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "and down slowly"
    assert len(targets) == len(set(targets)), "one autoscaler per Deployment"
    if overlay.startswith("gke"):
        assert set(targets) == set(DEPLOYABLES), "every service, HTTP and listeners alike, scales"


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_disruption_budgets_select_exactly_one_workload(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    for budget in manifests.of_kind("PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        selected = [
            w for w in manifests.workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"{budget['metadata']['name']} selects {[w['metadata']['name'] for w in selected]}"
        assert selected[0]["spec"]["selector"]["matchLabels"] == selector, "the workload's own selector"


@pytest.mark.parametrize("overlay", GKE_OVERLAYS)
def test_each_database_takes_every_replica_pool_at_the_autoscaler_ceiling(
    rendered: dict[str, Manifests],
    deployables: dict[str, Deployable],
    monkeypatch: pytest.MonkeyPatch,
    overlay: str,
) -> None:
    """maxReplicas (plus the rollout's surge) x (DATABASE_POOL_SIZE + the migrations' connection) + the superuser's
    reserved connections fit in the cluster's max_connections: a sale that scales a service to its ceiling does
    not run its database out of connections."""
    manifests = rendered[overlay]
    for deployable in deployables.values():
        if not deployable.has_migrations:
            continue
        deployment = manifests.get("Deployment", deployable.name)
        hpa = manifests.autoscaler("Deployment", deployable.name)
        assert hpa is not None
        pods = hpa["spec"]["maxReplicas"] + deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        pool = _settings(deployable, manifests, monkeypatch).database_pool_size
        cluster = manifests.get("Cluster", f"{deployable.name}-db")
        parameters = cluster["spec"]["postgresql"]["parameters"]
        reserved = int(parameters.get("superuser_reserved_connections", 3))
        needed = pods * (pool + 1) + reserved
        assert needed <= int(parameters["max_connections"]), f"{deployable.name}: {needed} connections at the ceiling"


def _measured_peak_rss_mib() -> dict[str, float]:
    """Peak RSS per service over make bench's flash sale (bench/README.md), or {} when the line is not there."""
    match = FOOTPRINT.search(BENCH_README.read_text()) if BENCH_README.exists() else None
    if match is None:
        return {}
    figures = re.findall(r"(\w+) (\d+)(?: → ([\d,]+))?(?:,|$)", match["figures"].strip())
    return {name: float((peak or idle).replace(",", "")) for name, idle, peak in figures}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_memory_requests_cover_the_measured_footprint(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests at least 1.25 x the peak RSS measured by make bench (so the scheduler places pods where they fit
    under a sale), limits above requests; auth's limit also holds PASSWORD_HASH_CONCURRENCY Argon2 hashes."""
    measured = _measured_peak_rss_mib()
    if not measured:
        pytest.skip(f"no footprint line in {BENCH_README.relative_to(REPO)}: nothing measured to compare with")
    manifests = rendered[overlay]
    for name in deployables:
        container = manifests.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        request = _quantity_mib(container["resources"]["requests"]["memory"])
        limit = _quantity_mib(container["resources"]["limits"]["memory"])
        assert name in measured, f"bench/README.md measured no footprint for {name}"
        assert request >= 1.25 * measured[name], f"{name}: {request} MiB requested, {measured[name]} MiB measured"
        assert limit >= request
        if name == "auth":
            settings = _settings(deployables[name], manifests, monkeypatch)
            argon2_mib = settings.argon2_memory_cost / 1024 * settings.password_hash_concurrency
            assert limit >= measured[name] + argon2_mib, "the hashes in flight fit under the limit"


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_grace_period_covers_the_pause_the_server_shutdown_and_the_lifespan(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """SIGTERM comes after the preStop pause (endpoints and the load balancer stop routing here meanwhile), then
    uvicorn finishes the requests in flight (timeout_graceful_shutdown, from the code), then the lifespan stops
    the listeners (an event whose batch was cut short is redelivered after its ack wait) and closes the pools:
    all of it within terminationGracePeriodSeconds, or the kubelet kills the process halfway."""
    graceful = server_config(None, host="0.0.0.0", port=3000).timeout_graceful_shutdown
    assert graceful is not None
    assert graceful > 0
    manifests = rendered[overlay]
    for deployment in manifests.of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        pause = _pre_stop_seconds(pod["containers"][0])
        assert pause >= 5, "endpoints update lazily: a few seconds at least"
        needed = pause + graceful + LIFESPAN_SHUTDOWN_SECONDS
        name = deployment["metadata"]["name"]
        assert pod["terminationGracePeriodSeconds"] >= needed, f"{name}: {needed} s needed"
    for policy in manifests.of_kind("GCPBackendPolicy"):
        draining = policy["spec"]["default"]["connectionDraining"]["drainingTimeoutSec"]
        assert draining >= graceful, "the load balancer lets a request in flight run as long as the server does"
        manifests.get("Service", policy["spec"]["targetRef"]["name"])


# -- consumer lag through KEDA (components/keda-lag-scaling) -----------------------------------------------------

SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
# The annotation that lets KEDA adopt the autoscaler the ScaledObject replaces, when it is already in the cluster.
TRANSFER_OWNERSHIP = "scaledobject.keda.sh/transfer-hpa-ownership"
# The account of every NATS client when the server configures none.
NATS_GLOBAL_ACCOUNT = "$G"
CLUSTER_DOMAIN = "svc.cluster.local"


def _cpu_utilization(hpa: dict[str, Any]) -> int:
    (metric,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization"
    utilization: int = target["averageUtilization"]
    return utilization


def _nats_monitoring_port(manifests: Manifests) -> int | None:
    """The port nats-server serves its monitoring endpoints on (``http`` or ``http_port`` in nats.conf)."""
    match = re.search(r"^\s*http(?:_port)?\s*[:=]\s*(?:[^\s:]+:)?(\d+)\s*$", nats_config(manifests), re.MULTILINE)
    return int(match[1]) if match else None


def _monitoring_endpoint_problems(manifests: Manifests, endpoint: str) -> list[str]:
    """Whether ``<service>.<namespace>.svc.cluster.local:<port>`` reaches nats-server's monitoring port in the
    rendered overlay: a Service of that name in the namespace the overlays are deployed to (KEDA asks from its
    own), with that port, whose target is the port of the NATS pods it selects on which nats.conf serves
    monitoring; headless and the StatefulSet's own Service, so that each node's name (``nats-0.<service>``)
    resolves too, which the scaler uses in a cluster whose nodes do not advertise their addresses."""
    host, _, port = endpoint.rpartition(":")
    name, _, rest = host.partition(".")
    namespace, _, domain = rest.partition(".")
    if not port.isdigit() or domain != CLUSTER_DOMAIN:
        return [f"{endpoint}: not <service>.<namespace>.{CLUSTER_DOMAIN}:<port>"]
    if namespace != NAMESPACE:
        return [f"{endpoint}: the overlays are deployed to the namespace {NAMESPACE}"]
    service = manifests.find("Service", name)
    if service is None:
        return [f"{endpoint}: no Service {name}"]
    ports = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    if not ports:
        return [f"{endpoint}: the Service {name} has no port {port}"]
    selector = service["spec"]["selector"]
    pods = [w for w in manifests.workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
    if [_workload_label(w) for w in pods] != ["StatefulSet/nats"]:
        return [f"{endpoint}: the Service {name} selects {[_workload_label(w) for w in pods]}, not the NATS nodes"]
    nats = pods[0]
    target = ports[0].get("targetPort", ports[0]["port"])
    container_ports = {
        p["containerPort"]
        for c in nats["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
        if target in (p.get("name"), p["containerPort"])
    }
    problems = []
    if container_ports != {_nats_monitoring_port(manifests)}:
        problems.append(
            f"{endpoint}: targets {container_ports}, nats.conf monitors on {_nats_monitoring_port(manifests)}"
        )
    if service["spec"].get("clusterIP") != "None" or nats["spec"]["serviceName"] != name:
        problems.append(f"{endpoint}: {name} is not the NATS StatefulSet's headless Service")
    return problems


def _workload_label(workload: dict[str, Any]) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}"


def _lag_scaling_problems(
    manifests: Manifests, replaced: Manifests, consumers: dict[str, list[str]], settings: dict[str, Any]
) -> list[str]:
    """What is wrong with an overlay's ScaledObjects: ``replaced`` is the overlay it is built on (its CPU
    autoscalers), ``consumers`` each service's durable consumers and ``settings`` its settings, from the code."""
    problems: list[str] = []
    order = [_workload_label(o) for o in manifests.objects]
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in manifests.of_kind("ScaledObject")}
    own_hpas = manifests.of_kind("HorizontalPodAutoscaler")
    for name in consumers:
        if consumers[name] and name not in scaled:
            problems.append(f"{name} consumes {consumers[name]} but scales on CPU alone")
        if not consumers[name] and name in scaled:
            problems.append(f"{name} has no consumer: a ScaledObject for it is a CPU autoscaler with extra steps")
    for target, so in scaled.items():
        spec, where = so["spec"], f"ScaledObject/{so['metadata']['name']}"
        ref = spec["scaleTargetRef"]
        if (ref.get("apiVersion"), ref.get("kind"), so["metadata"]["name"]) != ("apps/v1", "Deployment", target):
            problems.append(f"{where}: scales {ref}, not the Deployment it is named after")
        if manifests.find("Deployment", target) is None:
            problems.append(f"{where}: no Deployment {target}")
            continue
        # KEDA's webhook reads the Deployment's CPU requests when the ScaledObject is created: the Deployment first.
        if order.index(_workload_label(so)) < order.index(f"Deployment/{target}"):
            problems.append(f"{where}: rendered before its Deployment, which KEDA's webhook must find")
        for hpa in own_hpas:
            if hpa["spec"]["scaleTargetRef"]["name"] == target or hpa["metadata"]["name"] == target:
                problems.append(f"{where}: the HorizontalPodAutoscaler {hpa['metadata']['name']} is still there")
        old = replaced.autoscaler("Deployment", target)
        if old is None or old["kind"] != "HorizontalPodAutoscaler" or "ownerReferences" in old["metadata"]:
            problems.append(f"{where}: replaces no CPU autoscaler of {replaced.overlay}")
            continue
        config = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
        if (spec.get("minReplicaCount"), spec.get("maxReplicaCount")) != (
            old["spec"]["minReplicas"],
            old["spec"]["maxReplicas"],
        ):
            problems.append(f"{where}: bounds differ from the HorizontalPodAutoscaler's")
        if config.get("behavior") != old["spec"]["behavior"]:
            problems.append(f"{where}: behaviour differs from the HorizontalPodAutoscaler's")
        if (
            config.get("name") != old["metadata"]["name"]
            or so["metadata"].get("annotations", {}).get(TRANSFER_OWNERSHIP) != "true"
        ):
            problems.append(f"{where}: KEDA's autoscaler does not take over {old['metadata']['name']}")
        triggers = Counter(t["type"] for t in spec["triggers"])
        if set(triggers) - {"cpu", "nats-jetstream"}:
            problems.append(f"{where}: triggers {sorted(triggers)}")
        cpu = [t for t in spec["triggers"] if t["type"] == "cpu"]
        if (
            len(cpu) != 1
            or cpu[0].get("metricType") != "Utilization"
            or cpu[0]["metadata"] != {"value": str(_cpu_utilization(old))}
        ):
            problems.append(f"{where}: not the CPU target of the HorizontalPodAutoscaler ({_cpu_utilization(old)}%)")
        service = settings[target]
        lags = [t["metadata"] for t in spec["triggers"] if t["type"] == "nats-jetstream"]
        listed = Counter(lag.get("consumer") for lag in lags)
        if listed != Counter(consumers[target]):
            problems.append(f"{where}: consumers {sorted(listed)}, the code's {sorted(consumers[target])}")
        in_hand = service.event_concurrency * service.event_batch_size
        for lag in lags:
            about = f"{where}, {lag.get('consumer')}"
            if lag.get("stream") != service.nats_stream:
                problems.append(f"{about}: stream {lag.get('stream')}, the service's is {service.nats_stream}")
            if lag.get("account") != NATS_GLOBAL_ACCOUNT or "accountID" in lag:
                problems.append(f"{about}: account {lag.get('account')}")
            if not int(lag.get("lagThreshold", "10")) > in_hand:
                problems.append(f"{about}: a lag of {in_hand} is what one replica holds while keeping up")
            if lag.get("useHttps", "false") != "false":
                problems.append(f"{about}: nats-server serves monitoring over http")
            problems += [
                f"{about}: {p}" for p in _monitoring_endpoint_problems(manifests, lag["natsServerMonitoringEndpoint"])
            ]
    if scaled and re.search(r"^\s*accounts\s*[:={]", nats_config(manifests), re.MULTILINE):
        problems.append(f"nats.conf declares accounts: the clients are no longer all in {NATS_GLOBAL_ACCOUNT}")
    return problems


def _code_view(
    manifests: Manifests, deployables: dict[str, Deployable], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Each service's settings from its Deployment's environment, and the durable consumers its code creates with
    them."""
    settings = {name: _settings(d, manifests, monkeypatch) for name, d in deployables.items()}
    consumers = {name: d.durable_consumers(settings[name]) for name, d in deployables.items()}
    return consumers, settings


@pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
def test_scaled_objects_replace_the_cpu_autoscalers_and_trigger_on_every_consumer_of_the_code(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], monkeypatch: pytest.MonkeyPatch, overlay: str
) -> None:
    """Every service whose code creates a durable consumer scales on its lag (a nats-jetstream trigger each, on the
    service's stream, read from NATS's monitoring port) and on CPU as before: its ScaledObject keeps the replaced
    autoscaler's bounds, target and behaviour, and takes over its name; no autoscaler of the overlay's is left on
    that Deployment (two would fight over its replica count)."""
    manifests = rendered[overlay]
    consumers, settings = _code_view(manifests, deployables, monkeypatch)
    assert any(consumers.values()), "the services consume events: the code was not read"
    assert [o for o in manifests.objects if (o["apiVersion"], o["kind"]) == SCALED_OBJECT]
    problems = _lag_scaling_problems(manifests, rendered[BASE_OVERLAY[overlay]], consumers, settings)
    assert not problems, "\n".join(problems)
    for name in deployables:  # one autoscaler per Deployment, whoever makes it
        owners = [
            hpa["metadata"].get("ownerReferences", [{}])[0].get("kind", "overlay")
            for hpa in manifests.autoscalers
            if hpa["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert owners == (["ScaledObject"] if consumers[name] else ["overlay"]), f"{name}: {owners}"


@pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
def test_the_keda_overlay_is_its_base_but_for_the_autoscalers_it_replaces(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """The component adds ScaledObjects and removes the autoscalers they replace, nothing else: every other object
    is its base overlay's, field for field, so whatever is checked of gke holds here too."""
    manifests, base = rendered[overlay], rendered[BASE_OVERLAY[overlay]]

    def others(m: Manifests) -> list[str]:
        kinds = ("HorizontalPodAutoscaler", "ScaledObject")
        return sorted(json.dumps(o, sort_keys=True) for o in m.objects if o["kind"] not in kinds)

    assert others(manifests) == others(base)
    replaced = {so["spec"]["scaleTargetRef"]["name"] for so in manifests.of_kind("ScaledObject")}
    for hpa in base.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        kept = manifests.find("HorizontalPodAutoscaler", hpa["metadata"]["name"])
        assert (kept is None) == (target in replaced), f"{target}: replaced by a ScaledObject or kept, not both"
        assert kept in (None, hpa)


def test_the_lag_scaling_checks_can_fail(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks above catch what they are about: a consumer without a trigger (one the code adds, or a trigger
    removed), another stream, a port NATS does not monitor on, another namespace, the CPU autoscaler left in place,
    other bounds, CPU target or behaviour, a threshold a replica keeping up reaches."""
    overlay = KEDA_OVERLAYS[0]
    manifests, base = rendered[overlay], rendered[BASE_OVERLAY[overlay]]
    consumers, settings = _code_view(manifests, deployables, monkeypatch)
    assert not _lag_scaling_problems(manifests, base, consumers, settings)

    def mutated(change: Any) -> str:
        copied = copy.deepcopy(manifests)
        change(copied.get("ScaledObject", "orders")["spec"], copied)
        return "\n".join(_lag_scaling_problems(copied, base, consumers, settings))

    def lag(spec: dict[str, Any]) -> dict[str, str]:
        metadata: dict[str, str] = next(t for t in spec["triggers"] if t["type"] == "nats-jetstream")["metadata"]
        return metadata

    def endpoint(value: str) -> Any:
        return lambda spec, _: lag(spec).update(natsServerMonitoringEndpoint=value)

    assert "the code's" in mutated(lambda spec, _: spec["triggers"].pop())
    assert "stream ORDERS" in mutated(lambda spec, _: lag(spec).update(stream="ORDERS"))
    assert "monitors on 8222" in mutated(endpoint("nats-headless.default.svc.cluster.local:4222"))
    assert "has no port 8222" in mutated(endpoint("nats.default.svc.cluster.local:8222"))
    assert "namespace" in mutated(endpoint("nats-headless.keda.svc.cluster.local:8222"))
    assert "keeping up" in mutated(lambda spec, _: lag(spec).update(lagThreshold="1000"))
    assert "bounds" in mutated(lambda spec, _: spec.update(minReplicaCount=3))
    assert "CPU target" in mutated(lambda spec, _: spec["triggers"][0]["metadata"].update(value="70"))
    assert "behaviour" in mutated(lambda spec, _: spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"].clear())
    assert "still there" in mutated(lambda _, m: m.objects.append(base.get("HorizontalPodAutoscaler", "orders")))
    with_another = {**consumers, "orders": [*consumers["orders"], "orders-ticket-deleted"]}
    assert _lag_scaling_problems(manifests, base, with_another, settings)
    without_any = {**consumers, "payments": []}
    assert _lag_scaling_problems(manifests, base, without_any, settings)
