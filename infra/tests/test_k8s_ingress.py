"""The Ingress routes exactly like the local gateway: both follow ``ticketing_common.routes.ROUTES``."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_support import OVERLAYS, Manifests

from ticketing_common.http_server import OPERATIONAL_PATHS, came_through_proxy, is_operational_path
from ticketing_common.routes import ROUTES, route_for

SAMPLE_PATHS = (
    "/",
    "/api/users",
    "/api/users/",
    "/api/users/signin",
    "/api/users/currentuser",
    "/api/usersx",
    "/api/tickets",
    "/api/tickets/3f1c0d6e-6a2b-4f0e-9d56-2c8d1f0b7a11",
    "/api/orders",
    "/api/orders/abc",
    "/api/payments",
    "/api/paymentsx/1",
    "/api",
    "/api/",
    "/api/unknown",
    "/tickets/new",
    "/orders/123",
    "/static/app.css",
    "/healthz",
)


def _rules(manifests: Manifests) -> list[dict[str, Any]]:
    ingresses = manifests.of_kind("Ingress")
    assert len(ingresses) == 1, "one Ingress, the platform's single entry point"
    spec = ingresses[0]["spec"]
    assert ingresses[0]["apiVersion"] == "networking.k8s.io/v1"
    assert spec["ingressClassName"] == "nginx"
    assert [rule["host"] for rule in spec["rules"]] == ["ticketing.dev"]
    paths: list[dict[str, Any]] = spec["rules"][0]["http"]["paths"]
    return paths


def _backend_port(manifests: Manifests, backend: dict[str, Any]) -> int:
    service = manifests.get("Service", backend["service"]["name"])
    wanted = backend["service"]["port"]
    for port in service["spec"]["ports"]:
        if port.get("name") == wanted.get("name") or port["port"] == wanted.get("number"):
            number: int = port["port"]
            return number
    raise AssertionError(f"{backend['service']['name']} has no port {wanted}")


def _kubernetes_prefix_match(prefix: str, path: str) -> bool:
    """``pathType: Prefix``: element-wise prefix of the path split by ``/`` (the Ingress API's definition)."""
    prefix_parts = [p for p in prefix.split("/") if p]
    path_parts = [p for p in path.split("/") if p]
    return path_parts[: len(prefix_parts)] == prefix_parts


def _ingress_service_for(rules: list[dict[str, Any]], path: str) -> str | None:
    """The backend the Ingress picks: the longest matching path wins (the Ingress API's rule for overlaps)."""
    matching = [r for r in rules if r["pathType"] == "Prefix" and _kubernetes_prefix_match(r["path"], path)]
    if not matching:
        return None
    best = max(matching, key=lambda r: len(r["path"].rstrip("/")))
    name: str = best["backend"]["service"]["name"]
    return name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_rules_are_the_gateway_route_table(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    rules = _rules(manifests)
    assert {(r["path"], r["pathType"], r["backend"]["service"]["name"]) for r in rules} == {
        (route.prefix, "Prefix", f"{route.service}-srv") for route in ROUTES
    }
    assert len(rules) == len(ROUTES)
    for rule in rules:
        service = manifests.get("Service", rule["backend"]["service"]["name"])
        port = _backend_port(manifests, rule["backend"])
        assert port in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("path", SAMPLE_PATHS)
def test_ingress_and_gateway_send_a_path_to_the_same_service(
    rendered: dict[str, Manifests], overlay: str, path: str
) -> None:
    route = route_for(path)
    expected = f"{route.service}-srv" if route else None
    assert _ingress_service_for(_rules(rendered[overlay]), path) == expected


def test_the_expiration_service_has_no_public_route(rendered: dict[str, Manifests]) -> None:
    services = {r["backend"]["service"]["name"] for r in _rules(rendered["gke"])}
    assert "expiration-srv" not in services


@pytest.mark.parametrize("path", OPERATIONAL_PATHS)
def test_the_ingress_sends_operational_paths_only_to_services_that_refuse_proxied_requests(
    rendered: dict[str, Manifests], path: str
) -> None:
    """ingress-nginx cannot leave a path out of a Prefix rule, so ``/metrics`` and the rest reach the web client;
    every service (the client too, through RequestMiddleware) answers 404 there to a request carrying
    X-Forwarded-For, which ingress-nginx always sets and a kubelet probe or a Prometheus scrape never does."""
    assert is_operational_path(path)
    assert came_through_proxy([(b"x-forwarded-for", b"203.0.113.7")])
    for overlay in OVERLAYS:
        assert _ingress_service_for(_rules(rendered[overlay]), path) in {f"{r.service}-srv" for r in ROUTES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_scrapes_ask_operational_paths_directly(rendered: dict[str, Manifests], overlay: str) -> None:
    checked = 0
    for deployment in rendered[overlay].of_kind("Deployment"):
        template = deployment["spec"]["template"]
        scrape_path = template["metadata"].get("annotations", {}).get("prometheus.io/path")
        if scrape_path is not None:
            assert is_operational_path(scrape_path)
        for container in template["spec"]["containers"]:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind, {}).get("httpGet")
                if probe is None:
                    continue
                checked += 1
                assert is_operational_path(probe["path"])
                sent = [(h["name"].lower().encode(), h["value"].encode()) for h in probe.get("httpHeaders", [])]
                assert not came_through_proxy(sent), f"{deployment['metadata']['name']} {kind} would be refused"
    assert checked > 0
