"""Autoscaling, disruption budgets, resources and shutdown agree with the Deployments and with the code: an
autoscaler scales a Deployment that exists, its database takes every replica's pool, a budget selects exactly one
workload's pods, memory covers what the services were measured to use, and a pod's grace period covers its
shutdown."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from deploy_support import ALL_OVERLAYS, DEPLOYABLES, OVERLAYS, REPO, Deployable, Manifests, container_env
from pydantic import ValidationError

from ticketing_common.http_server import server_config

# What a pod's shutdown needs after the server stopped (the app's lifespan: stop the listeners and the outbox
# publisher, close NATS and the database pool): a margin, not a measurement.
LIFESPAN_SHUTDOWN_SECONDS = 10
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
    manifests = rendered[overlay]
    targets = []
    for hpa in manifests.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
        deployment = manifests.get("Deployment", ref["name"])  # fails if it does not exist
        assert hpa["metadata"]["name"] == ref["name"]
        targets.append(ref["name"])
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
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


def test_each_database_takes_every_replica_pool_at_the_autoscaler_ceiling(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], monkeypatch: pytest.MonkeyPatch
) -> None:
    """maxReplicas (plus the rollout's surge) x (DATABASE_POOL_SIZE + the migrations' connection) + the superuser's
    reserved connections fit in the cluster's max_connections: a sale that scales a service to its ceiling does
    not run its database out of connections."""
    manifests = rendered["gke"]
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
