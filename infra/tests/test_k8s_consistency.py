"""The manifests agree with the code they deploy, so they cannot rot: settings, secrets, ports, probes, databases.

Everything is read from the code at test time (settings classes, apps, console scripts), never copied here.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy_support import (
    ALL_OVERLAYS,
    CNPG_NAMESPACE,
    DEPLOYABLES,
    OVERLAYS,
    TEST_SECRET_FILES,
    TEST_SECRET_VALUES,
    TLS_KEYS,
    ContainerEnv,
    Deployable,
    Manifests,
    container_env,
    documented_secrets,
    environment,
)
from pydantic import ValidationError

from ticketing_common.routes import ROUTES


def _env_names(settings_cls: type[Any]) -> dict[str, str]:
    """Environment variable -> field of a pydantic-settings class (prefix and aliases honoured)."""
    prefix = str(settings_cls.model_config.get("env_prefix", "") or "")
    names = {}
    for name, info in settings_cls.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names[(alias or prefix + name).upper()] = name
    return names


def _opentelemetry_sdk_variables() -> set[str]:
    """The environment variables the OpenTelemetry SDK reads (its sampler, exporter headers, timeouts...), as the
    installed SDK names them (``opentelemetry.sdk.environment_variables``)."""
    from opentelemetry.sdk import environment_variables

    return {value for name, value in vars(environment_variables).items() if name.startswith("OTEL_")}


def _known_variables(deployable: Deployable) -> set[str]:
    """What the service reads from its environment: its settings, and, in a process that turns the OpenTelemetry SDK
    on (its settings read ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``ticketing_common.tracing``), the SDK's own variables."""
    known = set(_env_names(deployable.settings_cls))
    if "OTEL_EXPORTER_OTLP_ENDPOINT" in known:
        known |= _opentelemetry_sdk_variables()
    return known


def _required(deployable: Deployable, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """What the service cannot start without: fields without a default, fields whose default its validators refuse
    (auth's SESSION_KEY_FILE), settings a validator of the whole model refuses to go without, named in its message
    (the others' JWKS_URL), and DATABASE_URL for a service with a database (its start-up refuses an empty one)."""
    for key in list(os.environ):
        monkeypatch.delenv(key)
    env_names = _env_names(deployable.settings_cls)
    names = {field: env for env, field in env_names.items()}
    required = set()
    try:
        deployable.settings_cls()
    except ValidationError as exc:
        for error in exc.errors():
            if error["loc"]:
                required.add(names.get(str(error["loc"][0]), str(error["loc"][0]).upper()))
                continue
            mentioned = {env for env in env_names if re.search(rf"\b{env}\b", error["msg"])}
            assert mentioned, f"{deployable.name} refuses an empty environment without naming a setting: {error}"
            required |= mentioned
    if deployable.has_migrations:
        required.add("DATABASE_URL")
    return required


def _start_up_settings(deployable: Deployable, env: ContainerEnv, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The service's settings from exactly this environment, as its entry point loads them (a file of a mounted
    secret read from the folder standing in for the volume)."""
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in env.on_this_machine().items():
        monkeypatch.setenv(key, value)
    try:
        settings = deployable.settings_cls()
        if deployable.has_migrations:
            assert settings.sqlalchemy_url
    except (ValidationError, ValueError) as exc:
        raise AssertionError(f"{deployable.name} refuses the environment its manifest declares:\n{exc}") from exc
    return settings


def _pod(manifests: Manifests, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests.get("Deployment", name)["spec"]["template"]
    return spec


def _main(manifests: Manifests, name: str) -> dict[str, Any]:
    containers = _pod(manifests, name)["spec"]["containers"]
    assert len(containers) == 1, f"{name}: one container per pod"
    container: dict[str, Any] = containers[0]
    return container


def _resolve_container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for candidate in container.get("ports", []):
        if candidate.get("name") == port:
            number: int = candidate["containerPort"]
            return number
    raise AssertionError(f"{container['name']} has no port named {port}")


@pytest.fixture(params=DEPLOYABLES)
def deployable(request: pytest.FixtureRequest, deployables: dict[str, Deployable]) -> Deployable:
    return deployables[request.param]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_provides_every_setting_its_service_requires(
    rendered: dict[str, Manifests], deployable: Deployable, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployable.require_present()
    manifests = rendered[overlay]
    required = _required(deployable, monkeypatch)
    for container in manifests.containers(manifests.get("Deployment", deployable.name)):
        env = container_env(manifests, container)
        missing = required - set(env.values)
        assert not missing, f"{overlay}: {deployable.name}/{container['name']} does not set {sorted(missing)}"
        _start_up_settings(deployable, env, monkeypatch)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_sets_only_settings_its_service_knows(
    rendered: dict[str, Manifests], deployable: Deployable, overlay: str
) -> None:
    """A misspelt or removed setting would be ignored silently by the service (or by the OpenTelemetry SDK, whose
    variables a process that traces reads too); here it fails."""
    deployable.require_present()
    manifests = rendered[overlay]
    known = _known_variables(deployable)
    for container in manifests.containers(manifests.get("Deployment", deployable.name)):
        env = container_env(manifests, container)
        referenced = {
            name
            for name in env.declared
            for other in container.get("env", [])
            if f"$({name})" in str(other.get("value", ""))
        }
        unknown = (set(env.declared) | set(env.from_config_maps)) - known - referenced
        assert not unknown, (
            f"{overlay}: {deployable.name}/{container['name']} sets {sorted(unknown)}, unknown to its settings"
        )


def _secret_refs(manifests: Manifests) -> set[tuple[str, str]]:
    """(secret, key) of every secretKeyRef in the overlay's containers, of every secret volume of their pods, and
    the TLS secrets its Gateways use."""
    refs = set()
    for workload in manifests.workloads:
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            assert "projected" not in volume or not any("secret" in s for s in volume["projected"]["sources"]), (
                "secrets are mounted as secret volumes, whose keys are listed"
            )
            if "secret" in volume:
                source = volume["secret"]
                assert not source.get("optional"), "a missing secret must stop the pod, loudly"
                assert source.get("items"), "a secret volume lists the keys it needs, as a secretKeyRef names its key"
                refs |= {(source["secretName"], item["key"]) for item in source["items"]}
        for container in manifests.containers(workload):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert not ref.get("optional"), "a missing secret must stop the pod, loudly"
                    refs.add((ref["name"], ref["key"]))
    for gateway in manifests.of_kind("Gateway"):
        for listener in gateway["spec"]["listeners"]:
            for cert in listener.get("tls", {}).get("certificateRefs", []):
                assert cert.get("kind", "Secret") == "Secret"
                assert cert.get("group", "") == ""
                refs |= {(cert["name"], "tls.crt"), (cert["name"], "tls.key")}
    return refs


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_only_documented_or_operator_generated_secrets_and_existing_config_map_keys_are_referenced(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    manifests = rendered[overlay]
    documented = documented_secrets()
    for secret, key in _secret_refs(manifests):
        generated = manifests.generated_secret(secret)
        if generated is not None:
            assert key in generated, f"the operator writes no key {key} in {secret}"
            assert secret not in documented, f"{secret} is the operator's, not one to create by hand"
        else:
            assert key in documented.get(secret, set()), (
                f"{overlay} reads {secret}/{key}, which infra/README.md does not tell people to create"
            )
            assert (secret, key) in TEST_SECRET_VALUES or (secret, key) in TEST_SECRET_FILES or key in TLS_KEYS
    for workload in manifests.workloads:
        for container in manifests.containers(workload):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    config_map, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
                    assert key in manifests.config_map(config_map), f"{config_map} has no key {key}"
            for source in container.get("envFrom", []):
                assert "configMapRef" in source, "secrets are read key by key (secretKeyRef)"
                manifests.get("ConfigMap", source["configMapRef"]["name"])
            for volume in workload["spec"]["template"]["spec"].get("volumes", []):
                if "configMap" in volume:
                    manifests.get("ConfigMap", volume["configMap"]["name"])


def test_every_documented_secret_is_used_by_an_overlay(rendered: dict[str, Manifests]) -> None:
    used = set().union(*(_secret_refs(rendered[overlay]) for overlay in ALL_OVERLAYS))
    documented = {(s, k) for s, keys in documented_secrets().items() for k in keys}
    assert documented == {ref for ref in used if rendered["gke"].generated_secret(ref[0]) is None}
    assert ("ticketing-tls", "tls.crt") in documented, "the GKE Gateway's certificate"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_port_service_target_port_and_listening_port_agree(
    rendered: dict[str, Manifests], deployable: Deployable, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployable.require_present()
    manifests = rendered[overlay]
    container = _main(manifests, deployable.name)
    settings = _start_up_settings(deployable, container_env(manifests, container), monkeypatch)
    assert settings.host == "0.0.0.0", "probes and the Service reach the pod on its IP, not on 127.0.0.1"
    container_port = _resolve_container_port(container, "http")
    assert settings.port == container_port, f"{deployable.name} listens on {settings.port}, declares {container_port}"
    service = manifests.get("Service", f"{deployable.name}-srv")
    for port in service["spec"]["ports"]:
        assert _resolve_container_port(container, port["targetPort"]) == container_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert _resolve_container_port(container, container[probe]["httpGet"]["port"]) == container_port, probe
    annotations = _pod(manifests, deployable.name)["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == container_port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_paths_exist_in_the_app(
    rendered: dict[str, Manifests], deployable: Deployable, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployable.require_present()
    manifests = rendered[overlay]
    container = _main(manifests, deployable.name)
    settings = _start_up_settings(deployable, container_env(manifests, container), monkeypatch)
    app = deployable.create_app(settings)  # built, not started: no connection is made
    paths = {getattr(route, "path", None) for route in app.routes}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"].split("?")[0]
        assert path in paths, f"{deployable.name} has no route {path} for its {probe}"
    annotations = _pod(manifests, deployable.name)["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") == "true":
        assert annotations.get("prometheus.io/path", "/metrics") in paths
    # GKE's load balancer checks the Service's pods on their serving port too (HealthCheckPolicy).
    policy = manifests.find("HealthCheckPolicy", f"{deployable.name}-srv")
    if policy is not None:
        path = policy["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"]
        assert path in paths, f"{deployable.name} has no route {path} for the load balancer's health check"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_service_with_a_database_migrates_it_before_starting_and_reaches_only_its_own(
    rendered: dict[str, Manifests], deployable: Deployable, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered[overlay]
    pod = _pod(manifests, deployable.name)
    init = pod["spec"].get("initContainers", [])
    if not deployable.has_migrations:
        assert not init, f"{deployable.name} has no migrations to run"
        assert all(v["name"] != "DATABASE_URL" for v in _main(manifests, deployable.name).get("env", []))
        return
    assert [c["name"] for c in init] == ["migrate"]
    migrate, main = init[0], _main(manifests, deployable.name)
    assert migrate["command"] == [deployable.distribution, "migrate"]
    assert deployable.distribution in deployable.scripts, "the migrate command is the service's console script"
    assert migrate["image"] == main["image"], "migrations come from the same build as the code"
    assert migrate.get("env") == main.get("env"), "the same settings as the service it migrates for"
    assert migrate.get("envFrom") == main.get("envFrom")

    env = container_env(manifests, main).values
    url = urlsplit(env["DATABASE_URL"])
    assert url.scheme == "postgresql"
    if environment(overlay) == "dev":
        # A single PostgreSQL pod: a server URL as the superuser; the service creates its own database on it.
        assert url.path == "/postgres", "a server URL: the service creates and uses its own database on it"
        assert url.password == TEST_SECRET_VALUES[("postgres-secret", "POSTGRES_PASSWORD")], (
            "the password is the secret"
        )
        service = manifests.get("Service", url.hostname or "")
        postgres = manifests.get("StatefulSet", f"{deployable.name}-postgres")
        postgres_labels = postgres["spec"]["template"]["metadata"]["labels"]
        assert all(postgres_labels.get(k) == v for k, v in service["spec"]["selector"].items())
        assert url.port in {p["port"] for p in service["spec"]["ports"]}
        assert postgres["spec"]["serviceName"] == service["metadata"]["name"]
        policy = manifests.get("NetworkPolicy", f"{deployable.name}-postgres")
        database_pods = postgres_labels
    else:
        # CloudNativePG: the primary's Service, as the application role, on the database the operator created.
        cluster = manifests.get("Cluster", f"{deployable.name}-db")
        initdb = cluster["spec"]["bootstrap"]["initdb"]
        assert url.hostname == f"{cluster['metadata']['name']}-rw.{CNPG_NAMESPACE}", "the read-write Service"
        assert url.username == initdb["owner"] != "postgres", "the application role, not the superuser"
        assert url.port == 5432
        settings = _start_up_settings(deployable, container_env(manifests, main), monkeypatch)
        assert settings.database_name == initdb["database"] == url.path.lstrip("/"), (
            "the service uses the database the operator created (DATABASE_NAME), which its role owns"
        )
        policy = manifests.get("NetworkPolicy", cluster["metadata"]["name"])
        database_pods = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= database_pods.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # Pods of this namespace that may connect: the service's own, and (CloudNativePG) the cluster's instances;
    # from elsewhere only the operator's namespace.
    local = [
        s["podSelector"]["matchLabels"]
        for r in policy["spec"]["ingress"]
        for s in r["from"]
        if "namespaceSelector" not in s
    ]
    others = [s for r in policy["spec"]["ingress"] for s in r["from"] if "namespaceSelector" in s]
    assert all(s["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "cnpg-system"} for s in others)
    assert [labels for labels in local if labels.items() <= pod["metadata"]["labels"].items()], (
        "the service may connect"
    )
    for labels in local:
        assert labels.items() <= pod["metadata"]["labels"].items() or labels.items() <= database_pods.items(), labels
    for other in manifests.of_kind("Deployment"):
        if other["metadata"]["name"] != deployable.name:
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not any(labels.items() <= other_labels.items() for labels in local), other["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_on_the_bus_reaches_the_nats_service(
    rendered: dict[str, Manifests], deployable: Deployable, overlay: str
) -> None:
    manifests = rendered[overlay]
    env = container_env(manifests, _main(manifests, deployable.name)).values
    if not deployable.has_migrations:  # the client is not on the bus
        assert "NATS_URL" not in env
        return
    url = urlsplit(env["NATS_URL"])
    assert url.scheme == "nats"
    service = manifests.get("Service", url.hostname or "")
    nats = manifests.get("StatefulSet", "nats")
    labels = nats["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    assert _resolve_container_port(nats["spec"]["template"]["spec"]["containers"][0], port["targetPort"]) == 4222


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_client_calls_every_api_of_the_route_table_at_its_service(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """The web client calls each API where it lives (``<SERVICE>_URL``, ServiceUrls), not through the entry point
    (which would replace the visitor's address in X-Forwarded-For): every service of the route table but the
    client itself has its URL, the in-cluster Service of that service on a port it serves. Without one the client
    would send that API's calls to its fallback, API_URL (auth), which does not serve them."""
    manifests = rendered[overlay]
    env = container_env(manifests, _main(manifests, "client")).values
    for service in sorted({route.service for route in ROUTES} - {"client"}):
        name = f"{service.upper()}_URL"
        assert name in env, f"{overlay}: the client has no {name}"
        url = urlsplit(env[name])
        assert (url.scheme, url.hostname, url.path) == ("http", f"{service}-srv", ""), f"{overlay}: {name}"
        ports = {p["port"] for p in manifests.get("Service", f"{service}-srv")["spec"]["ports"]}
        assert url.port in ports, f"{overlay}: {name} names no port of {service}-srv"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_payments_talks_to_stripe_itself_with_the_secret_key(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    env = container_env(manifests, _main(manifests, "payments"))
    assert ("stripe-secret", "STRIPE_KEY") in env.secret_refs
    for workload in manifests.workloads:
        for container in manifests.containers(workload):
            names = {v["name"] for v in container.get("env", [])} | set(container_env(manifests, container).values)
            assert "STRIPE_API_BASE" not in names, "the Stripe stand-in is never deployed"
