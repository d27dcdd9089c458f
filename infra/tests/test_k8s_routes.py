"""The cluster routes exactly like the local gateway: the Gateway API's HTTPRoute (the default) and the optional
Ingress both follow ``ticketing_common.routes.ROUTES``, and neither forwards the operational paths publicly.

One refinement: a route of the table under ``/.well-known/`` names a single document (RFC 8615; auth's JWK Set,
``/.well-known/jwks.json``), so the cluster matches it exactly (HTTPRoute ``Exact``, Ingress ``Exact``), where
``Route.matches`` also takes the paths below it. Those paths, which no document answers, go where the rest of the
table sends them (the web client) instead of to auth; nothing else differs.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_support import ALL_OVERLAYS, INGRESS_OVERLAYS, OVERLAYS, Manifests, environment

from ticketing_common.http_server import OPERATIONAL_PATHS, came_through_proxy, is_operational_path
from ticketing_common.routes import ROUTES, Route, route_for

HOST = "ticketing.dev"
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
    "/api/queue",
    "/api/queue/3f1c0d6e-6a2b-4f0e-9d56-2c8d1f0b7a11",
    "/api/queuex",
    "/api",
    "/api/",
    "/api/unknown",
    "/api/users/healthz",
    "/tickets/new",
    "/orders/123",
    "/static/app.css",
    "/healthz",
    "/healthz/",
    "/metrics",
    "/metricsx",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/readyz",
    "/redoc",
    "/.well-known/jwks.json",
    "/.well-known/jwks.json/",
    "/.well-known/jwks.json/x",
    "/.well-known/jwks.jsonx",
    "/.well-known/jwks",
    "/.well-known",
    "/.well-known/",
    "/.well-known/openid-configuration",
    "/api/users/.well-known/jwks.json",
)
NOT_FORWARDED = "(not forwarded)"
# What ingress-nginx's admission webhook accepts as the path of an Exact or Prefix rule when it validates path types
# (strict-validate-path-type): internal/ingress/inspector/rules.go, validPathType.
INGRESS_NGINX_VALID_PATH = re.compile(r"(?i)^/[a-z0-9._\-/]*$")


def _exact_in_cluster(route: Route) -> bool:
    """A route the cluster matches exactly: a well-known document (RFC 8615), one resource, not a folder."""
    return route.prefix.startswith("/.well-known/")


def _cluster_route_for(path: str) -> Route | None:
    """The route of the table the cluster's entry point follows for ``path``: the table's first match, a route
    matched exactly taking only its own path."""
    return next(
        (r for r in ROUTES if (path == r.prefix if _exact_in_cluster(r) else r.matches(path))),
        None,
    )


def _cluster_service(path: str) -> str | None:
    route = _cluster_route_for(path)
    return f"{route.service}-srv" if route else None


def _prefix_match(prefix: str, path: str) -> bool:
    """``Prefix`` (Ingress) and ``PathPrefix`` (Gateway API) alike: an element-wise prefix of the path split by
    ``/``, a trailing slash ignored; ``/abc`` matches ``/abc/d`` but not ``/abcd``."""
    prefix_parts = [p for p in prefix.split("/") if p]
    path_parts = [p for p in path.split("/") if p]
    return path_parts[: len(prefix_parts)] == prefix_parts


def _service_port(manifests: Manifests, service_name: str, port: dict[str, Any] | int) -> int:
    service = manifests.get("Service", service_name)
    for candidate in service["spec"]["ports"]:
        if isinstance(port, int) and candidate["port"] == port:
            return port
        if isinstance(port, dict) and (
            candidate.get("name") == port.get("name") or candidate["port"] == port.get("number")
        ):
            number: int = candidate["port"]
            return number
    raise AssertionError(f"{service_name} has no port {port}")


# -- the Gateway API ----------------------------------------------------------------------------------------------


def _public_route(manifests: Manifests) -> dict[str, Any]:
    route = manifests.get("HTTPRoute", "ticketing")
    assert route["spec"]["hostnames"] == [HOST]
    return route


def _gateway_target(route: dict[str, Any], path: str) -> str | None:
    """Where the HTTPRoute sends ``path``: a Service, NOT_FORWARDED (a rule that answers by itself), or None (no
    rule). The Gateway API's precedence between rules: an Exact match first, then the longest PathPrefix."""
    candidates = []
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}]):
            kind, value = match["path"]["type"], match["path"]["value"]
            assert set(match) == {"path"}, "path matches only: no header, query or method conditions"
            if (kind == "Exact" and path == value) or (kind == "PathPrefix" and _prefix_match(value, path)):
                candidates.append((kind == "Exact", len(value), rule))
            else:
                assert kind in ("Exact", "PathPrefix"), kind
    if not candidates:
        return None
    rule = max(candidates, key=lambda c: (c[0], c[1]))[2]
    backends = rule.get("backendRefs", [])
    if not backends:
        return NOT_FORWARDED
    assert len(backends) == 1, "one Service per route, no traffic split"
    name: str = backends[0]["name"]
    return name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_httproute_rules_are_the_route_table(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    rules = _public_route(manifests)["spec"]["rules"]
    forwarding = [r for r in rules if r.get("backendRefs")]
    assert [
        (r["matches"][0]["path"]["type"], r["matches"][0]["path"]["value"], r["backendRefs"][0]["name"])
        for r in forwarding
    ] == [
        ("Exact" if _exact_in_cluster(route) else "PathPrefix", route.prefix, f"{route.service}-srv")
        for route in ROUTES
    ], "one rule per route, in order"
    for rule in forwarding:
        assert len(rule["matches"]) == 1, rule
        assert not rule.get("filters"), rule
        (backend,) = rule["backendRefs"]
        assert backend.get("kind", "Service") == "Service"
        assert backend.get("group", "") == ""
        _service_port(manifests, backend["name"], backend["port"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_httproute_keeps_the_operational_paths_off_the_entry_point(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """One rule matches exactly the operational paths and forwards nothing: a redirect to the home page."""
    rules = _public_route(rendered[overlay])["spec"]["rules"]
    (rule,) = [r for r in rules if not r.get("backendRefs")]
    assert sorted(m["path"]["value"] for m in rule["matches"]) == sorted(OPERATIONAL_PATHS)
    assert {m["path"]["type"] for m in rule["matches"]} == {"PathPrefix"}, "is_operational_path's prefix semantics"
    (redirect,) = rule["filters"]
    assert redirect["type"] == "RequestRedirect"
    target = redirect["requestRedirect"]["path"]
    assert target == {"type": "ReplaceFullPath", "replaceFullPath": "/"}
    assert not is_operational_path(target["replaceFullPath"]), "the redirect does not loop"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("path", SAMPLE_PATHS)
def test_httproute_and_local_gateway_send_a_path_to_the_same_service(
    rendered: dict[str, Manifests], overlay: str, path: str
) -> None:
    """The local gateway refuses operational paths itself (is_operational_path); the HTTPRoute forwards them to no
    Service; every other path goes where the route table says (matching a well-known document exactly)."""
    expected = NOT_FORWARDED if is_operational_path(path) else _cluster_service(path)
    assert _gateway_target(_public_route(rendered[overlay]), path) == expected


@pytest.mark.parametrize("path", sorted({*SAMPLE_PATHS, *(r.prefix for r in ROUTES)}))
def test_the_cluster_follows_the_route_table_but_below_a_well_known_document(path: str) -> None:
    """Where the cluster's exact matches part from ``Route.matches``: only below an exact route's path, which then
    goes where the rest of the table sends it; the document itself reaches its service everywhere."""
    local, cluster = route_for(path), _cluster_route_for(path)
    if local is not None and _exact_in_cluster(local) and path != local.prefix:
        assert path.startswith(local.prefix + "/")
        assert cluster == next(r for r in ROUTES if not _exact_in_cluster(r) and r.matches(path))
    else:
        assert cluster == local


def test_the_jwk_set_reaches_auth_through_the_entry_point() -> None:
    """Auth's JWK Set is public (the services fetch it inside the cluster, JWKS_URL; anyone may check a token)."""
    assert _cluster_service("/.well-known/jwks.json") == "auth-srv"
    assert not is_operational_path("/.well-known/jwks.json")
    assert "/.well-known/jwks.json" in [r.prefix for r in ROUTES if _exact_in_cluster(r)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_public_route_is_attached_to_the_overlay_gateway(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    gateway = manifests.get("Gateway", "ticketing")
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    assert all(listener["hostname"] == HOST for listener in listeners.values())
    for route in manifests.of_kind("HTTPRoute"):
        for parent in route["spec"]["parentRefs"]:
            assert parent["name"] == "ticketing"
            assert parent.get("kind", "Gateway") == "Gateway"
            assert parent.get("sectionName", next(iter(listeners))) in listeners
    public = _public_route(manifests)["spec"]["parentRefs"]
    if environment(overlay) == "dev":
        assert gateway["spec"]["gatewayClassName"] == manifests.get("GatewayClass", "envoy-gateway")["metadata"]["name"]
        assert manifests.get("GatewayClass", "envoy-gateway")["spec"]["controllerName"] == (
            "gateway.envoyproxy.io/gatewayclass-controller"
        )
        assert set(listeners) == {"http"}, "plain http: the dev overlay's cookie is not Secure"
    else:
        assert gateway["spec"]["gatewayClassName"] == "gke-l7-global-external-managed"
        assert [p.get("sectionName") for p in public] == ["https"], "the APIs only over https (Secure cookie)"
        assert listeners["https"]["protocol"] == "HTTPS"
        assert listeners["https"]["port"] == 443
        (redirect,) = [r for r in manifests.of_kind("HTTPRoute") if r["metadata"]["name"] != "ticketing"]
        assert [p.get("sectionName") for p in redirect["spec"]["parentRefs"]] == ["http"]
        (rule,) = redirect["spec"]["rules"]
        assert not rule.get("backendRefs")
        assert rule["filters"][0]["requestRedirect"]["scheme"] == "https"


# -- the optional Ingress (ingress-nginx) -------------------------------------------------------------------------


def _ingress_rules(manifests: Manifests) -> list[dict[str, Any]]:
    ingresses = manifests.of_kind("Ingress")
    assert len(ingresses) == 1, "one Ingress, the platform's single entry point"
    spec = ingresses[0]["spec"]
    assert ingresses[0]["apiVersion"] == "networking.k8s.io/v1"
    assert spec["ingressClassName"] == "nginx"
    assert [rule["host"] for rule in spec["rules"]] == [HOST]
    paths: list[dict[str, Any]] = spec["rules"][0]["http"]["paths"]
    return paths


def _ingress_target(rules: list[dict[str, Any]], path: str) -> str | None:
    """The backend the Ingress picks (the Ingress API's rules for overlaps): the longest matching path wins, and
    between equally long ones an Exact path wins over a Prefix one."""
    matching = []
    for rule in rules:
        assert rule["pathType"] in ("Exact", "Prefix"), f"{rule['path']}: no ImplementationSpecific (regexes)"
        if (rule["pathType"] == "Exact" and rule["path"] == path) or (
            rule["pathType"] == "Prefix" and _prefix_match(rule["path"], path)
        ):
            matching.append(rule)
    if not matching:
        return None
    best = max(matching, key=lambda r: (len(r["path"].rstrip("/")), r["pathType"] == "Exact"))
    name: str = best["backend"]["service"]["name"]
    return name


@pytest.mark.parametrize("overlay", INGRESS_OVERLAYS)
def test_ingress_rules_are_the_route_table(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    rules = _ingress_rules(manifests)
    assert {(r["path"], r["pathType"], r["backend"]["service"]["name"]) for r in rules} == {
        (route.prefix, "Exact" if _exact_in_cluster(route) else "Prefix", f"{route.service}-srv") for route in ROUTES
    }
    assert len(rules) == len(ROUTES)
    for rule in rules:
        _service_port(manifests, rule["backend"]["service"]["name"], rule["backend"]["service"]["port"])
        assert INGRESS_NGINX_VALID_PATH.fullmatch(rule["path"]), f"ingress-nginx refuses the path {rule['path']}"


@pytest.mark.parametrize("overlay", INGRESS_OVERLAYS)
@pytest.mark.parametrize("path", SAMPLE_PATHS)
def test_ingress_and_gateway_send_a_path_to_the_same_service(
    rendered: dict[str, Manifests], overlay: str, path: str
) -> None:
    assert _ingress_target(_ingress_rules(rendered[overlay]), path) == _cluster_service(path)


@pytest.mark.parametrize("path", sorted({*SAMPLE_PATHS, *(r.prefix for r in ROUTES), *OPERATIONAL_PATHS}))
def test_the_route_table_httproute_and_ingress_agree(rendered: dict[str, Manifests], path: str) -> None:
    """All three at once, in every overlay: the Service a path reaches is the route table's (a well-known document
    matched exactly), except that the HTTPRoute forwards no operational path (the Ingress cannot leave one out; see
    the next test)."""
    table = _cluster_service(path)
    for overlay in OVERLAYS:
        expected = NOT_FORWARDED if is_operational_path(path) else table
        assert _gateway_target(_public_route(rendered[overlay]), path) == expected, overlay
    for overlay in INGRESS_OVERLAYS:
        assert _ingress_target(_ingress_rules(rendered[overlay]), path) == table, overlay


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_the_expiration_service_has_no_public_route(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    public = {
        b["name"]
        for r in manifests.of_kind("HTTPRoute")
        for rule in r["spec"]["rules"]
        for b in rule.get("backendRefs", [])
    }
    public |= {
        p["backend"]["service"]["name"]
        for i in manifests.of_kind("Ingress")
        for p in i["spec"]["rules"][0]["http"]["paths"]
    }
    assert public == {f"{r.service}-srv" for r in ROUTES}
    assert "expiration-srv" not in public


@pytest.mark.parametrize("path", OPERATIONAL_PATHS)
def test_the_ingress_sends_operational_paths_only_to_services_that_refuse_proxied_requests(
    rendered: dict[str, Manifests], path: str
) -> None:
    """ingress-nginx cannot leave a path out of a Prefix rule, so ``/metrics`` and the rest reach the web client;
    every service (the client too, through RequestMiddleware) answers 404 there to a request carrying
    X-Forwarded-For, which ingress-nginx always sets and a kubelet probe or a Prometheus scrape never does. (The
    same guarantee stands behind the Gateway: Envoy and Google's load balancer set X-Forwarded-For too.)"""
    assert is_operational_path(path)
    assert came_through_proxy([(b"x-forwarded-for", b"203.0.113.7")])
    for overlay in INGRESS_OVERLAYS:
        assert _ingress_target(_ingress_rules(rendered[overlay]), path) in {f"{r.service}-srv" for r in ROUTES}


# -- probes, scrapes and health checks ask the services directly ---------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_scrapes_and_load_balancer_health_checks_ask_operational_paths_directly(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    checked = 0
    manifests = rendered[overlay]
    for deployment in manifests.of_kind("Deployment"):
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
    # GKE's load balancer checks each Service it sends to, on its serving port, without X-Forwarded-For.
    policies = {p["spec"]["targetRef"]["name"]: p for p in manifests.of_kind("HealthCheckPolicy")}
    backends = {
        b["name"]
        for r in manifests.of_kind("HTTPRoute")
        for rule in r["spec"]["rules"]
        for b in rule.get("backendRefs", [])
    }
    if environment(overlay) == "gke":
        assert set(policies) == backends, "every Service behind the load balancer has its health check"
    for name, policy in policies.items():
        assert policy["spec"]["targetRef"] == {"group": "", "kind": "Service", "name": name}
        config = policy["spec"]["default"]["config"]
        assert config["type"] == "HTTP"
        assert config["httpHealthCheck"]["portSpecification"] == "USE_SERVING_PORT"
        assert is_operational_path(config["httpHealthCheck"]["requestPath"])
        assert "host" not in config["httpHealthCheck"]
        assert "proxyHeader" not in config["httpHealthCheck"]
